// permessage-deflate (RFC 7692) without I/O: the negotiation of the
// Sec-WebSocket-Extensions header and the deflate/inflate steps. The
// framing that carries compressed messages is websocket.hpp's.
//
// Threading: every object here belongs to one thread at a time.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace wsnode::protocol::ws {

/// What the server agreed to. The server never keeps compression context
/// between messages (server_no_context_takeover), so compressing needs no
/// per-connection state.
struct deflate_params {
  int server_window_bits = 15;    ///< the client's server_max_window_bits, or 15
  bool client_no_context = false; ///< the client offered client_no_context_takeover
};

/// Picks the first permessage-deflate offer of a Sec-WebSocket-Extensions
/// header the server can honour; nullopt when there is none.
std::optional<deflate_params> negotiate_deflate(std::string_view extensions);
/// The Sec-WebSocket-Extensions response value for `p`.
std::string deflate_response(const deflate_params& p);

/// Compresses one message (no context kept between messages).
class deflater {
public:
  explicit deflater(int window_bits);
  ~deflater();
  deflater(const deflater&) = delete;
  deflater& operator=(const deflater&) = delete;
  /// The payload of a compressed frame carrying `in`.
  std::string compress(std::string_view in);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Decompresses the messages of one connection (keeps the client's window
/// between messages unless the client agreed not to use it).
class inflater {
public:
  enum class result : std::uint8_t { ok, too_big, bad_data };
  inflater();
  ~inflater();
  inflater(const inflater&) = delete;
  inflater& operator=(const inflater&) = delete;
  /// Appends the decompressed `in` to `out`; too_big once `out` would
  /// exceed `max` bytes.
  result decompress(std::string_view in, std::string& out, std::size_t max);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace wsnode::protocol::ws
