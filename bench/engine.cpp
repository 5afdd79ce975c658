#include "bench/engine.hpp"

#include "bench/engine_impl.hpp"
#include "bench/report.hpp"
#include "bench/ws_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <deque>

namespace wsnode::bench {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// ---------------------------------------------------------------- HTTP publisher

// One keep-alive HTTP/1.1 connection sending queued POSTs one at a time.
class http_client : public std::enable_shared_from_this<http_client> {
public:
  http_client(engine::impl& e, worker& w) : e_(e), stream_(net::make_strand(w.ioc)) {}
  void post(std::string path, std::string body) {
    net::post(stream_.get_executor(),
              [self = shared_from_this(), p = std::move(path), b = std::move(body)]() mutable {
                self->queue_.emplace_back(std::move(p), std::move(b));
                if (self->queue_.size() == 1)
                  self->next();
              });
  }
  std::size_t queued() const { return depth_.load(); }

private:
  void next();
  void done(bool ok);

  engine::impl& e_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  std::deque<std::pair<std::string, std::string>> queue_;
  std::atomic<std::size_t> depth_{0};
  bool connected_ = false;

  friend struct engine::impl;
  friend class engine;
};

// ---------------------------------------------------------------- engine::impl

engine::impl::impl(engine& o, engine_options opts) : owner(o), opts(std::move(opts)) {
  workers.reserve(this->opts.threads);
  for (std::size_t i = 0; i < this->opts.threads; ++i)
    workers.push_back(std::make_unique<worker>());
  for (auto& w : workers) {
    auto* wp = w.get();
    guards.emplace_back(net::make_work_guard(wp->ioc));
    wp->thread = std::thread([wp] { wp->ioc.run(); });
  }
  for (std::size_t i = 0; i < std::max<std::size_t>(4, this->opts.threads * 4); ++i)
    https.push_back(std::make_shared<http_client>(*this, *workers[i % workers.size()]));
}

// ---------------------------------------------------------------- http_client impl

void http_client::next() {
  if (queue_.empty())
    return;
  auto go = [self = shared_from_this()] {
    auto& [path, body] = self->queue_.front();
    self->req_ = {http::verb::post, path, 11};
    self->req_.set(http::field::host, self->e_.opts.http.host);
    self->req_.set(http::field::content_type, "application/json");
    self->req_.keep_alive(true);
    self->req_.body() = body;
    self->req_.prepare_payload();
    http::async_write(self->stream_, self->req_, [self](beast::error_code ec, std::size_t) {
      if (ec)
        return self->done(false);
      self->res_ = {};
      http::async_read(self->stream_, self->buf_, self->res_,
                       [self](beast::error_code ec2, std::size_t) {
                         self->done(!ec2 && self->res_.result_int() < 300);
                       });
    });
  };
  if (connected_)
    return go();
  tcp::endpoint ep{net::ip::make_address(e_.opts.http.host), e_.opts.http.port};
  stream_.async_connect(ep, [self = shared_from_this(), go](beast::error_code ec) {
    if (ec)
      return self->done(false);
    self->stream_.socket().set_option(tcp::no_delay(true));
    self->connected_ = true;
    go();
  });
}

void http_client::done(bool ok) {
  if (!ok) {
    connected_ = false;
    beast::error_code ignored;
    stream_.socket().close(ignored);
    e_.http_errors.fetch_add(1);
  }
  queue_.pop_front();
  --depth_;
  e_.owner.in_flight_.fetch_sub(1);
  next();
}

// ---------------------------------------------------------------- engine

engine::engine(engine_options opts) : impl_(std::make_unique<impl>(*this, std::move(opts))) {}

engine::~engine() {
  finish();
}

std::size_t engine::open(const std::vector<client_spec>& specs,
                         const std::function<void(std::size_t)>& progress) {
  auto& d = *impl_;
  std::size_t first = d.clients.size();
  std::size_t target = ready() + failed() + specs.size();
  for (std::size_t i = 0; i < specs.size(); ++i) {
    std::size_t index = first + i;
    auto& w = *d.workers[index % d.workers.size()];
    auto c = std::make_shared<ws_client>(d, w, index, specs[i]);
    {
      std::unique_lock<std::mutex> g{d.mu};
      d.cv.wait(g, [&] { return d.in_progress < d.opts.concurrency; });
      ++d.in_progress;
      d.clients.push_back(c);
    }
    net::post(w.ioc, [c] { c->start(); });
    if (progress && i % 500 == 0)
      progress(ready());
  }
  std::unique_lock<std::mutex> g{d.mu};
  while (ready() + failed() < target) {
    d.cv.wait_for(g, std::chrono::milliseconds(500));
    if (progress) {
      g.unlock();
      progress(ready());
      g.lock();
    }
  }
  return first;
}

std::string engine::node_of(std::size_t i) const {
  return impl_->clients.at(i)->node();
}

void engine::publish(std::size_t from, const std::string& ch, std::string payload, bool use_http) {
  auto& d = *impl_;
  in_flight_.fetch_add(1);
  auto& c = *d.clients.at(from);
  auto frame = use_http ? std::string{} : c.proto().publish(ch, payload, c.next_id());
  if (!frame.empty())
    return c.send(std::move(frame));
  auto req = http_publish_for(d.opts.proto, ch, payload);
  auto& h = *d.https[d.next_http.fetch_add(1) % d.https.size()];
  ++h.depth_;
  h.post(std::move(req.path), std::move(req.body));
}

void engine::track_deliveries(std::uint32_t subscribers) {
  auto& d = *impl_;
  d.tracked.reset(new std::atomic<std::uint32_t>[impl::tracked_slots]);
  for (std::size_t i = 0; i < impl::tracked_slots; ++i)
    d.tracked[i].store(0);
  d.track_fanout = subscribers;
}

void engine::expect_message(std::uint64_t seq) {
  auto& d = *impl_;
  if (d.track_fanout == 0)
    return;
  // the slot's previous message (seq - tracked_slots) is complete or lost:
  // far more than a window ago
  d.tracked[seq % impl::tracked_slots].store(0, std::memory_order_relaxed);
  expected_.fetch_add(1);
}

void engine::direct(std::size_t from, const std::string& user, std::string payload) {
  auto& d = *impl_;
  auto& c = *d.clients.at(from);
  auto frame = c.proto().direct(user, payload, c.next_id());
  if (!frame.empty()) {
    in_flight_.fetch_add(1);
    return c.send(std::move(frame));
  }
  // no direct messages in the protocol (Nchan): publish to the user's channel
  publish(from, c.proto().user_channel(user), std::move(payload), true);
}

thread_stats engine::finish() {
  auto& d = *impl_;
  thread_stats all;
  if (d.workers.empty())
    return all;
  for (auto& c : d.clients)
    c->close();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  d.guards.clear();
  for (auto& w : d.workers)
    w->ioc.stop();
  for (auto& w : d.workers) {
    if (w->thread.joinable())
      w->thread.join();
    all.latency.merge(w->stats.latency);
    all.delivered += w->stats.delivered;
    all.duplicates += w->stats.duplicates;
    all.errors += w->stats.errors;
    all.reads += w->stats.reads;
    all.read_bytes += w->stats.read_bytes;
  }
  all.errors += d.http_errors.load();
  d.clients.clear();
  d.https.clear();
  d.workers.clear();
  return all;
}

} // namespace wsnode::bench
