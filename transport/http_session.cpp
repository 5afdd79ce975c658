#include "transport/http_session.hpp"

#include "protocol/websocket.hpp"
#include "transport/http_routes.hpp"
#include "transport/upgrade.hpp"
#include "transport/ws_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>

#include <optional>

namespace wsnode::transport {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

/// Threading: the socket's io_context only (one thread).
class http_session : public std::enable_shared_from_this<http_session> {
public:
  http_session(std::shared_ptr<server_context> ctx, stream_socket&& s, std::size_t lane)
    : ctx_ptr_(std::move(ctx)), ctx_(*ctx_ptr_), socket_(std::move(s)),
      timer_(socket_.get_executor()), lane_(lane) {
    beast::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec)
      remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void run() {
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(ctx_.opts.max_header_bytes));
    parser_->body_limit(ctx_.opts.max_body_bytes);
    expires_after(ctx_.opts.http_idle_timeout); // the request and its response
    http::async_read(
        socket_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream)
      return do_shutdown();
    if (ec == net::error::operation_aborted || ec == net::error::bad_descriptor ||
        ec == net::error::connection_reset)
      return;
    if (ec == http::error::body_limit)
      return fail_request(413, "request body too large\n");
    if (ec == http::error::header_limit)
      return fail_request(431, "request header fields too large\n");
    if (ec)
      return fail_request(400, "bad request: " + ec.message() + "\n");
    request req = parser_->release();
    if (websocket::is_upgrade(req))
      return upgrade(std::move(req));
    keep_alive_ = req.keep_alive();
    handle_request(ctx_, std::move(req), socket_.get_executor(),
                   [self = shared_from_this()](http::message_generator m) {
                     // may run on a CAF thread (API completions): hop back onto the strand
                     net::post(self->socket_.get_executor(),
                               [self, m = std::move(m)]() mutable { self->write(std::move(m)); });
                   });
  }

  // The WebSocket parts of the handshake (RFC 6455 4.2.1) that
  // websocket::is_upgrade (version, method, Connection and Upgrade tokens)
  // leaves to the server.
  static std::optional<std::pair<unsigned, std::string>> bad_handshake(const request& req) {
    if (req[http::field::sec_websocket_version] != "13")
      return std::pair{426u, std::string{"unsupported WebSocket version; use 13"}};
    if (!protocol::ws::valid_client_key(req[http::field::sec_websocket_key]))
      return std::pair{400u, std::string{"missing or malformed Sec-WebSocket-Key"}};
    return std::nullopt;
  }

  void upgrade(request&& req) {
    if (auto bad = bad_handshake(req)) {
      ctx_.m.reject(reject_reason::bad_request);
      keep_alive_ = false;
      http::response<http::string_body> res{static_cast<http::status>(bad->first), req.version()};
      res.set(http::field::server, "wsnode");
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      if (bad->first == 426)
        res.set(http::field::sec_websocket_version, "13");
      res.keep_alive(false);
      res.body() = bad->second + "\n";
      res.prepare_payload();
      return write(std::move(res));
    }
    auto access = ctx_.access.get();
    auto d = decide_upgrade(ctx_.opts, *access, ctx_.draining.load(), req.target(),
                            req[http::field::origin]);
    if (d.accepted()) {
      auto n = ctx_.m.connections.fetch_add(1) + 1;
      if (static_cast<std::size_t>(n) > access->max_connections) {
        bump(ctx_.m.connections, -1);
        d.status = 503;
        d.reason = reject_reason::limit;
        d.message = "connection limit reached";
      }
    }
    if (!d.accepted())
      return refuse_upgrade(req, d.status, d.reason, d.message);
    ws_handshake hs;
    hs.key = std::string{req[http::field::sec_websocket_key]};
    hs.extensions = std::string{req[http::field::sec_websocket_extensions]};
    hs.batch = d.batch;
    if (d.ask_hook)
      return ask_connect_hook(std::move(req), std::move(hs), d);
    if (ctx_.node.banned(d.user)) {
      bump(ctx_.m.connections, -1);
      return refuse_upgrade(req, 403, reject_reason::banned, "user is banned");
    }
    req = {}; // nothing of the request stays with the connection
    timer_.cancel();
    session_identity who;
    who.user = std::move(d.user);
    who.remote = remote_;
    who.exp = d.exp;
    who.channels = std::move(d.channels);
    start_ws_session(ctx_ptr_, std::move(socket_), std::move(hs), std::move(who), lane_);
  }

  // An HTTP answer to an upgrade that does not happen (the connection ends).
  void refuse_upgrade(const request& req, unsigned status, reject_reason reason,
                      const std::string& message) {
    ctx_.m.reject(reason);
    spdlog::info("upgrade refused {} {} from {}: {}", status, req.target(), remote_, message);
    keep_alive_ = false;
    write(simple_response(req, status, message + "\n", "text/plain; charset=utf-8"));
  }

