// One WebSocket connection on a plain TCP socket: RFC 6455 framing (see
// protocol/websocket.hpp), a bounded write queue whose frames go to the
// kernel in one write, input flow control, keep-alive pings. Idle
// connections hold no read buffer and no timer of their own: reads land in
// a buffer shared by the io thread, and one timer per io thread (in the
// delivery lane) sends pings and drops silent peers.
#pragma once

#include "core/ports.hpp"
#include "transport/context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace wsnode::transport {

/// The parts of a valid upgrade request the session needs.
struct ws_handshake {
  std::string key;        ///< Sec-WebSocket-Key (checked)
  std::string extensions; ///< Sec-WebSocket-Extensions, may be empty
  bool batch = false;     ///< ?batch=1: merged frames wanted (protocol v1.2)
};

/// Answers the upgrade (101) on `socket`, which lives on the io_context of
/// `ctx->lanes[lane]`, and runs the session until the connection ends. The
/// caller has already counted it in `metrics::connections`; the session
/// uncounts it when it ends.
void start_ws_session(std::shared_ptr<server_context> ctx, stream_socket&& socket, ws_handshake hs,
                      session_identity who, std::size_t lane);

} // namespace wsnode::transport
