#include "transport/ws_session.hpp"

#include "transport/corked_stream.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>

namespace wsnode::transport {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

enum class phase : std::uint8_t { open, closing, closed };

/// Frames written to the kernel in one call at most (and so iovecs x2).
constexpr std::size_t max_batch = 64;

// The header of an unmasked server text frame (FIN + opcode 1) of `n` bytes.
struct frame_header {
  std::array<unsigned char, 10> bytes{};
  std::uint8_t size = 0;
  explicit frame_header(std::size_t n) {
    bytes[0] = 0x81;
    if (n < 126) {
      bytes[1] = static_cast<unsigned char>(n);
      size = 2;
    } else if (n < 65536) {
      bytes[1] = 126;
      bytes[2] = static_cast<unsigned char>(n >> 8);
      bytes[3] = static_cast<unsigned char>(n);
      size = 4;
    } else {
      bytes[1] = 127;
      for (int i = 0; i < 8; ++i)
        bytes[2 + i] = static_cast<unsigned char>(static_cast<std::uint64_t>(n) >> (56 - 8 * i));
      size = 10;
    }
  }
};

// One queued write: a shared client frame (header built here), or bytes
// framed by Beast (control frames, compressed messages).
struct out_entry {
  frame_ptr frame;
  std::string raw;
  frame_header header{0};
  std::size_t size() const { return frame ? header.size + frame->size() : raw.size(); }
};

} // namespace

class ws_session;

// ---------------------------------------------------------------- delivery_lane

/// Deliveries to the connections of one io_context, batched: any thread
/// appends (session, frame) pairs; one task on the io thread hands them to
/// the sessions and then flushes each touched session once, so a fan-out to
/// N local subscribers costs one wake-up and one write per socket instead of
/// N posts and N writes. A frame delivered to many sessions is held once.
class delivery_lane {
public:
  delivery_lane(net::io_context& ioc, metrics& m, std::chrono::microseconds coalesce)
    : ioc_(ioc), m_(m), coalesce_(coalesce) {}

  /// Any thread. `s` stays valid until the drain (sessions are destroyed on
  /// their io thread, after tasks posted before).
  void push(ws_session* s, frame_ptr f) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> g{mu_};
      if (in_.size() >= max_pending) {
        m_.drop(drop_reason::slow_consumer); // the io thread is far behind
        return;
      }
      wake = in_.empty();
      if (frames_.empty() || frames_.back().get() != f.get())
        frames_.push_back(std::move(f));
      in_.emplace_back(s, static_cast<std::uint32_t>(frames_.size() - 1));
    }
    if (wake)
      net::post(ioc_, [this] { drain(); });
  }

  /// io thread: a session with queued output, to flush at the end of the batch.
  void mark_dirty(ws_session* s) { dirty_.push_back(s); }
  /// io thread: true while a batch is being handed out.
  bool draining() const noexcept { return draining_; }

  net::io_context& context() noexcept { return ioc_; }

private:
  static constexpr std::size_t max_pending = 1 << 22;

  void drain();
  void flush_dirty();

  net::io_context& ioc_;
  metrics& m_;
  std::chrono::microseconds coalesce_;
  std::mutex mu_;
  std::vector<std::pair<ws_session*, std::uint32_t>> in_;
  std::vector<frame_ptr> frames_;
  // io thread only
  std::vector<std::pair<ws_session*, std::uint32_t>> work_;
  std::vector<frame_ptr> work_frames_;
  std::vector<ws_session*> dirty_;
  std::chrono::steady_clock::time_point last_flush_{};
  bool draining_ = false;
  bool timer_armed_ = false;
  net::steady_timer timer_{ioc_};
};

// ---------------------------------------------------------------- ws_session

