#include "transport/http_routes.hpp"

#include "protocol/json_scan.hpp"
#include "transport/static_files.hpp"
#include "transport/upgrade.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/file_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <fmt/format.h>
#include <openssl/crypto.h>

#include <array>
#include <optional>

namespace wsnode::transport {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

constexpr std::string_view json_type = "application/json";
constexpr std::string_view text_type = "text/plain; charset=utf-8";

std::string json_error(std::string_view code, std::string_view msg) {
  std::string out = "{\"error\":";
  protocol::json::append_string(out, code);
  out += ",\"msg\":";
  protocol::json::append_string(out, msg);
  out += "}\n";
  return out;
}

http::message_generator method_not_allowed(const request& req, std::string_view allow) {
  http::response<http::string_body> res{http::status::method_not_allowed, req.version()};
  res.set(http::field::server, "wsnode");
  res.set(http::field::allow, allow);
  res.set(http::field::content_type, text_type);
  res.keep_alive(req.keep_alive());
  res.body() = "method not allowed\n";
  res.prepare_payload();
  return res;
}

bool is_get(const request& req) {
  return req.method() == http::verb::get || req.method() == http::verb::head;
}

// Constant-time check of "Authorization: Bearer <key>".
bool authorized(const access_policy& o, const request& req) {
  if (o.api_key.empty())
    return true;
  std::string_view h = req[http::field::authorization];
  constexpr std::string_view prefix = "Bearer ";
  if (!h.starts_with(prefix))
    return false;
  auto given = h.substr(prefix.size());
  if (given.size() != o.api_key.size())
    return false;
  return CRYPTO_memcmp(given.data(), o.api_key.data(), given.size()) == 0;
}

// The one place where an API outcome becomes a status and a body.
std::pair<unsigned, std::string> render(const api_outcome& o) {
  switch (o.status) {
  case api_status::ok:
    if (!o.object.empty())
      return {200, o.object + "\n"};
    if (o.off)
      return {200, fmt::format("{{\"ok\":true,\"off\":{}}}\n", *o.off)};
    return {200, "{\"ok\":true}\n"};
  case api_status::bad_request:
    return {400, json_error("bad_request", o.msg)};
  case api_status::forbidden:
    return {403, json_error("forbidden", o.msg)};
  case api_status::unavailable:
    break;
  }
  return {503, json_error("unavailable", o.msg)};
}

// The completion of one API call: the node's outcome or, when none came
// within `bound`, a 503; whichever is first, once. Both run on the
// connection's executor, so the timer is only touched there.
api_done answer_once(request&& req, const net::io_context::executor_type& exec,
                     std::chrono::milliseconds bound, reply_fn reply) {
  struct call {
    call(request&& r, const net::io_context::executor_type& e, reply_fn f)
      : req(std::move(r)), timer(e), reply(std::move(f)) {}
    request req; // for the reply's version and keep-alive
    net::steady_timer timer;
    reply_fn reply;
    bool answered = false;
    void answer(const api_outcome& o) {
      if (std::exchange(answered, true))
        return;
      timer.cancel();
      auto [status, body] = render(o);
      reply(simple_response(req, status, std::move(body), json_type));
    }
  };
  auto c = std::make_shared<call>(std::move(req), exec, std::move(reply));
  c->timer.expires_after(bound);
  c->timer.async_wait([c](const boost::system::error_code& ec) {
    if (!ec)
      c->answer(api_failed(api_status::unavailable, "no answer within [api] timeout_ms"));
  });
  return [c, exec](api_outcome o) { net::post(exec, [c, o = std::move(o)] { c->answer(o); }); };
}

http::message_generator unauthorized(const request& req) {
  http::response<http::string_body> res{http::status::unauthorized, req.version()};
  res.set(http::field::server, "wsnode");
  res.set(http::field::www_authenticate, "Bearer");
  res.set(http::field::content_type, json_type);
  res.keep_alive(req.keep_alive());
  res.body() = json_error("unauthorized", "missing or wrong API key");
  res.prepare_payload();
  return res;
}

// The body of a cluster-wide call, checked and written back as every node
// reads it; "" and `err` set when it is refused.
std::string cluster_body(cluster_api call, std::string_view body, std::string& err) {
  auto take = [&](const auto& parsed) -> std::string {
    if (const auto* why = std::get_if<std::string>(&parsed)) {
      err = *why;
      return {};
    }
    return protocol::encode_body(std::get<0>(parsed));
  };
  switch (call) {
  case cluster_api::disconnect:
    return take(protocol::parse_disconnect_body(body));
  case cluster_api::subscribe:
  case cluster_api::unsubscribe:
    return take(protocol::parse_user_channel_body(body));
  case cluster_api::online:
    return take(protocol::parse_online_body(body));
  case cluster_api::channels:
    return take(protocol::parse_channels_body(body));
  case cluster_api::info:
    break;
  }
  return {};
}

std::optional<cluster_api> cluster_call_of(std::string_view path) {
  constexpr std::array<std::pair<std::string_view, cluster_api>, cluster_api_count> paths{{
      {"/api/disconnect", cluster_api::disconnect},
      {"/api/subscribe", cluster_api::subscribe},
      {"/api/unsubscribe", cluster_api::unsubscribe},
      {"/api/online", cluster_api::online},
      {"/api/channels", cluster_api::channels},
      {"/api/info", cluster_api::info},
  }};
  for (const auto& [p, c] : paths)
    if (p == path)
      return c;
  return std::nullopt;
}

// The server API's calls of v1.2: cluster-wide ones and broadcast.
void handle_server_api(server_context& ctx, request&& req, std::string_view path,
                       const net::io_context::executor_type& exec, reply_fn reply) {
  auto call = cluster_call_of(path);
  bool info = call == cluster_api::info;
  if (info ? !is_get(req) : req.method() != http::verb::post)
    return reply(method_not_allowed(req, info ? "GET, HEAD" : "POST"));
  auto access = ctx.access.get();
  if (!authorized(*access, req))
    return reply(unauthorized(req));
  if (!call) { // /api/broadcast
    auto parsed = protocol::parse_broadcast_body(req.body(), access->limits.max_data_bytes);
    if (const auto* why = std::get_if<std::string>(&parsed))
      return reply(simple_response(req, 400, json_error("bad_request", *why), json_type));
    bump(ctx.m.api_calls, 1);
    auto done = answer_once(std::move(req), exec, ctx.opts.api_timeout, std::move(reply));
    return ctx.node.api_broadcast(std::move(std::get<protocol::broadcast_body>(parsed)),
                                  std::move(done));
  }
  std::string err;
  auto body = cluster_body(*call, req.body(), err);
  if (!err.empty())
    return reply(simple_response(req, 400, json_error("bad_request", err), json_type));
  bump(ctx.m.api_calls, 1);
  auto done = answer_once(std::move(req), exec, ctx.opts.api_timeout, std::move(reply));
  ctx.node.api_cluster(*call, std::move(body), std::move(done));
}

void handle_api(server_context& ctx, request&& req, std::string_view path,
                const net::io_context::executor_type& exec, reply_fn reply) {
  bool publish = path == "/api/publish";
  bool history = path == "/api/history";
  bool presence = path == "/api/presence";
  if (cluster_call_of(path) || path == "/api/broadcast")
    return handle_server_api(ctx, std::move(req), path, exec, std::move(reply));
  if (!publish && !history && !presence && path != "/api/send")
    return reply(simple_response(req, 404, json_error("not_found", "no such API"), json_type));
  if (req.method() != http::verb::post)
    return reply(method_not_allowed(req, "POST"));
  auto access = ctx.access.get();
  if (!authorized(*access, req))
    return reply(unauthorized(req));
  auto parsed =
      history ? protocol::parse_history_body(req.body())
      : presence
          ? protocol::parse_history_body(req.body(), protocol::op::presence)
          : protocol::parse_api_body(req.body(), publish ? protocol::op::pub : protocol::op::send,
                                     access->limits);
  if (auto* err = std::get_if<protocol::command_error>(&parsed))
    return reply(
        simple_response(req, 400, json_error(protocol::to_string(err->code), err->msg), json_type));
  auto& cmd = std::get<protocol::command>(parsed);
  bump(ctx.m.api_calls, 1);
  std::string data{cmd.data}; // a view into the body: copied before the request moves
  auto done = answer_once(std::move(req), exec, ctx.opts.api_timeout, std::move(reply));
  if (presence) {
    ctx.node.api_presence(std::move(cmd.ch), cmd.limit ? static_cast<long long>(*cmd.limit) : -1,
                          std::move(cmd.cursor), std::move(done));
  } else if (history) {
    bool since = cmd.since.has_value();
    ctx.node.api_history(std::move(cmd.ch), since, since ? cmd.since->ep : std::string{},
                         since ? cmd.since->off : 0,
                         cmd.limit ? static_cast<long long>(*cmd.limit) : -1, std::move(done));
  } else if (publish) {
    ctx.node.api_publish(std::move(cmd.ch), std::move(data), std::move(cmd.key), std::move(done));
  } else {
    ctx.node.api_send(std::move(cmd.to), std::move(data), std::move(done));
  }
}

void handle_static(server_context& ctx, request&& req, const boost::urls::url_view& u,
                   reply_fn reply) {
  if (!is_get(req))
    return reply(method_not_allowed(req, "GET, HEAD"));
  std::vector<std::string> segments;
  for (auto s : u.segments())
    segments.emplace_back(s);
  auto path = static_path(ctx.opts.static_dir, segments);
  if (!path)
    return reply(simple_response(req, 404, "not found\n", text_type));
  http::file_body::value_type file;
  beast::error_code ec;
  file.open(path->c_str(), beast::file_mode::scan, ec);
  if (ec)
    return reply(simple_response(req, 404, "not found\n", text_type));
  auto size = file.size();
  auto type = mime_type(path->filename().string());
  if (req.method() == http::verb::head) {
    http::response<http::empty_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "wsnode");
    res.set(http::field::content_type, type);
    res.content_length(size);
    res.keep_alive(req.keep_alive());
    return reply(std::move(res));
  }
  http::response<http::file_body> res{std::piecewise_construct, std::make_tuple(std::move(file)),
                                      std::make_tuple(http::status::ok, req.version())};
  res.set(http::field::server, "wsnode");
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-cache");
  res.content_length(size);
  res.keep_alive(req.keep_alive());
  return reply(std::move(res));
}

} // namespace

