// One accepted TCP connection speaking HTTP/1.1 until it upgrades to
// WebSocket (handed to ws_session) or closes.
#pragma once

#include "transport/context.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace wsnode::transport {

/// Serves HTTP requests on `socket`, which lives on the io_context of
/// `ctx->lanes[lane]` (one thread: no strand needed).
void start_http_session(std::shared_ptr<server_context> ctx, stream_socket&& socket,
                        std::size_t lane);

} // namespace wsnode::transport
