// The plain HTTP endpoints: health, readiness, metrics, the publish API and
// static files. Upgrades are handled by http_session + upgrade.hpp.
#pragma once

#include "transport/context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/message_generator.hpp>
#include <boost/beast/http/string_body.hpp>

#include <functional>

namespace wsnode::transport {

using request = boost::beast::http::request<boost::beast::http::string_body>;
using reply_fn = std::function<void(boost::beast::http::message_generator)>;

/// Handles one non-upgrade request of a connection served on `exec`. Calls
/// `reply` exactly once, maybe later and from another thread (API calls
/// complete when the broker took them, or with 503 after `[api]
/// timeout_ms`).
void handle_request(server_context& ctx, request&& req,
                    const boost::asio::io_context::executor_type& exec, reply_fn reply);

/// A small response with `status`, a text or JSON `body` and `content_type`.
boost::beast::http::message_generator simple_response(const request& req, unsigned status,
                                                      std::string body,
                                                      std::string_view content_type);

} // namespace wsnode::transport
