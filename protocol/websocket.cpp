#include "protocol/websocket.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace wsnode::protocol::ws {

// ---------------------------------------------------------------- small values

bool utf8_validator::feed(const unsigned char* p, std::size_t n) noexcept {
  if (bad_)
    return false;
  const unsigned char* end = p + n;
  while (p < end) {
    if (need_ > 0) { // inside a sequence
      if (*p < lo_ || *p > hi_)
        return !(bad_ = true);
      lo_ = 0x80;
      hi_ = 0xBF;
      --need_;
      ++p;
      continue;
    }
    // ASCII fast path, 8 bytes at a time
    while (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080ULL) != 0)
        break;
      p += 8;
    }
    if (p == end)
      break;
    unsigned c = *p++;
    if (c < 0x80)
      continue;
    if (c >= 0xC2 && c <= 0xDF) {
      need_ = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need_ = 2;
      if (c == 0xE0)
        lo_ = 0xA0; // overlong
      else if (c == 0xED)
        hi_ = 0x9F; // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      need_ = 3;
      if (c == 0xF0)
        lo_ = 0x90; // overlong
      else if (c == 0xF4)
        hi_ = 0x8F; // above U+10FFFF
    } else {
      return !(bad_ = true);
    }
  }
  return true;
}

bool valid_utf8(std::string_view s) noexcept {
  utf8_validator v;
  return v.feed(s) && v.complete();
}

bool valid_client_key(std::string_view key) noexcept {
  if (key.size() != 24 || key.substr(22) != "==")
    return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
  });
}

