#include "bench/engine.hpp"

#include "bench/report.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <bitset>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <netinet/in.h>
#include <thread>

namespace wsnode::bench {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Connects `sock` from source address 127.0.0.(1 + k % n): more than one
// source address lifts the limit of ~28k ephemeral ports per destination.
void bind_source(tcp::socket& sock, std::size_t k, std::size_t n) {
  if (n <= 1)
    return;
  beast::error_code ec;
  sock.open(tcp::v4(), ec);
  int one = 1;
  ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  net::ip::address_v4::bytes_type b{127, 0, 0, static_cast<unsigned char>(1 + k % n)};
  sock.bind({net::ip::address_v4(b), 0}, ec);
}

} // namespace

/// Which sequence numbers of one sender arrived: the highest and a window
/// of 1024 below it (messages may arrive out of order when publishes run
/// concurrently); anything older counts as a duplicate.
class seen_window {
public:
  bool first_time(std::uint64_t seq) {
    if (seq > top_) {
      auto shift = seq - top_;
      if (shift >= bits_.size())
        bits_.reset();
      else
        bits_ <<= shift;
      top_ = seq;
      bits_.set(0);
      return true;
    }
    auto back = top_ - seq;
    if (back >= bits_.size() || bits_.test(back))
      return false;
    bits_.set(back);
    return true;
  }

private:
  std::uint64_t top_ = 0;
  std::bitset<1024> bits_;
};

struct worker {
  net::io_context ioc{1};
  std::thread thread;
  thread_stats stats;
};

// ---------------------------------------------------------------- WebSocket client

class ws_client : public std::enable_shared_from_this<ws_client> {
public:
  ws_client(engine::impl& e, worker& w, std::size_t index, client_spec spec);

  void start(int attempt = 0);
  void send(std::string frame) {
    net::post(ws_.get_executor(), [self = shared_from_this(), f = std::move(frame)]() mutable {
      self->queue_.push_back(std::move(f));
      if (self->queue_.size() == 1)
        self->do_write();
    });
  }
  void close() {
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      if (self->ws_.is_open())
        self->ws_.async_close(websocket::close_code::normal, [self](beast::error_code) {});
    });
  }
  const std::string& node() const { return node_; }
  const std::string& user() const { return spec_.user; }
  codec& proto() { return *codec_; }
  std::uint64_t next_id() { return ++next_id_; }

private:
  void fail();
  void on_ready();
  void do_read();
  void on_frame(std::string_view f);
  void do_write();

  engine::impl& e_;
  worker& w_;
  std::size_t index_;
  client_spec spec_;
  std::unique_ptr<codec> codec_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  std::deque<std::string> queue_;
  std::vector<std::string> replies_;
  std::vector<std::pair<std::uint32_t, seen_window>> seen_; // per sender
  std::string node_;
  std::size_t pending_subs_ = 0;
  std::atomic<std::uint64_t> next_id_{0};
  int attempt_ = 0;
  bool ready_ = false;
  bool closing_ = false;
};

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

struct engine::impl {
  impl(engine& o, engine_options opts) : owner(o), opts(std::move(opts)) {
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

  // a client finished opening (ok) or gave up
  void opened(bool ok) {
    (ok ? owner.ready_ : owner.failed_).fetch_add(1);
    std::lock_guard<std::mutex> g{mu};
    --in_progress;
    cv.notify_all();
  }

  engine& owner;
  engine_options opts;
  std::vector<std::unique_ptr<worker>> workers;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards;
  std::vector<std::shared_ptr<ws_client>> clients;
  std::vector<std::shared_ptr<http_client>> https;
  std::atomic<std::size_t> next_http{0};
  std::atomic<std::uint64_t> http_errors{0};
  std::mutex mu;
  std::condition_variable cv;
  std::size_t in_progress = 0;
};

// ---------------------------------------------------------------- ws_client impl

ws_client::ws_client(engine::impl& e, worker& w, std::size_t index, client_spec spec)
  : e_(e), w_(w), index_(index), spec_(std::move(spec)), codec_(make_codec(e.opts.proto)),
    ws_(net::make_strand(w.ioc)) {}

void ws_client::start(int attempt) {
  attempt_ = attempt;
  auto& sock = beast::get_lowest_layer(ws_).socket();
  bind_source(sock, index_, e_.opts.sources);
  beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
  tcp::endpoint ep{net::ip::make_address(e_.opts.ws.host), e_.opts.ws.port};
  beast::get_lowest_layer(ws_).async_connect(ep, [self = shared_from_this()](beast::error_code ec) {
    if (ec)
      return self->fail();
    beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true));
    beast::get_lowest_layer(self->ws_).expires_never();
    auto t = websocket::stream_base::timeout::suggested(beast::role_type::client);
    t.handshake_timeout = std::chrono::seconds(30);
    self->ws_.set_option(t);
    self->ws_.read_message_max(64 << 20);
    auto channel = self->spec_.channels.empty() ? std::string{} : self->spec_.channels.front();
    auto host = self->e_.opts.ws.host + ":" + std::to_string(self->e_.opts.ws.port);
    self->ws_.async_handshake(host, self->codec_->path(self->spec_.user, channel),
                              [self](beast::error_code ec2) {
                                if (ec2)
                                  return self->fail();
                                if (self->codec_->ready_on_open())
                                  self->on_ready();
                                self->do_read();
                              });
  });
}