http::message_generator simple_response(const request& req, unsigned status, std::string body,
                                        std::string_view content_type) {
  http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
  res.set(http::field::server, "wsnode");
  res.set(http::field::content_type, content_type);
  res.keep_alive(req.keep_alive());
  if (req.method() != http::verb::head)
    res.body() = std::move(body);
  res.prepare_payload();
  if (req.method() == http::verb::head)
    res.content_length(body.size());
  return res;
}

void handle_request(server_context& ctx, request&& req, const net::io_context::executor_type& exec,
                    reply_fn reply) {
  bump(ctx.m.http_requests, 1);
  auto parsed = boost::urls::parse_origin_form(req.target());
  if (!parsed)
    return reply(simple_response(req, 400, "malformed request target\n", text_type));
  std::string path = parsed->path();
  if (path.starts_with("/api/"))
    return handle_api(ctx, std::move(req), path, exec, std::move(reply));
  if (path == "/healthz") {
    if (!is_get(req))
      return reply(method_not_allowed(req, "GET, HEAD"));
    return reply(simple_response(req, 200, "ok\n", text_type));
  }
  if (path == "/readyz") {
    if (!is_get(req))
      return reply(method_not_allowed(req, "GET, HEAD"));
    std::string body;
    bool ready = ctx.node.readiness(body);
    return reply(simple_response(req, ready ? 200 : 503, std::move(body), json_type));
  }
  if (path == "/metrics") {
    if (!is_get(req))
      return reply(method_not_allowed(req, "GET, HEAD"));
    return reply(simple_response(req, 200, ctx.node.metrics_text(),
                                 "text/plain; version=0.0.4; charset=utf-8"));
  }
  if (is_ws_path(req.target())) {
    http::response<http::string_body> res{http::status::upgrade_required, req.version()};
    res.set(http::field::server, "wsnode");
    res.set(http::field::upgrade, "websocket");
    res.set(http::field::content_type, text_type);
    res.keep_alive(req.keep_alive());
    res.body() = "this endpoint speaks WebSocket only\n";
    res.prepare_payload();
    return reply(std::move(res));
  }
  handle_static(ctx, std::move(req), *parsed, std::move(reply));
}

} // namespace wsnode::transport