/// Threading: everything runs on the connection's io_context (one thread),
/// except send/close/input_done, which may be called from any thread.
class ws_session final : public frame_sink,
                         public frame_writer,
                         public std::enable_shared_from_this<ws_session> {
public:
  ws_session(std::shared_ptr<server_context> ctx, tcp::socket&& s, session_identity who,
             delivery_lane& lane)
    : ctx_ptr_(std::move(ctx)), ctx_(*ctx_ptr_), lane_(lane), ws_(std::move(s)),
      who_(std::move(who)) {
    ws_.next_layer().attach(this);
  }

  ~ws_session() override {
    if (queued_bytes_ > 0)
      bump(ctx_.m.queued_bytes, -static_cast<std::int64_t>(queued_bytes_));
    bump(ctx_.m.connections, -1);
  }

  void run(http::request<http::string_body>&& req) {
    const auto& o = ctx_.opts;
    websocket::stream_base::timeout t{};
    t.handshake_timeout = o.close_timeout;
    t.idle_timeout = 2 * o.ping_interval; // a ping after ping_interval of silence
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(o.max_message_bytes);
    ws_.auto_fragment(false);
    ws_.write_buffer_bytes(512); // Beast writes control frames only (or compressed messages)
    if (o.compression) {
      websocket::permessage_deflate pmd;
      pmd.server_enable = true;
      ws_.set_option(pmd);
    }
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "wsnode"); }));
    req_ = std::move(req);
    ws_.async_accept(req_,
                     [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  // ------------------------------------------------------------ frame_sink (any thread)

  send_result send(frame_ptr f) override {
    if (phase_.load(std::memory_order_acquire) != phase::open) {
      ctx_.m.drop(drop_reason::closed);
      return send_result::closed;
    }
    lane_.push(this, std::move(f));
    return send_result::queued;
  }

  void close(std::uint16_t code, std::string reason) override {
    net::post(lane_.context(), [self = shared_from_this(), code, r = std::move(reason)]() mutable {
      self->start_close(code, std::move(r));
    });
  }

  void input_done() override {
    auto left = pending_input_.fetch_sub(1) - 1;
    if (left < ctx_.opts.max_pending_input && read_paused_.load())
      net::post(lane_.context(), [self = shared_from_this()] {
        if (self->phase_ != phase::closed && self->read_paused_.exchange(false))
          self->do_read();
      });
  }

  // ------------------------------------------------------------ io thread: output

  /// One frame from the lane.
  void deliver(frame_ptr f) {
    if (phase_ != phase::open) {
      ctx_.m.drop(drop_reason::closed);
      return;
    }
    auto n = f->size();
    if (queued_bytes_ + n > ctx_.opts.max_queue_bytes && queued_bytes_ > 0) {
      ctx_.m.drop(drop_reason::slow_consumer);
      on_slow();
      return;
    }
    if (ctx_.opts.compression) {
      // Beast compresses (when negotiated); one message at a time through it
      account(n);
      compressed_.push_back(std::move(f));
      if (compressed_.size() == 1)
        write_compressed();
      return;
    }
    out_entry e;
    e.header = frame_header{n};
    e.frame = std::move(f);
    account(e.size());
    push_entry(std::move(e));
  }

  /// Writes what is queued (one kernel call for up to max_batch frames).
  void flush() {
    dirty_ = false;
    if (writing_ || head_ == out_.size() || write_failed_)
      return;
    auto end = std::min(out_.size(), head_ + max_batch);
    // Headers and small raw frames live inside out_'s elements, which move
    // when out_ grows during the write: copy them to scratch_ first.
    std::size_t small = 0;
    for (auto i = head_; i < end; ++i)
      small +=
          out_[i].frame ? out_[i].header.size : (out_[i].raw.size() <= 64 ? out_[i].raw.size() : 0);
    scratch_.resize(small);
    bufs_.clear();
    auto* p = scratch_.data();
    auto copy = [&](const void* src, std::size_t n) {
      std::memcpy(p, src, n);
      bufs_.emplace_back(p, n);
      p += n;
    };
    for (auto i = head_; i < end; ++i) {
      auto& e = out_[i];
      if (e.frame) {
        copy(e.header.bytes.data(), e.header.size);
        bufs_.emplace_back(e.frame->data(), e.frame->size()); // shared, never moves
      } else if (e.raw.size() <= 64) {
        copy(e.raw.data(), e.raw.size());
      } else {
        bufs_.emplace_back(e.raw.data(), e.raw.size()); // heap buffer, stable under moves
      }
    }
    writing_ = true;
    in_flight_ = end - head_;
    net::async_write(ws_.next_layer().next_layer(), bufs_,
                     [self = shared_from_this(), count = end - head_](
                         beast::error_code ec, std::size_t) { self->on_written(ec, count); });
  }

  // frame_writer (io thread): Beast's own frames
  void push_raw(std::string bytes) override {
    out_entry e;
    e.raw = std::move(bytes);
    account(e.raw.size());
    push_entry(std::move(e));
  }

  void when_flushed(std::function<void()> fn) override {
    if ((head_ == out_.size() && !writing_) || write_failed_) {
      net::post(lane_.context(), std::move(fn));
      return;
    }
    flushed_waiters_.push_back(std::move(fn));
  }

private:
  // ------------------------------------------------------------ opening

  void on_accept(beast::error_code ec) {
    req_ = {};
    if (ec) {
      spdlog::debug("upgrade failed from {}: {}", who_.remote, ec.message());
      phase_ = phase::closed;
      return;
    }
    bump(ctx_.m.connections_total, 1);
    handler_ = ctx_.node.open_session(who_, shared_from_this(), sid_);
    spdlog::info("open sid={} user={} remote={}", sid_, who_.user, who_.remote);
    do_read();
  }

  // ------------------------------------------------------------ reading

  void do_read() {
    reading_ = true;
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    if (ec)
      return finish(ec);
    bool binary = !ws_.got_text();
    std::string text = beast::buffers_to_string(buf_.data());
    buf_.consume(buf_.size());
    if (buf_.capacity() > 4096)
      buf_.shrink_to_fit(); // do not keep a big message's buffer on an idle connection
    if (handler_)
      handler_->on_message(std::move(text), binary);
    auto max = ctx_.opts.max_pending_input;
    if (pending_input_.fetch_add(1) + 1 >= max) {
      // Too many messages not yet handled: stop reading (TCP pushes back on
      // the client) until input_done() catches up.
      read_paused_ = true;
      if (pending_input_.load() < max && read_paused_.exchange(false))
        do_read();
      return;
    }
    do_read();
  }

  // ------------------------------------------------------------ writing

  void account(std::size_t n) {
    queued_bytes_ += n;
    bump(ctx_.m.queued_bytes, static_cast<std::int64_t>(n));
  }

  void release(std::size_t n) {
    queued_bytes_ -= n;
    bump(ctx_.m.queued_bytes, -static_cast<std::int64_t>(n));
  }

  // Inside a lane's batch the flush waits for the end of the batch;
  // otherwise (Beast's control frames, replies to a close) it starts now.
  void push_entry(out_entry&& e) {
    out_.push_back(std::move(e));
    if (!lane_.draining()) {
      flush();
    } else if (!dirty_) {
      dirty_ = true;
      lane_.mark_dirty(this);
    }
  }

  void on_written(beast::error_code ec, std::size_t count) {
    writing_ = false;
    in_flight_ = 0;
    std::uint64_t frames = 0;
    for (std::size_t i = 0; i < count; ++i) {
      auto& e = out_[head_ + i];
      release(e.size());
      frames += e.frame ? 1 : 0;
      e = out_entry{};
    }
    head_ += count;
    if (ec) {
      spdlog::debug("write failed sid={}: {}", sid_, ec.message());
      write_failed_ = true;
      discard_unsent(drop_reason::closed);
      beast::error_code ignored;
      ws_.next_layer().next_layer().close(ignored); // ends the read loop too
      run_flushed_waiters();
      return;
    }
    bump(ctx_.m.messages_out, frames);
    if (head_ == out_.size()) {
      out_.clear();
      head_ = 0;
      if (out_.capacity() > 64) {
        out_.shrink_to_fit(); // an idle connection keeps no queue memory
        bufs_.clear();
        bufs_.shrink_to_fit();
        scratch_.clear();
        scratch_.shrink_to_fit();
      }
      run_flushed_waiters();
      return;
    }
    flush();
  }

  void run_flushed_waiters() {
    auto waiters = std::move(flushed_waiters_);
    flushed_waiters_.clear();
    for (auto& fn : waiters)
      net::post(lane_.context(), std::move(fn));
  }

  void write_compressed() {
    ws_.text(true);
    ws_.async_write(net::buffer(*compressed_.front()),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                      auto n = self->compressed_.front()->size();
                      self->compressed_.erase(self->compressed_.begin());
                      self->release(n);
                      if (ec)
                        return;
                      bump(self->ctx_.m.messages_out, 1);
                      if (!self->compressed_.empty())
                        self->write_compressed();
                    });
  }

  // Drops every queued entry that is not being written right now.
  void discard_unsent(drop_reason why) {
    std::size_t keep = head_ + (writing_ ? in_flight_ : 0);
    std::uint64_t dropped = 0;
    while (out_.size() > keep) {
      release(out_.back().size());
      dropped += out_.back().frame ? 1 : 0;
      out_.pop_back();
    }
    // the first compressed message may be inside Beast's write
    while (compressed_.size() > 1) {
      release(compressed_.back()->size());
      compressed_.pop_back();
      ++dropped;
    }
    if (dropped > 0)
      ctx_.m.drop(why, dropped);
  }

  // ------------------------------------------------------------ closing

  void on_slow() {
    if (phase_ != phase::open)
      return;
    spdlog::warn("slow consumer sid={} user={}: write queue over {} bytes, closing with 1013", sid_,
                 who_.user, ctx_.opts.max_queue_bytes);
    discard_unsent(drop_reason::slow_consumer);
    start_close(close_code::try_later, "slow consumer");
  }

  // Frames queued before the close go out first: the close frame is queued
  // behind them in the same writer.
  void start_close(std::uint16_t code, std::string reason) {
    if (phase_ != phase::open)
      return;
    phase_ = phase::closing;
    close_code_ = code;
    close_reason_ = std::move(reason);
    arm_kill_timer(); // a client that never reads must not hold the close forever
    if (finished_ || !ws_.is_open())
      return;
    websocket::close_reason cr;
    cr.code = close_code_;
    cr.reason = close_reason_.substr(0, 120);
    ws_.async_close(cr, [self = shared_from_this()](beast::error_code) {
      // nop: the read loop ends with the closing handshake
    });
  }

  void arm_kill_timer() {
    if (kill_timer_)
      return;
    kill_timer_ = std::make_unique<net::steady_timer>(lane_.context());
    kill_timer_->expires_after(ctx_.opts.close_timeout);
    kill_timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->finished_)
        return;
      spdlog::debug("close timeout sid={}: dropping the TCP connection", self->sid_);
      beast::error_code ignored;
      self->ws_.next_layer().next_layer().close(ignored);
      if (!self->reading_)
        self->finish(net::error::timed_out);
    });
  }

  void finish(beast::error_code ec) {
    if (finished_)
      return;
    finished_ = true;
    phase_ = phase::closed;
    std::uint16_t code = close_code_;
    std::string why = close_reason_;
    if (code == 0) {
      if (ec == websocket::error::closed) {
        code = ws_.reason().code;
        why = std::string{ws_.reason().reason.data(), ws_.reason().reason.size()};
      } else if (ec == websocket::error::message_too_big) {
        code = close_code::too_big;
      } else if (ec == websocket::error::bad_frame_payload) {
        code = 1007;
      } else if (ec.category() == beast::error_code{websocket::error::closed}.category()) {
        code = 1002;
      } else {
        code = 1006;
      }
    }
    ctx_.m.close(code);
    spdlog::info("close sid={} user={} code={} reason=\"{}\" ({})", sid_, who_.user, code, why,
                 ec.message());
    if (handler_) {
      handler_->on_closed();
      handler_.reset();
    }
    if (kill_timer_)
      kill_timer_->cancel();
    discard_unsent(drop_reason::closed);
  }

  friend class delivery_lane;

  std::shared_ptr<server_context> ctx_ptr_; // keeps ctx_ alive as long as this session
  server_context& ctx_;
  delivery_lane& lane_;
  websocket::stream<corked_stream> ws_;
  session_identity who_;
  std::string sid_;
  http::request<http::string_body> req_;
  beast::flat_buffer buf_;
  std::unique_ptr<session_handler> handler_;
  std::vector<out_entry> out_; // [head_, end) not yet written
  std::size_t head_ = 0;
  std::size_t in_flight_ = 0; // entries in the write under way
  std::vector<net::const_buffer> bufs_;
  std::vector<unsigned char> scratch_; // headers and small frames of the write under way
  std::vector<frame_ptr> compressed_;
  std::vector<std::function<void()>> flushed_waiters_;
  std::unique_ptr<net::steady_timer> kill_timer_;
  std::string close_reason_;
  std::size_t queued_bytes_ = 0;
  std::uint16_t close_code_ = 0;
  bool writing_ = false;
  bool write_failed_ = false;
  bool dirty_ = false;
  bool reading_ = false;
  bool finished_ = false;
  std::atomic<phase> phase_{phase::open};
  std::atomic<bool> read_paused_{false};
  std::atomic<std::size_t> pending_input_{0};
};

