// The server side of the WebSocket wire protocol (RFC 6455), without I/O:
// handshake values, an incremental parser of client frames, server frame
// headers, UTF-8 validation. permessage-deflate is ws_deflate.hpp's.
// transport/ws_session does the I/O around both; the fuzzer drives the
// parser directly.
//
// Threading: every object here belongs to one thread at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace wsnode::protocol::ws {

enum class opcode : std::uint8_t {
  cont = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

/// Checks UTF-8 piece by piece: `feed` fails as soon as the bytes seen so
/// far can no longer begin a well-formed sequence (no overlong forms, no
/// surrogates, nothing above U+10FFFF), so a text message split over frames
/// or reads is refused at its first bad byte, not at its end.
class utf8_validator {
public:
  /// Checks the next `n` bytes; false once the input is invalid (and after).
  bool feed(const unsigned char* p, std::size_t n) noexcept;
  bool feed(std::string_view s) noexcept {
    return feed(reinterpret_cast<const unsigned char*>(s.data()), s.size());
  }
  /// True when the bytes fed so far end at a character boundary.
  bool complete() const noexcept { return need_ == 0 && !bad_; }
  void reset() noexcept { *this = utf8_validator{}; }

private:
  std::uint8_t need_ = 0;              // continuation bytes still due
  std::uint8_t lo_ = 0x80, hi_ = 0xBF; // allowed range of the next one
  bool bad_ = false;
};

/// Returns true when `s` is well-formed UTF-8 (see utf8_validator).
bool valid_utf8(std::string_view s) noexcept;

/// Returns true when `key` (Sec-WebSocket-Key) is the base64 of 16 bytes.
bool valid_client_key(std::string_view key) noexcept;

/// Returns the Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.
std::string accept_key(std::string_view client_key);

/// Returns true when a close frame may carry `code` (RFC 6455 7.4).
bool valid_close_code(std::uint16_t code) noexcept;

/// The header of an unmasked, final server frame of `size` payload bytes.
struct frame_header {
  std::array<unsigned char, 10> bytes{};
  std::uint8_t size = 0;
  frame_header() = default;
  frame_header(opcode op, std::size_t payload_size, bool compressed = false) noexcept;
};

/// A whole server frame (header + payload): control frames, compressed
/// messages.
std::string make_frame(opcode op, std::string_view payload, bool compressed = false);
/// A close frame with `code` and `reason` (cut to fit in 123 bytes, at a
/// UTF-8 character boundary).
std::string make_close(std::uint16_t code, std::string_view reason);

// ---------------------------------------------------------------- client frames

/// Parses the bytes a client sends, one event at a time, across any split
/// of the input. Enforces what RFC 6455 asks of a server: masked frames,
/// no reserved bits or opcodes, control frames short and unfragmented,
/// continuation frames only inside a message, valid UTF-8 in text messages
/// (checked as the bytes arrive) and close reasons, and the message size
/// limit (before decompression).
class frame_reader {
public:
  enum class event : std::uint8_t {
    need_more, ///< every byte consumed, nothing complete
    message,   ///< a data message: take_message(), binary(), compressed()
    ping,      ///< control_payload()
    pong,      ///< control_payload()
    close,     ///< close_code() (1005: none given), close_reason()
    error,     ///< error_code(): 1002 protocol, 1007 bad UTF-8, 1009 too big
  };

  /// `max_message`: the largest message (after reassembly) accepted.
  /// `compression`: whether permessage-deflate was negotiated (RSV1 allowed).
  frame_reader(std::size_t max_message, bool compression) noexcept
    : max_(max_message), compression_(compression) {}

  /// Consumes bytes from [p, end) up to and including the next event and
  /// advances `p`. After `error` the stream cannot be trusted unless
  /// `skip_data()` is called (1007/1009 leave the framing intact).
  event next(const char*& p, const char* end);

  /// From now on, data frames are read and dropped (a closing connection
  /// still waits for the client's close frame). Returns false when the
  /// framing itself is broken (after a 1002) and nothing more can be read.
  bool skip_data() noexcept;

  /// The message of the last `message` event (moved out; the reader keeps
  /// no buffer behind).
  std::string take_message() noexcept;
  bool binary() const noexcept { return msg_binary_; }
  bool compressed() const noexcept { return msg_compressed_; }
  std::string_view control_payload() const noexcept { return ctl_; }
  std::uint16_t close_code() const noexcept { return close_code_; }
  std::string_view close_reason() const noexcept;
  std::uint16_t error_code() const noexcept { return error_; }

private:
  event fail(std::uint16_t code) noexcept;
  event header_done();
  event frame_done();

  std::size_t max_;
  bool compression_;
  // the frame being read
  std::array<unsigned char, 14> hdr_{};
  std::uint8_t have_ = 0;
  std::uint8_t need_ = 2;
  bool in_payload_ = false;
  bool fin_ = false;
  opcode op_ = opcode::cont;
  std::uint64_t remaining_ = 0;
  std::array<unsigned char, 4> mask_{};
  std::uint8_t mask_pos_ = 0;
  // the message being reassembled
  bool in_message_ = false;
  bool msg_binary_ = false;
  bool msg_compressed_ = false;
  std::string msg_;
  utf8_validator utf8_; // of an uncompressed text message, as it arrives
  // the last control frame
  std::string ctl_; // at most 125 bytes: no allocation beyond 15
  std::uint16_t close_code_ = 0;
  std::uint16_t error_ = 0;
  bool skipping_ = false;
};

} // namespace wsnode::protocol::ws