  // Identity is the application's: its connect hook gets the forwarded
  // headers, the query string and the token, and its answer decides (the
  // connection counts against the limit meanwhile; the request timer still
  // runs, so a hook slower than http.idle_timeout_ms ends the connection).
  void ask_connect_hook(request&& req, ws_handshake&& hs, const upgrade_decision& d) {
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& name : ctx_.opts.forward_headers) {
      std::string joined;
      for (auto [it, end] = req.equal_range(name); it != end; ++it)
        joined += (joined.empty()                   ? ""
                   : beast::iequals(name, "Cookie") ? "; "
                                                    : ", ") +
                  std::string{it->value()};
      if (!joined.empty() || req.find(name) != req.end())
        headers.emplace_back(name, std::move(joined));
    }
    auto body =
        protocol::encode_connect_hook(ctx_.opts.node_id, remote_, headers, d.query, d.token);
    request head; // what the answer needs of the request
    head.version(req.version());
    head.target(req.target());
    head.keep_alive(false);
    req = {};
    ctx_.opts.hooks->call(
        hook_kind::connect, std::move(body),
        [self = shared_from_this(), head = std::move(head),
         hs = std::move(hs)](hook_answer a) mutable {
          net::post(self->socket_.get_executor(),
                    [self, head = std::move(head), hs = std::move(hs), a = std::move(a)]() mutable {
                      self->on_connect_answer(head, std::move(hs), std::move(a));
                    });
        });
  }

  void on_connect_answer(const request& head, ws_handshake&& hs, hook_answer&& a) {
    if (!socket_.is_open()) { // the client left (or the request timer ended it) meanwhile
      bump(ctx_.m.connections, -1);
      return;
    }
    if (a.what == hook_answer::kind::error || a.what == hook_answer::kind::failed) {
      bump(ctx_.m.connections, -1);
      if (a.what == hook_answer::kind::failed)
        return refuse_upgrade(head, 503, reject_reason::hook_failed, "hook failed: " + a.why);
      return refuse_upgrade(head, 403, reject_reason::hook, a.msg.empty() ? a.code : a.msg);
    }
    if (a.what == hook_answer::kind::result && ctx_.node.banned(a.user)) {
      bump(ctx_.m.connections, -1);
      return refuse_upgrade(head, 403, reject_reason::banned, "user is banned");
    }
    session_identity who;
    who.remote = remote_;
    who.from_hook = true;
    if (a.what == hook_answer::kind::disconnect) {
      who.close_code = a.close_code;
      who.close_reason = std::move(a.reason);
    } else {
      who.user = std::move(a.user);
      who.exp = a.expire_at;
      who.subscribe = std::move(a.channels);
      who.meta = a.meta.value_or(std::string{});
    }
    timer_.cancel();
    start_ws_session(ctx_ptr_, std::move(socket_), std::move(hs), std::move(who), lane_);
  }

  // After `d`, the socket is closed: whatever is pending fails.
  void expires_after(std::chrono::steady_clock::duration d) {
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec)
        return; // re-armed or cancelled
      beast::error_code ignored;
      self->socket_.close(ignored);
    });
  }

  void fail_request(unsigned status, std::string body) {
    keep_alive_ = false;
    request req; // a minimal HTTP/1.1 request for the response's version
    req.version(11);
    req.keep_alive(false);
    write(simple_response(req, status, std::move(body), "text/plain; charset=utf-8"));
  }

  void write(http::message_generator m) {
    bool keep = keep_alive_ && m.keep_alive() && !ctx_.draining.load();
    beast::async_write(socket_, std::move(m),
                       [self = shared_from_this(), keep](beast::error_code ec, std::size_t) {
                         if (ec || !keep)
                           return self->do_shutdown();
                         self->do_read();
                       });
  }

  // Half-closes, then reads and discards what the client still sends (for a
  // bounded time and size) so that a client still writing a refused body
  // reads our response instead of a reset (a "lingering close").
  void do_shutdown() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec)
      return;
    expires_after(std::chrono::seconds(2));
    linger(0);
  }

  void linger(std::size_t discarded) {
    constexpr std::size_t max_discard = 16 << 20;
    buf_.consume(buf_.size());
    socket_.async_read_some(buf_.prepare(65536), [self = shared_from_this(),
                                                  discarded](beast::error_code ec, std::size_t n) {
      if (ec || discarded + n > max_discard)
        return; // EOF, timeout or enough: the socket closes with the session
      self->linger(discarded + n);
    });
  }

  std::shared_ptr<server_context> ctx_ptr_;
  server_context& ctx_;
  stream_socket socket_;
  net::steady_timer timer_; // one deadline for a request and its response
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::size_t lane_;
  std::string remote_;
  bool keep_alive_ = true;
};

} // namespace

void start_http_session(std::shared_ptr<server_context> ctx, stream_socket&& socket,
                        std::size_t lane) {
  std::make_shared<http_session>(std::move(ctx), std::move(socket), lane)->run();
}

} // namespace wsnode::transport
