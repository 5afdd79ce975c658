#include "transport/hook_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_set>

namespace wsnode::transport {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;
using protocol::hook_failed;
using protocol::hook_failure;

/// One keep-alive connection to an endpoint.
struct connection {
  explicit connection(net::io_context& io, std::size_t e) : sock(io), resolver(io), ep(e) {}
  tcp::socket sock;
  tcp::resolver resolver;
  beast::flat_buffer buf;
  std::size_t ep;
  bool reused = false;
  http::request<http::string_body> req;
  std::optional<http::response_parser<http::string_body>> parser;
  void close() {
    beast::error_code ignored;
    resolver.cancel();
    sock.close(ignored);
  }
};
using conn_ptr = std::shared_ptr<connection>;

/// One call, from being asked to its answer.
struct job {
  job(net::io_context& io, hook_kind k, std::string b, hook_done d, clock_type::time_point t)
    : kind(k), body(std::move(b)), done(std::move(d)), asked(t), timer(io) {}
  hook_kind kind;
  std::string body;
  hook_done done;
  clock_type::time_point asked;
  net::steady_timer timer;
  conn_ptr conn; ///< while open
  bool queued = false;
  bool open = false;
  bool finished = false;
  bool retried = false;
};
using job_ptr = std::shared_ptr<job>;

} // namespace

std::optional<hook_url> parse_hook_url(std::string_view url, std::string& why) {
  auto r = boost::urls::parse_uri(url);
  if (!r) {
    why = "not a URL";
    return std::nullopt;
  }
  if (r->scheme() != "http") {
    why = "only http://HOST:PORT/PATH (run the backend beside the node; TLS to it is not "
          "supported)";
    return std::nullopt;
  }
  if (r->has_userinfo() || r->has_fragment() || r->host_address().empty()) {
    why = "expected http://HOST:PORT/PATH, without credentials or fragment";
    return std::nullopt;
  }
  hook_url e;
  e.host = r->host_address();
  e.port = r->has_port() ? std::string{r->port()} : "80";
  e.host_header = r->encoded_host_and_port();
  e.target = r->encoded_path().empty() ? "/" : std::string{r->encoded_path()};
  if (r->has_query())
    e.target += "?" + std::string{r->encoded_query()};
  return e;
}

std::string check_hook_url(std::string_view url) {
  std::string why;
  parse_hook_url(url, why);
  return why;
}

/// Threading: every member but `call`'s first lines runs on the client's thread.
struct hook_client::impl : std::enable_shared_from_this<impl> {
  impl(hook_options o, hook_metrics& mm) : opts(std::move(o)), m(mm), work(io.get_executor()) {
    for (std::size_t k = 0; k < opts.urls.size(); ++k) {
      if (opts.urls[k].empty())
        continue;
      std::string why;
      auto e = parse_hook_url(opts.urls[k], why);
      if (!e)
        throw std::invalid_argument(opts.urls[k] + ": " + why);
      auto same = std::find_if(endpoints.begin(), endpoints.end(), [&](const hook_url& x) {
        return x.host == e->host && x.port == e->port && x.target == e->target;
      });
      endpoint_of[k] = static_cast<std::size_t>(same - endpoints.begin());
      if (same == endpoints.end())
        endpoints.push_back(std::move(*e));
    }
    idle.resize(endpoints.size());
  }

  void enqueue(const job_ptr& j) {
    if (stopped)
      return finish(j, hook_failed(hook_failure::unreachable, "node stopping"));
    j->timer.expires_at(j->asked + opts.timeout);
    j->timer.async_wait([self = shared_from_this(), j](beast::error_code ec) {
      if (!ec)
        self->finish(j, hook_failed(hook_failure::timeout, "timeout"));
    });
    if (in_flight < opts.max_in_flight)
      return start(j);
    j->queued = true;
    queue.push_back(j);
    bump(m.queued, 1);
  }

