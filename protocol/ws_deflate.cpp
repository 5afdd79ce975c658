#include "protocol/ws_deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace wsnode::protocol::ws {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Splits `s` at `sep` (no quoted strings: permessage-deflate values are digits).
template <class F>
void split(std::string_view s, char sep, F&& f) {
  while (true) {
    auto pos = s.find(sep);
    f(trim(s.substr(0, pos)));
    if (pos == std::string_view::npos)
      return;
    s.remove_prefix(pos + 1);
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

// Window bits 9..15 (8 is refused: zlib's raw deflate cannot produce it).
std::optional<int> window_bits(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"')
    v = v.substr(1, v.size() - 2);
  if (v.empty() || v.size() > 2 ||
      !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  int n = std::stoi(std::string{v});
  if (n < 9 || n > 15)
    return std::nullopt;
  return n;
}

// One offer: "permessage-deflate; p1; p2=v"; nullopt when not acceptable.
std::optional<deflate_params> accept_offer(std::string_view offer) {
  deflate_params p;
  bool first = true, ok = true;
  bool seen_snct = false, seen_cnct = false, seen_smwb = false, seen_cmwb = false;
  split(offer, ';', [&](std::string_view part) {
    if (!ok)
      return;
    if (first) {
      first = false;
      ok = iequals(part, "permessage-deflate");
      return;
    }
    auto eq = part.find('=');
    auto name = trim(part.substr(0, eq));
    auto value = eq == std::string_view::npos ? std::string_view{} : trim(part.substr(eq + 1));
    bool has_value = eq != std::string_view::npos;
    auto once = [&](bool& seen) {
      if (seen)
        ok = false;
      seen = true;
    };
    if (iequals(name, "server_no_context_takeover")) {
      once(seen_snct);
      ok = ok && !has_value;
    } else if (iequals(name, "client_no_context_takeover")) {
      once(seen_cnct);
      ok = ok && !has_value;
      p.client_no_context = true;
    } else if (iequals(name, "server_max_window_bits")) {
      once(seen_smwb);
      auto bits = window_bits(value);
      ok = ok && bits.has_value();
      if (bits)
        p.server_window_bits = *bits;
    } else if (iequals(name, "client_max_window_bits")) {
      once(seen_cmwb); // any window the client uses fits our 15-bit inflater
      ok = ok && (!has_value || window_bits(value).has_value() || value == "8");
    } else {
      ok = false;
    }
  });
  if (!ok || first)
    return std::nullopt;
  return p;
}

} // namespace

std::optional<deflate_params> negotiate_deflate(std::string_view extensions) {
  std::optional<deflate_params> chosen;
  split(extensions, ',', [&](std::string_view offer) {
    if (!chosen && !offer.empty())
      chosen = accept_offer(offer);
  });
  return chosen;
}

std::string deflate_response(const deflate_params& p) {
  std::string r = "permessage-deflate; server_no_context_takeover";
  if (p.client_no_context)
    r += "; client_no_context_takeover";
  if (p.server_window_bits != 15)
    r += "; server_max_window_bits=" + std::to_string(p.server_window_bits);
  return r;
}

struct deflater::impl {
  z_stream z{};
};

deflater::deflater(int window_bits) : impl_(std::make_unique<impl>()) {
  if (deflateInit2(&impl_->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -window_bits, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
}

deflater::~deflater() {
  deflateEnd(&impl_->z);
}

std::string deflater::compress(std::string_view in) {
  auto& z = impl_->z;
  std::string out;
  out.resize(deflateBound(&z, in.size()) + 16);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::size_t used = 0;
  while (true) {
    z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    z.avail_out = static_cast<uInt>(out.size() - used);
    deflate(&z, Z_SYNC_FLUSH);
    used = out.size() - z.avail_out;
    if (z.avail_in == 0 && z.avail_out > 0)
      break;
    out.resize(out.size() * 2);
  }
  deflateReset(&z);
  // RFC 7692 7.2.1: drop the 00 00 FF FF that ends a sync flush
  if (used >= 4 && std::memcmp(out.data() + used - 4, "\x00\x00\xff\xff", 4) == 0)
    used -= 4;
  out.resize(used);
  return out;
}

struct inflater::impl {
  z_stream z{};
};

inflater::inflater() : impl_(std::make_unique<impl>()) {
  if (inflateInit2(&impl_->z, -15) != Z_OK)
    throw std::runtime_error("inflateInit2 failed");
}

inflater::~inflater() {
  inflateEnd(&impl_->z);
}

inflater::result inflater::decompress(std::string_view in, std::string& out, std::size_t max) {
  auto& z = impl_->z;
  static constexpr unsigned char tail[4] = {0x00, 0x00, 0xFF, 0xFF};
  char chunk[16384];
  // the message, then the sync-flush marker the sender removed
  for (int part = 0; part < 2; ++part) {
    z.next_in = part == 0 ? reinterpret_cast<Bytef*>(const_cast<char*>(in.data()))
                          : const_cast<Bytef*>(tail);
    z.avail_in = part == 0 ? static_cast<uInt>(in.size()) : 4;
    do {
      z.next_out = reinterpret_cast<Bytef*>(chunk);
      z.avail_out = sizeof chunk;
      int rc = inflate(&z, Z_SYNC_FLUSH);
      if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
        return result::bad_data;
      auto got = sizeof chunk - z.avail_out;
      if (out.size() + got > max)
        return result::too_big;
      out.append(chunk, got);
      if (rc == Z_STREAM_END) {
        inflateReset(&z); // a final block: the next message starts afresh
        break;
      }
      if (rc == Z_BUF_ERROR && got == 0)
        break;
    } while (z.avail_in > 0 || z.avail_out == 0);
  }
  return result::ok;
}

} // namespace wsnode::protocol::ws
