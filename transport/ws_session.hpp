// One WebSocket connection: Beast stream, bounded write queue, input flow
// control. Implemented in ws_session.cpp, the only TU with Beast's
// WebSocket templates.
#pragma once

#include "actors/ports.hpp"
#include "transport/context.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <memory>

namespace wsnode::transport {

/// Completes the upgrade of `socket` with `req` and runs the session until
/// the connection ends. The caller has already counted it in
/// `metrics::connections`; the session uncounts it when it ends.
void start_ws_session(std::shared_ptr<server_context> ctx, boost::asio::ip::tcp::socket&& socket,
                      boost::beast::http::request<boost::beast::http::string_body>&& req,
                      session_identity who);

} // namespace wsnode::transport
