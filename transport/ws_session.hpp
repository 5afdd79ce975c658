// One WebSocket connection: Beast stream, bounded write queue, input flow
// control. Implemented in ws_session.cpp, the only TU with Beast's
// WebSocket templates.
#pragma once

#include "actors/ports.hpp"
#include "transport/context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <memory>

namespace wsnode::transport {

/// Makes the delivery lane of one io_context (see ws_session.cpp); writes
/// wait up to `coalesce` for more frames to the same sockets.
std::shared_ptr<delivery_lane> make_lane(boost::asio::io_context& ioc, metrics& m,
                                         std::chrono::microseconds coalesce);

/// Completes the upgrade of `socket` (which lives on the io_context of
/// `ctx->lanes[lane]`) with `req` and runs the session until the connection
/// ends. The caller has already counted it in `metrics::connections`; the
/// session uncounts it when it ends.
void start_ws_session(std::shared_ptr<server_context> ctx, boost::asio::ip::tcp::socket&& socket,
                      boost::beast::http::request<boost::beast::http::string_body>&& req,
                      session_identity who, std::size_t lane);

} // namespace wsnode::transport