std::string accept_key(std::string_view client_key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string in;
  in.reserve(client_key.size() + guid.size());
  in.append(client_key).append(guid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  auto n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string{reinterpret_cast<const char*>(out), static_cast<std::size_t>(n)};
}

bool valid_close_code(std::uint16_t code) noexcept {
  if (code >= 3000 && code <= 4999)
    return true;
  switch (code) {
  case 1000:
  case 1001:
  case 1002:
  case 1003:
  case 1007:
  case 1008:
  case 1009:
  case 1010:
  case 1011:
  case 1012:
  case 1013:
  case 1014:
    return true;
  default:
    return false;
  }
}

frame_header::frame_header(opcode op, std::size_t n, bool compressed) noexcept {
  bytes[0] = static_cast<unsigned char>(0x80 | (compressed ? 0x40 : 0) | static_cast<unsigned>(op));
  if (n < 126) {
    bytes[1] = static_cast<unsigned char>(n);
    size = 2;
  } else if (n < 65536) {
    bytes[1] = 126;
    bytes[2] = static_cast<unsigned char>(n >> 8);
    bytes[3] = static_cast<unsigned char>(n);
    size = 4;
  } else {
    bytes[1] = 127;
    for (int i = 0; i < 8; ++i)
      bytes[2 + i] = static_cast<unsigned char>(static_cast<std::uint64_t>(n) >> (56 - 8 * i));
    size = 10;
  }
}

std::string make_frame(opcode op, std::string_view payload, bool compressed) {
  frame_header h{op, payload.size(), compressed};
  std::string out;
  out.reserve(h.size + payload.size());
  out.append(reinterpret_cast<const char*>(h.bytes.data()), h.size);
  out.append(payload);
  return out;
}

std::string make_close(std::uint16_t code, std::string_view reason) {
  if (reason.size() > 123) {
    reason = reason.substr(0, 123);
    while (!reason.empty() && !valid_utf8(reason))
      reason.remove_suffix(1); // cut at a character boundary
  }
  std::string payload;
  payload += static_cast<char>(code >> 8);
  payload += static_cast<char>(code & 0xFF);
  payload.append(reason);
  return make_frame(opcode::close, payload);
}

// ---------------------------------------------------------------- frame_reader

namespace {

// Close, ping and pong (RFC 6455 5.5): opcodes with the high bit set.
bool is_control(opcode op) noexcept {
  return (static_cast<unsigned>(op) & 0x08) != 0;
}

} // namespace

frame_reader::event frame_reader::fail(std::uint16_t code) noexcept {
  error_ = code;
  return event::error;
}

bool frame_reader::skip_data() noexcept {
  if (error_ == 1002)
    return false;
  skipping_ = true;
  in_message_ = false;
  msg_.clear();
  msg_.shrink_to_fit();
  return true;
}

std::string frame_reader::take_message() noexcept {
  std::string m = std::move(msg_);
  msg_ = std::string{};
  return m;
}

std::string_view frame_reader::close_reason() const noexcept {
  return ctl_.size() > 2 ? std::string_view{ctl_}.substr(2) : std::string_view{};
}

// The first two bytes are in: check them and work out the header's size.
frame_reader::event frame_reader::header_done() {
  auto b0 = hdr_[0], b1 = hdr_[1];
  fin_ = (b0 & 0x80) != 0;
  bool rsv1 = (b0 & 0x40) != 0;
  op_ = static_cast<opcode>(b0 & 0x0F);
  bool control = is_control(op_);
  if ((b0 & 0x30) != 0)
    return fail(1002); // RSV2/RSV3: no extension defines them
  switch (op_) {
  case opcode::cont:
  case opcode::text:
  case opcode::binary:
  case opcode::close:
  case opcode::ping:
  case opcode::pong:
    break;
  default:
    return fail(1002);
  }
  if ((b1 & 0x80) == 0)
    return fail(1002); // clients must mask
  auto len7 = b1 & 0x7F;
  if (control && (!fin_ || len7 > 125 || rsv1))
    return fail(1002);
  if (rsv1 && (!compression_ || op_ == opcode::cont))
    return fail(1002); // RSV1 marks the first frame of a compressed message
  if (op_ == opcode::cont && !in_message_ && !skipping_)
    return fail(1002);
  if ((op_ == opcode::text || op_ == opcode::binary) && in_message_)
    return fail(1002);
  need_ = static_cast<std::uint8_t>(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4);
  return event::need_more;
}

frame_reader::event frame_reader::next(const char*& p, const char* end) {
  if (error_ != 0 && !skipping_)
    return event::error;
  while (p < end || (in_payload_ && remaining_ == 0)) {
    if (!in_payload_) {
      auto take = std::min<std::size_t>(need_ - have_, static_cast<std::size_t>(end - p));
      std::memcpy(hdr_.data() + have_, p, take);
      have_ = static_cast<std::uint8_t>(have_ + take);
      p += take;
      if (have_ < need_)
        return event::need_more;
      if (need_ == 2) {
        if (header_done() == event::error)
          return event::error;
        continue;
      }
      // the whole header: length and mask
      std::uint64_t len = hdr_[1] & 0x7F;
      std::size_t at = 2;
      if (len == 126) {
        len = (std::uint64_t{hdr_[2]} << 8) | hdr_[3];
        at = 4;
      } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i)
          len = (len << 8) | hdr_[2 + i];
        at = 10;
        if (len >> 63)
          return fail(1002);
      }
      std::memcpy(mask_.data(), hdr_.data() + at, 4);
      mask_pos_ = 0;
      remaining_ = len;
      have_ = 0;
      need_ = 2;
      in_payload_ = true;
      if (is_control(op_)) {
        ctl_.clear();
        if (ctl_.capacity() > 15)
          ctl_.shrink_to_fit();
      } else if (!skipping_) {
        if (op_ != opcode::cont) {
          in_message_ = true;
          msg_binary_ = op_ == opcode::binary;
          msg_compressed_ = (hdr_[0] & 0x40) != 0;
          utf8_.reset();
        }
        if (len > max_ || msg_.size() + len > max_)
          return fail(1009); // after skip_data(), the rest of the frame is dropped
        msg_.reserve(msg_.size() + len);
      }
      continue;
    }
    // payload bytes: unmask into the message or the control buffer
    auto take = static_cast<std::size_t>(
        std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(end - p)));
    bool control = is_control(op_);
    bool utf8_bad = false;
    if (control || !skipping_) {
      std::string& dst = control ? ctl_ : msg_;
      auto base = dst.size();
      dst.resize(base + take);
      auto* out = reinterpret_cast<unsigned char*>(dst.data() + base);
      auto* in = reinterpret_cast<const unsigned char*>(p);
      for (std::size_t i = 0; i < take; ++i)
        out[i] = in[i] ^ mask_[(mask_pos_ + i) & 3];
      // fail fast: a text message is refused at its first invalid byte
      utf8_bad = !control && !msg_binary_ && !msg_compressed_ && !utf8_.feed(out, take);
    }
    mask_pos_ = static_cast<std::uint8_t>((mask_pos_ + take) & 3);
    p += take;
    remaining_ -= take;
    if (utf8_bad) {
      msg_.clear(); // after skip_data(), the rest of the frame is dropped
      return fail(1007);
    }
    if (remaining_ > 0)
      return event::need_more;
    in_payload_ = false;
    auto ev = frame_done();
    if (ev != event::need_more)
      return ev;
  }
  return event::need_more;
}

// A frame's payload is complete.
frame_reader::event frame_reader::frame_done() {
  switch (op_) {
  case opcode::ping:
    return event::ping;
  case opcode::pong:
    return event::pong;
  case opcode::close:
    if (ctl_.size() == 1)
      return fail(1002);
    if (ctl_.empty()) {
      close_code_ = 1005; // no status code given
    } else {
      close_code_ = static_cast<std::uint16_t>((static_cast<unsigned char>(ctl_[0]) << 8) |
                                               static_cast<unsigned char>(ctl_[1]));
      if (!valid_close_code(close_code_))
        return fail(1002);
      if (!valid_utf8(close_reason()))
        return fail(1007);
    }
    return event::close;
  default:
    break;
  }
  if (skipping_ || !fin_)
    return event::need_more;
  in_message_ = false;
  if (!msg_binary_ && !msg_compressed_ && !utf8_.complete()) {
    msg_.clear();
    return fail(1007);
  }
  return event::message;
}

} // namespace wsnode::protocol::ws
