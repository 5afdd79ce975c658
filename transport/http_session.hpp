// One accepted TCP connection speaking HTTP/1.1 until it upgrades to
// WebSocket (handed to ws_session) or closes.
#pragma once

#include "transport/context.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace wsnode::transport {

/// Serves HTTP requests on `socket` (whose executor is a strand).
void start_http_session(std::shared_ptr<server_context> ctx, boost::asio::ip::tcp::socket&& socket);

} // namespace wsnode::transport