void ws_client::fail() {
  if (ready_ || closing_)
    return; // a drop after the client was counted; deliveries tell the rest
  closing_ = true;
  e_.opened(false);
}

void ws_client::on_ready() {
  if (!spec_.avoid_node.empty() && node_ == spec_.avoid_node && attempt_ < 20) {
    // landed on the partner's node: reconnect for another one
    auto again = std::make_shared<ws_client>(e_, w_, index_, spec_);
    {
      std::lock_guard<std::mutex> g{e_.mu};
      e_.clients[index_] = again;
    }
    closing_ = true;
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](beast::error_code) {});
    again->start(attempt_ + 1);
    return;
  }
  for (const auto& ch : spec_.channels) {
    auto f = codec_->subscribe(ch, next_id());
    if (f.empty())
      continue;
    ++pending_subs_;
    queue_.push_back(std::move(f));
    if (queue_.size() == 1)
      do_write();
  }
  if (pending_subs_ == 0) {
    ready_ = true;
    e_.opened(true);
  }
}

void ws_client::do_read() {
  ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec)
      return self->fail();
    auto data = self->buf_.cdata();
    self->on_frame({static_cast<const char*>(data.data()), data.size()});
    self->buf_.consume(self->buf_.size());
    self->do_read();
  });
}

void ws_client::on_frame(std::string_view f) {
  replies_.clear();
  auto ev = codec_->on_frame(f, replies_);
  for (auto& r : replies_) {
    queue_.push_back(std::move(r));
    if (queue_.size() == 1)
      do_write();
  }
  switch (ev.kind) {
  case event::message: {
    auto s = read_stamp(ev.body);
    if (!s)
      return;
    auto now = now_ns();
    auto& st = w_.stats;
    auto it = std::find_if(seen_.begin(), seen_.end(),
                           [&](const auto& p) { return p.first == s->sender; });
    if (it == seen_.end()) {
      seen_.emplace_back(s->sender, seen_window{});
      it = seen_.end() - 1;
    }
    if (!it->second.first_time(s->seq)) {
      ++st.duplicates;
      return;
    }
    ++st.delivered;
    e_.owner.delivered_.fetch_add(1, std::memory_order_relaxed);
    st.latency.record(now > s->sent_ns ? (now - s->sent_ns) / 1000 : 0);
    return;
  }
  case event::ready:
    if (e_.opts.proto == protocol::wsnode) {
      auto pos = f.find(R"("node":")");
      if (pos != std::string_view::npos) {
        auto rest = f.substr(pos + 8);
        node_ = std::string{rest.substr(0, rest.find('"'))};
      }
    }
    if (!ready_ && pending_subs_ == 0)
      on_ready();
    return;
  case event::ack:
    if (pending_subs_ > 0) {
      if (--pending_subs_ == 0 && !ready_) {
        ready_ = true;
        e_.opened(true);
      }
      return;
    }
    e_.owner.in_flight_.fetch_sub(1);
    return;
  case event::error:
    ++w_.stats.errors;
    if (pending_subs_ == 0)
      e_.owner.in_flight_.fetch_sub(1);
    return;
  case event::none:
    return;
  }
}

void ws_client::do_write() {
  ws_.text(true);
  ws_.async_write(net::buffer(queue_.front()),
                  [self = shared_from_this()](beast::error_code ec, std::size_t) {
                    if (ec)
                      return self->fail();
                    self->queue_.pop_front();
                    if (!self->queue_.empty())
                      self->do_write();
                  });
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
  }
  all.errors += d.http_errors.load();
  d.clients.clear();
  d.https.clear();
  d.workers.clear();
  return all;
}

} // namespace wsnode::bench