void delivery_lane::drain() {
  {
    std::lock_guard<std::mutex> g{mu_};
    work_.swap(in_);
    work_frames_.swap(frames_);
  }
  draining_ = true;
  for (auto& [s, f] : work_)
    s->deliver(work_frames_[f]);
  draining_ = false;
  work_.clear();
  work_frames_.clear();
  if (dirty_.empty())
    return;
  auto now = std::chrono::steady_clock::now();
  // Coalescing: under load, frames wait up to [ws] coalesce_us for more
  // frames to the same sockets, so that the kernel gets fewer, fuller writes.
  // A lane that has been quiet (no write for 4 x coalesce_us) writes at
  // once, so light traffic pays no latency for it.
  if (coalesce_.count() == 0 || now - last_flush_ >= 4 * coalesce_)
    return flush_dirty();
  if (!timer_armed_) {
    timer_armed_ = true;
    timer_.expires_after(coalesce_);
    timer_.async_wait([this](boost::system::error_code) {
      timer_armed_ = false;
      flush_dirty();
    });
  }
}

void delivery_lane::flush_dirty() {
  for (auto* s : dirty_)
    s->flush();
  dirty_.clear();
  last_flush_ = std::chrono::steady_clock::now();
}

namespace {

// Sessions are destroyed on their own io thread, after every task posted
// before their last reference went away (lane entries hold raw pointers).
struct deferred_delete {
  net::io_context* ioc;
  void operator()(ws_session* s) const {
    net::post(*ioc, [owned = std::unique_ptr<ws_session>(s)] {});
  }
};

} // namespace

std::shared_ptr<delivery_lane> make_lane(net::io_context& ioc, metrics& m,
                                         std::chrono::microseconds coalesce) {
  return std::make_shared<delivery_lane>(ioc, m, coalesce);
}

void start_ws_session(std::shared_ptr<server_context> ctx, tcp::socket&& socket,
                      http::request<http::string_body>&& req, session_identity who,
                      std::size_t lane) {
  auto& l = *ctx->lanes.at(lane);
  std::shared_ptr<ws_session> s{new ws_session(ctx, std::move(socket), std::move(who), l),
                                deferred_delete{&l.context()}};
  s->run(std::move(req));
}

} // namespace wsnode::transport