  void start(const job_ptr& j) {
    j->open = true;
    ++in_flight;
    bump(m.in_flight, 1);
    open_jobs.insert(j);
    auto e = endpoint_of[static_cast<std::size_t>(j->kind)];
    if (!idle[e].empty()) {
      j->conn = std::move(idle[e].back());
      idle[e].pop_back();
      j->conn->reused = true;
      return send(j);
    }
    connect(j);
  }

  void connect(const job_ptr& j) {
    auto e = endpoint_of[static_cast<std::size_t>(j->kind)];
    auto c = j->conn = std::make_shared<connection>(io, e);
    const auto& ep = endpoints[e];
    // Every handler holds the connection: a call that timed out drops it
    // while its operations still complete (aborted) into its buffers.
    c->resolver.async_resolve(
        ep.host, ep.port,
        [self = shared_from_this(), j, c](beast::error_code ec, tcp::resolver::results_type r) {
          if (j->finished)
            return;
          if (ec)
            return self->finish(j, hook_failed(hook_failure::unreachable,
                                               "cannot resolve the hook's host: " + ec.message()));
          net::async_connect(c->sock, r, [self, j, c](beast::error_code ec2, const tcp::endpoint&) {
            if (j->finished)
              return;
            if (ec2)
              return self->finish(j, hook_failed(hook_failure::unreachable, "connection refused"));
            beast::error_code ignored; // a call is one write: no Nagle wait
            c->sock.set_option(tcp::no_delay(true), ignored);
            self->send(j);
          });
        });
  }

  void send(const job_ptr& j) {
    auto cp = j->conn;
    auto& c = *cp;
    const auto& ep = endpoints[c.ep];
    c.req = {http::verb::post, ep.target, 11};
    c.req.set(http::field::host, ep.host_header);
    c.req.set(http::field::user_agent, "wsnode");
    c.req.set(http::field::content_type, "application/json");
    if (!opts.secret.empty())
      c.req.set("X-Wsnode-Secret", opts.secret);
    c.req.keep_alive(true);
    c.req.body() = j->body;
    c.req.prepare_payload();
    http::async_write(c.sock, c.req,
                      [self = shared_from_this(), j, cp](beast::error_code ec, std::size_t) {
                        if (j->finished)
                          return;
                        if (ec)
                          return self->io_failed(j, ec, false);
                        self->read(j);
                      });
  }

  void read(const job_ptr& j) {
    auto cp = j->conn;
    auto& c = *cp;
    c.parser.emplace();
    c.parser->header_limit(16 * 1024);
    c.parser->body_limit(opts.max_answer_bytes);
    http::async_read(c.sock, c.buf, *c.parser,
                     [self = shared_from_this(), j, cp](beast::error_code ec, std::size_t) {
                       if (j->finished)
                         return;
                       if (ec == http::error::body_limit)
                         return self->finish(
                             j, hook_failed(hook_failure::too_large, "answer too large"));
                       if (ec)
                         return self->io_failed(j, ec, cp->parser->got_some());
                       self->answered(j);
                     });
  }

  // A kept-alive connection the backend closed meanwhile fails at once,
  // before any answer: the call is made once more on a new connection.
  void io_failed(const job_ptr& j, beast::error_code ec, bool got_answer) {
    if (j->conn->reused && !got_answer && !j->retried) {
      j->retried = true;
      j->conn->close();
      return connect(j);
    }
    finish(j,
           hook_failed(hook_failure::unreachable,
                       got_answer ? "connection closed during the answer"
                                  : "connection closed without an answer (" + ec.message() + ")"));
  }

