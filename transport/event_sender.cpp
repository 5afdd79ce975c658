#include "transport/event_sender.hpp"

#include "protocol/hook_codec.hpp"
#include "transport/hook_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace wsnode::transport {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using std::chrono::milliseconds;

/// Events per call (DESIGN: at most 100).
constexpr std::size_t max_batch = 100;
constexpr milliseconds first_backoff{100};
constexpr milliseconds max_backoff{10000};

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace

/// Threading: `emit` on any thread (under `mu`); the rest on the sender's
/// own thread, which alone touches the connection.
struct event_sender::impl {
  impl(event_options o, hook_metrics& mm) : opts(std::move(o)), m(mm), stream(io) {
    std::string why;
    auto u = parse_hook_url(opts.url, why);
    if (!u)
      throw std::invalid_argument(opts.url + ": " + why);
    url = std::move(*u);
    // ids unique across restarts of the node: its start time, then a count
    id_prefix = opts.node_id + "-" + std::to_string(unix_ms_now()) + "-";
  }

  void run() {
    auto backoff = first_backoff;
    std::unique_lock lock{mu};
    while (true) {
      cv.wait(lock, [&] { return !queue.empty() || stopping; });
      if (queue.empty() || (stopping && std::chrono::steady_clock::now() >= stop_deadline))
        break;
      auto n = std::min(queue.size(), max_batch);
      std::vector<std::string> batch(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
      lock.unlock();
      bool ok = post(protocol::encode_event_batch(opts.node_id, batch));
      lock.lock();
      if (ok) {
        // only this thread removes events, and emit() only appends
        queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
        bump(m.events_queued, -static_cast<std::int64_t>(n));
        bump(m.events_sent, n);
        backoff = first_backoff;
        continue;
      }
      bump(m.event_posts_failed, 1);
      auto until = std::chrono::steady_clock::now() + backoff;
      if (stopping)
        until = std::min(until, stop_deadline);
      cv.wait_until(lock, until,
                    [&] { return stopping && std::chrono::steady_clock::now() >= stop_deadline; });
      backoff = std::min(backoff * 2, max_backoff);
    }
    if (!queue.empty())
      spdlog::warn("webhooks: {} events not delivered before the node stopped", queue.size());
  }

  // One call; true when the application answered 2xx. Asynchronous
  // operations run to completion here: only they honour the stream's
  // timeout.
  bool post(const std::string& body) {
    bool ok = false;
    std::string why;
    http::request<http::string_body> req{http::verb::post, url.target, 11};
    req.set(http::field::host, url.host_header);
    req.set(http::field::user_agent, "wsnode");
    req.set(http::field::content_type, "application/json");
    req.set("X-Wsnode-Secret", opts.secret);
    req.set("X-Wsnode-Signature", protocol::sign_body(opts.secret, body));
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024); // only the status counts
    auto fail = [&](const beast::error_code& ec) {
      why = ec.message();
      close();
    };
    auto on_read = [&](beast::error_code ec, std::size_t) {
      if (ec)
        return fail(ec);
      auto status = parser.get().result_int();
      ok = status / 100 == 2;
      if (!ok)
        why = "status " + std::to_string(status);
      if (!parser.get().keep_alive())
        close();
    };
    auto write = [&] {
      stream.expires_after(opts.timeout);
      http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
        if (ec)
          return fail(ec);
        http::async_read(stream, buf, parser, on_read); // the same deadline
      });
    };
    if (connected) {
      write();
    } else {
      beast::error_code ec;
      tcp::resolver resolver{io};
      auto results = resolver.resolve(url.host, url.port, ec);
      if (ec) {
        warn("cannot resolve " + url.host + ": " + ec.message());
        return false;
      }
      stream.expires_after(opts.timeout);
      stream.async_connect(results, [&](beast::error_code ec2, const tcp::endpoint&) {
        if (ec2)
          return fail(ec2);
        connected = true;
        beast::error_code ignored;
        stream.socket().set_option(tcp::no_delay(true), ignored);
        write();
      });
    }
    io.restart();
    io.run();
    if (!ok)
      warn(why);
    return ok;
  }

  void close() {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
    buf.consume(buf.size());
    connected = false;
  }

  void warn(const std::string& why) { // at most once a second: retries repeat
    auto now = std::chrono::steady_clock::now();
    if (now - last_warn < std::chrono::seconds(1))
      return;
    last_warn = now;
    spdlog::warn("webhooks: call to {} failed: {}; retrying", opts.url, why);
  }

  event_options opts;
  hook_metrics& m;
  hook_url url;
  std::string id_prefix;
  std::uint64_t next_id = 1; // under mu
  net::io_context io;
  beast::tcp_stream stream;
  beast::flat_buffer buf;
  bool connected = false;
  std::chrono::steady_clock::time_point last_warn{};
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue; // encoded events, oldest first
  bool stopping = false;
  std::chrono::steady_clock::time_point stop_deadline{};
  std::thread thread;
};

event_sender::event_sender(event_options opts, hook_metrics& m)
  : impl_(std::make_unique<impl>(std::move(opts), m)) {
  impl_->thread = std::thread([i = impl_.get()] { i->run(); });
}

event_sender::~event_sender() {
  {
    std::lock_guard lock{impl_->mu};
    impl_->stopping = true;
    impl_->stop_deadline = std::chrono::steady_clock::now() + impl_->opts.timeout;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

bool event_sender::wants(event_kind k) const noexcept {
  return impl_->opts.kinds[static_cast<std::size_t>(k)];
}

void event_sender::emit(event_kind k, std::string fields) {
  auto time = unix_ms_now();
  {
    std::lock_guard lock{impl_->mu};
    if (impl_->queue.size() >= impl_->opts.max_queue) {
      bump(impl_->m.events_dropped, 1);
      return;
    }
    auto id = impl_->id_prefix + std::to_string(impl_->next_id++);
    impl_->queue.push_back(protocol::encode_event(id, to_string(k), time, fields));
    bump(impl_->m.events_queued, 1);
  }
  impl_->cv.notify_one();
}

} // namespace wsnode::transport