  void answered(const job_ptr& j) {
    auto res = j->conn->parser->release();
    bool keep = res.keep_alive();
    hook_answer a =
        res.result_int() == 200
            ? protocol::parse_hook_answer(j->kind, res.body())
            : hook_failed(hook_failure::status, "status " + std::to_string(res.result_int()));
    if (keep) { // back to the pool: finish() leaves a connection it no longer holds alone
      auto c = std::move(j->conn);
      c->buf.consume(c->buf.size());
      if (idle[c->ep].size() < opts.max_in_flight)
        idle[c->ep].push_back(std::move(c));
    }
    finish(j, std::move(a));
  }

  void finish(const job_ptr& j, hook_answer a) {
    if (j->finished)
      return;
    j->finished = true;
    j->timer.cancel();
    if (j->queued) {
      j->queued = false;
      queue.erase(std::find(queue.begin(), queue.end(), j));
      bump(m.queued, -1);
    }
    if (j->conn) {
      j->conn->close(); // its pending operations end with operation_aborted
      j->conn.reset();
    }
    if (a.what == hook_answer::kind::failed)
      warn(j->kind, a.why);
    m.observe(j->kind, a, std::chrono::duration<double>(clock_type::now() - j->asked).count());
    auto done = std::move(j->done);
    if (j->open) {
      j->open = false;
      --in_flight;
      bump(m.in_flight, -1);
      open_jobs.erase(j);
    }
    done(std::move(a));
    while (!stopped && in_flight < opts.max_in_flight && !queue.empty()) {
      auto next = std::move(queue.front());
      queue.pop_front();
      next->queued = false;
      bump(m.queued, -1);
      start(next);
    }
  }

  // At most one line a second per hook: a backend that is down fails every call.
  void warn(hook_kind k, const std::string& why) {
    auto now = clock_type::now();
    auto& last = last_warn[static_cast<std::size_t>(k)];
    if (now - last < std::chrono::seconds(1))
      return;
    last = now;
    spdlog::warn("{} hook failed: {} ({})", protocol::to_string(k), why,
                 opts.urls[static_cast<std::size_t>(k)]);
  }

  void shutdown() {
    stopped = true;
    while (!queue.empty())
      finish(queue.front(), hook_failed(hook_failure::unreachable, "node stopping"));
    while (!open_jobs.empty())
      finish(*open_jobs.begin(), hook_failed(hook_failure::unreachable, "node stopping"));
    for (auto& pool : idle)
      for (auto& c : pool)
        c->close();
    idle.clear();
    work.reset();
  }

  hook_options opts;
  hook_metrics& m;
  net::io_context io;
  net::executor_work_guard<net::io_context::executor_type> work;
  std::thread thread;
  std::atomic<bool> stopping{false}; // set by the destructor, read by call()
  bool stopped = false;
  std::vector<hook_url> endpoints;
  std::array<std::size_t, protocol::hook_kind_count> endpoint_of{};
  std::vector<std::vector<conn_ptr>> idle; // by endpoint
  std::deque<job_ptr> queue;
  std::unordered_set<job_ptr> open_jobs;
  std::size_t in_flight = 0;
  std::array<clock_type::time_point, protocol::hook_kind_count> last_warn{};
};

hook_client::hook_client(hook_options opts, hook_metrics& m)
  : impl_(std::make_shared<impl>(std::move(opts), m)) {
  impl_->thread = std::thread([i = impl_.get()] { i->io.run(); });
}

hook_client::~hook_client() {
  impl_->stopping = true;
  net::post(impl_->io, [i = impl_] { i->shutdown(); });
  impl_->thread.join();
}

bool hook_client::has(hook_kind k) const noexcept {
  return !impl_->opts.urls[static_cast<std::size_t>(k)].empty();
}

void hook_client::call(hook_kind k, std::string body, hook_done done) {
  if (impl_->stopping.load()) {
    done(hook_failed(hook_failure::unreachable, "node stopping"));
    return;
  }
  auto j = std::make_shared<job>(impl_->io, k, std::move(body), std::move(done), clock_type::now());
  net::post(impl_->io, [i = impl_, j] { i->enqueue(j); });
}

} // namespace wsnode::transport
