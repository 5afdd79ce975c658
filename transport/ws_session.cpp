#include "transport/ws_session.hpp"

#include "protocol/websocket.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>

namespace wsnode::transport {

namespace {

namespace net = boost::asio;
namespace ws = protocol::ws;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

enum class phase : std::uint8_t { open, closing, closed };

/// Frames written to the kernel in one call at most (and so iovecs x2,
/// far below IOV_MAX).
constexpr std::size_t max_batch = 64;
/// The read buffer every session of an io thread shares.
constexpr std::size_t rx_buffer_bytes = 64 * 1024;
/// Full buffers read from one socket before others get their turn.
constexpr int max_reads_per_wakeup = 4;

// One queued write: a shared client frame (header built here), or whole
// frame bytes (the 101 response, control frames, compressed messages).
struct out_entry {
  frame_ptr frame;
  std::string raw;
  ws::frame_header header;
  std::size_t size() const { return frame ? header.size + frame->size() : raw.size(); }
};

const char* reason_for(std::uint16_t code) {
  switch (code) {
  case close_code::too_big:
    return "message too big";
  case 1007:
    return "invalid UTF-8";
  case 1005:
    return "";
  default:
    return "protocol error";
  }
}

} // namespace

class ws_session;

// ---------------------------------------------------------------- delivery_lane

/// What the sessions of one io_context share.
///
/// Deliveries, batched: any thread appends (session, frame) pairs; one task
/// on the io thread hands them to the sessions and then flushes each touched
/// session once, so a fan-out to N local subscribers costs one wake-up and
/// one write per socket instead of N posts and N writes. A frame delivered
/// to many sessions is held once.
///
/// Also one read buffer, one keep-alive timer for every session (a tick
/// every ping_interval / 4, at most 1 s) and the deflaters of the thread.
class delivery_lane {
public:
  delivery_lane(net::io_context& ioc, metrics& m, std::chrono::microseconds coalesce,
                std::chrono::milliseconds ping_interval)
    : ioc_(ioc), m_(m), coalesce_(coalesce),
      tick_period_(std::clamp<std::chrono::milliseconds>(
          ping_interval / 4, std::chrono::milliseconds(25), std::chrono::milliseconds(1000))),
      ping_ticks_(static_cast<std::uint32_t>(std::max<std::int64_t>(
          1, (ping_interval + tick_period_ - std::chrono::milliseconds(1)) / tick_period_))) {}

  /// Any thread. `s` stays valid until the drain (sessions are destroyed on
  /// their io thread, after tasks posted before). Inside a send_batch the
  /// pair is held by the calling thread and handed over with the batch.
  void push(ws_session* s, frame_ptr f) {
    staged().push_back({this, s, std::move(f)});
    if (!send_batch::active())
      hand_over(); // a single send: its own batch
  }

  /// The end of the calling thread's send_batch: every held pair goes to
  /// its lane, with one lock and at most one wake-up per lane.
  static void hand_over() {
    auto& held = staged();
    for (std::size_t first = 0; first < held.size(); ++first) {
      auto* lane = held[first].lane;
      if (lane == nullptr)
        continue; // handed over with an earlier lane
      bool wake = false;
      {
        std::lock_guard<std::mutex> g{lane->mu_};
        wake = lane->in_.empty();
        for (auto i = first; i < held.size(); ++i)
          if (held[i].lane == lane) {
            lane->append(held[i].s, std::move(held[i].f));
            held[i].lane = nullptr;
          }
      }
      if (wake)
        net::post(lane->ioc_, [lane] { lane->drain(); });
    }
    held.clear();
  }

  /// io thread: a session with queued output, to flush at the end of the batch.
  void mark_dirty(ws_session* s) { dirty_.push_back(s); }
  /// io thread: true while a batch is being handed out.
  bool draining() const noexcept { return draining_; }

  net::io_context& context() noexcept { return ioc_; }
  /// io thread: the gather list of the write under way (writes are synchronous).
  std::vector<net::const_buffer>& iov_scratch() noexcept { return iov_; }
  /// io thread: the read buffer of this thread (rx_buffer_bytes).
  char* rx_buffer() noexcept { return rx_.get(); }
  /// io thread: the deflater for `window_bits`, made on first use.
  ws::deflater& deflater(int window_bits) {
    auto& d = deflaters_.at(static_cast<std::size_t>(window_bits));
    if (!d)
      d = std::make_unique<ws::deflater>(window_bits);
    return *d;
  }

  // keep-alive (io thread)
  void add(ws_session* s);
  void remove(ws_session* s) noexcept;
  std::uint32_t tick() const noexcept { return tick_; }
  std::uint32_t ping_ticks() const noexcept { return ping_ticks_; }

private:
  static constexpr std::size_t max_pending = 1 << 22;

  struct held_send {
    delivery_lane* lane;
    ws_session* s;
    frame_ptr f;
  };
  static std::vector<held_send>& staged() {
    thread_local std::vector<held_send> v;
    return v;
  }

  // With mu_ held.
  void append(ws_session* s, frame_ptr&& f) {
    if (in_.size() >= max_pending) {
      m_.drop(drop_reason::slow_consumer); // the io thread is far behind
      return;
    }
    if (frames_.empty() || frames_.back().get() != f.get())
      frames_.push_back(std::move(f));
    in_.emplace_back(s, static_cast<std::uint32_t>(frames_.size() - 1));
  }

  void drain();
  void flush_dirty();
  void on_tick();

  net::io_context& ioc_;
  metrics& m_;
  std::chrono::microseconds coalesce_;
  std::chrono::milliseconds tick_period_;
  std::uint32_t ping_ticks_;
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
  std::unique_ptr<char[]> rx_{new char[rx_buffer_bytes]};
  std::vector<net::const_buffer> iov_;
  std::array<std::unique_ptr<ws::deflater>, 16> deflaters_;
  ws_session* sessions_ = nullptr; // intrusive list of open sessions
  std::uint32_t tick_ = 0;
  bool ticking_ = false;
  net::steady_timer tick_timer_{ioc_};
};

// ---------------------------------------------------------------- ws_session

/// Threading: everything runs on the connection's io_context (one thread),
/// except send/close/input_done, which may be called from any thread.
class ws_session final : public frame_sink, public std::enable_shared_from_this<ws_session> {
public:
  ws_session(std::shared_ptr<server_context> ctx, stream_socket&& s, session_identity who,
             delivery_lane& lane)
    : ctx_ptr_(std::move(ctx)), ctx_(*ctx_ptr_), lane_(lane), socket_(std::move(s)),
      who_(std::move(who)), reader_(ctx_.opts.max_message_bytes, false) {}

  ~ws_session() override {
    lane_.remove(this);
    if (queued_bytes_ > 0)
      bump(ctx_.m.queued_bytes, -static_cast<std::int64_t>(queued_bytes_));
    bump(ctx_.m.connections, -1);
  }

  /// Answers the upgrade and starts the session.
  void run(const ws_handshake& hs) {
    std::string res = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nServer: wsnode\r\nSec-WebSocket-Accept: ";
    res += ws::accept_key(hs.key);
    res += "\r\n";
    if (ctx_.opts.compression && !hs.extensions.empty()) {
      deflate_ = ws::negotiate_deflate(hs.extensions);
      if (deflate_)
        res += "Sec-WebSocket-Extensions: " + ws::deflate_response(*deflate_) + "\r\n";
    }
    res += "\r\n";
    reader_ = ws::frame_reader{ctx_.opts.max_message_bytes, deflate_.has_value()};
    error_code ec;
    socket_.non_blocking(true, ec); // reads drain the socket until EAGAIN
    push_raw(std::move(res));       // written at once: the queue is empty
    if (phase_ == phase::closed) {
      spdlog::debug("upgrade failed from {}: the client left", who_.remote);
      return; // no session was opened, none to close
    }
    bump(ctx_.m.connections_total, 1);
    handler_ = ctx_.node.open_session(who_, shared_from_this(), sid_);
    spdlog::info("open sid={} user={} remote={}", sid_, who_.user, who_.remote);
    lane_.add(this);
    last_rx_tick_ = lane_.tick();
    do_read();
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

  void notify(session_event e, std::uint64_t arg) override {
    // behind the frames sent before it: the lane posts its batch earlier
    net::post(lane_.context(), [self = shared_from_this(), e, arg] {
      if (self->handler_)
        self->handler_->on_event(e, arg);
    });
  }

  void input_done() override {
    auto left = pending_input_.fetch_sub(1) - 1;
    if (left < ctx_.opts.max_pending_input && read_paused_.load())
      net::post(lane_.context(), [self = shared_from_this()] {
        if (self->phase_ == phase::open && self->read_paused_.exchange(false)) {
          self->last_rx_tick_ = self->lane_.tick();
          self->do_read();
        }
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
    out_entry e;
    if (deflate_) {
      // no context between messages: the thread's deflater serves everyone
      e.raw = ws::make_frame(ws::opcode::text,
                             lane_.deflater(deflate_->server_window_bits).compress(*f), true);
    } else {
      e.header = ws::frame_header{ws::opcode::text, n};
      e.frame = std::move(f);
    }
    account(e.size());
    push_entry(std::move(e));
  }

  /// Writes what is queued: up to max_batch frames per kernel call, straight
  /// from the non-blocking socket; only when the kernel's buffer is full does
  /// the session wait for the socket to become writable.
  void flush() {
    dirty_ = false;
    while (!writing_ && !write_failed_ && head_ < out_.size()) {
      auto end = std::min(out_.size(), head_ + max_batch);
      auto& iov = lane_.iov_scratch();
      iov.clear();
      std::size_t skip = partial_; // bytes of out_[head_] sent before
      auto add = [&](const void* p, std::size_t n) {
        if (skip >= n) {
          skip -= n;
          return;
        }
        iov.emplace_back(static_cast<const char*>(p) + skip, n - skip);
        skip = 0;
      };
      for (auto i = head_; i < end; ++i) {
        auto& e = out_[i];
        if (e.frame) {
          add(e.header.bytes.data(), e.header.size);
          add(e.frame->data(), e.frame->size());
        } else {
          add(e.raw.data(), e.raw.size());
        }
      }
      error_code ec;
      auto n = socket_.write_some(iov, ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        ec = {};
        n = 0;
      }
      if (ec)
        return fail_write(ec);
      retire(n, end);
      if (head_ < end)
        return wait_writable(); // the kernel took only part of it
    }
    if (head_ == out_.size() && head_ > 0) {
      out_.clear(); // the capacity stays for the next burst (see check_alive)
      head_ = 0;
      maybe_shutdown_send();
    }
  }

  /// Once per lane tick: frees an empty queue's memory; keep-alive: a ping
  /// after ping_interval of silence, the connection dropped after twice that.
  void check_alive(std::uint32_t tick) {
    if (out_.empty() && out_.capacity() > 0)
      out_ = {}; // an idle connection keeps no queue memory
    if (phase_ != phase::open || read_paused_.load())
      return;
    auto idle = tick - last_rx_tick_;
    if (idle >= 2 * lane_.ping_ticks()) {
      spdlog::debug("idle timeout sid={}: dropping the connection", sid_);
      return teardown();
    }
    if (idle >= lane_.ping_ticks() && !pinged_) {
      pinged_ = true;
      push_raw(ws::make_frame(ws::opcode::ping, {}));
    }
  }

private:
  friend class delivery_lane;

  // ------------------------------------------------------------ reading

  // Waits for the socket to become readable: no buffer is held meanwhile.
  void do_read() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
  }

  void on_readable(error_code ec) {
    if (phase_ == phase::closed)
      return;
    if (ec)
      return lost(ec);
    for (int i = 0; i < max_reads_per_wakeup; ++i) {
      error_code rec;
      auto* buf = lane_.rx_buffer();
      auto n = socket_.read_some(net::buffer(buf, rx_buffer_bytes), rec);
      if (rec == net::error::would_block || rec == net::error::try_again)
        break;
      if (rec)
        return lost(rec);
      last_rx_tick_ = lane_.tick();
      pinged_ = false;
      if (!consume(buf, n))
        return; // the connection is ending: read no more
      if (n < rx_buffer_bytes)
        break;
    }
    auto max = ctx_.opts.max_pending_input;
    if (pending_input_.load() >= max) {
      // Too many messages not yet handled: stop reading (TCP pushes back on
      // the client) until input_done() catches up.
      read_paused_ = true;
      if (pending_input_.load() < max && read_paused_.exchange(false))
        do_read();
      return;
    }
    do_read();
  }

  // Parses `n` bytes; returns false when nothing more should be read.
  bool consume(const char* p, std::size_t n) {
    if (discard_input_)
      return true; // lingering after a protocol error: read and drop until EOF
    const char* end = p + n;
    while (true) {
      switch (reader_.next(p, end)) {
      case ws::frame_reader::event::need_more:
        return true;
      case ws::frame_reader::event::message:
        on_message();
        break;
      case ws::frame_reader::event::ping:
        if (phase_ == phase::open)
          push_raw(ws::make_frame(ws::opcode::pong, reader_.control_payload()));
        break;
      case ws::frame_reader::event::pong:
        break;
      case ws::frame_reader::event::close:
        on_close_frame();
        return phase_ != phase::closed;
      case ws::frame_reader::event::error:
        on_violation(reader_.error_code());
        return phase_ != phase::closed;
      }
      if (phase_ == phase::closed)
        return false;
    }
  }

  void on_message() {
    auto text = reader_.take_message();
    bool binary = reader_.binary();
    if (reader_.compressed()) {
      if (!inflater_)
        inflater_ = std::make_unique<ws::inflater>();
      std::string plain;
      auto r = inflater_->decompress(text, plain, ctx_.opts.max_message_bytes);
      if (deflate_->client_no_context)
        inflater_.reset(); // nothing to keep between messages
      if (r == ws::inflater::result::too_big)
        return start_close(close_code::too_big, "message too big");
      if (r == ws::inflater::result::bad_data)
        return start_close(1002, "bad compressed data");
      if (!binary && !ws::valid_utf8(plain))
        return start_close(1007, "invalid UTF-8");
      text = std::move(plain);
    }
    if (phase_ != phase::open || !handler_)
      return;
    pending_input_.fetch_add(1);
    handler_->on_message(std::move(text), binary);
  }

  // The client's close frame: the answer to ours, or its own close. Its own
  // is echoed once the session has answered the messages before it.
  void on_close_frame() {
    if (phase_ == phase::open && !input_ended_) {
      peer_code_ = reader_.close_code();
      peer_reason_ = std::string{reader_.close_reason()};
      end_input(peer_code_, {});
    }
    linger();
  }

  // A protocol violation (1002 framing, 1007 UTF-8, 1009 size): every
  // complete message before it is handled and answered, then the
  // connection fails with `code`. Nothing after it is read.
  void on_violation(std::uint16_t code) {
    spdlog::debug("protocol error sid={}: {} ({})", sid_, code, reason_for(code));
    if (phase_ == phase::open && !input_ended_)
      end_input(code, reason_for(code));
    linger();
  }

  // The client's input ends: the session answers what came before, then
  // closes (sink close -> start_close). If it does not within
  // close_timeout, the close goes out anyway (see arm_kill_timer).
  void end_input(std::uint16_t code, std::string reason) {
    input_ended_ = true;
    end_code_ = code;
    arm_kill_timer();
    if (handler_)
      handler_->on_input_end(code, std::move(reason));
    else
      start_close(code, std::move(reason));
  }

  // A lingering close: input is dropped from now on; once our close frame
  // (and everything before it) is out, the sending side shuts down, and the
  // connection ends at the client's EOF or close_timeout. Closing a socket
  // with unread input would reset the connection, and the client could
  // lose our close frame with it.
  void linger() {
    discard_input_ = true;
    if (phase_ == phase::closing) {
      shutdown_after_flush_ = true;
      maybe_shutdown_send();
    }
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

  // Our own frames (101, control frames).
  void push_raw(std::string bytes) {
    if (write_failed_ || phase_ == phase::closed)
      return;
    out_entry e;
    e.raw = std::move(bytes);
    account(e.raw.size());
    push_entry(std::move(e));
  }

  // Inside a lane's batch the flush waits for the end of the batch;
  // otherwise (control frames, replies to a close) it starts now.
  void push_entry(out_entry&& e) {
    out_.push_back(std::move(e));
    if (!lane_.draining()) {
      flush();
    } else if (!dirty_) {
      dirty_ = true;
      lane_.mark_dirty(this);
    }
  }

  // `n` more bytes of out_[head_, end) reached the kernel.
  void retire(std::size_t n, std::size_t end) {
    std::size_t left = n + partial_;
    std::uint64_t frames = 0;
    while (head_ < end && left >= out_[head_].size()) {
      auto& e = out_[head_];
      left -= e.size();
      release(e.size());
      frames += e.frame ? 1 : 0;
      e = out_entry{};
      ++head_;
    }
    partial_ = left;
    bump(ctx_.m.messages_out, frames);
  }

  void wait_writable() {
    writing_ = true;
    socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](error_code ec) {
      self->writing_ = false;
      if (ec)
        return self->fail_write(ec);
      self->flush();
    });
  }

  // The peer is gone (or the socket closed under a wait): nothing more can
  // be written, so what is queued is dropped and the connection ends.
  void fail_write(error_code ec) {
    spdlog::debug("write failed sid={}: {}", sid_, ec.message());
    write_failed_ = true;
    discard_unsent(drop_reason::closed);
    teardown();
  }

  // Drops every queued entry but a partly written one (its rest must follow
  // or the client's framing breaks).
  void discard_unsent(drop_reason why) {
    std::size_t keep = std::min(out_.size(), head_ + (partial_ > 0 ? 1 : 0));
    std::uint64_t dropped = 0;
    while (out_.size() > keep) {
      release(out_.back().size());
      dropped += out_.back().frame ? 1 : 0;
      out_.pop_back();
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
  // behind them. Then the client's close frame is awaited (data frames are
  // dropped meanwhile), for at most close_timeout.
  // After the client's input ended (its close, a violation), the close is
  // followed by a lingering close (see linger()).
  void start_close(std::uint16_t code, std::string reason) {
    if (phase_ != phase::open)
      return;
    phase_ = phase::closing;
    close_code_ = code;
    close_reason_ = std::move(reason);
    arm_kill_timer(); // a client that never answers must not hold the close forever
    // 1005 (the client's close had no code) is never sent: an empty close
    push_raw(code == 1005 ? ws::make_frame(ws::opcode::close, {})
                          : ws::make_close(code, close_reason_));
    if (discard_input_)
      return linger();
    reader_.skip_data(); // data frames are dropped while the client's close is awaited
  }

  // Everything queued has reached the kernel.
  bool drained() const noexcept { return !writing_ && head_ == out_.size(); }

  void maybe_shutdown_send() {
    if (shutdown_after_flush_ && drained()) {
      shutdown_after_flush_ = false;
      error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  // Bounds a close: a session that does not answer the end of input within
  // close_timeout gets its close frame sent anyway (and another
  // close_timeout); a client that never completes the close is dropped.
  void arm_kill_timer() {
    if (kill_timer_)
      return;
    kill_timer_ = std::make_unique<net::steady_timer>(lane_.context());
    kill_timer_->expires_after(ctx_.opts.close_timeout);
    kill_timer_->async_wait([self = shared_from_this()](error_code ec) { self->on_kill_timer(ec); });
  }

  void on_kill_timer(error_code ec) {
    if (ec || phase_ == phase::closed)
      return;
    if (phase_ == phase::open) {
      spdlog::warn("close timeout sid={}: the session did not close; closing", sid_);
      start_close(end_code_, reason_for(end_code_));
      kill_timer_->expires_after(ctx_.opts.close_timeout);
      kill_timer_->async_wait([self = shared_from_this()](error_code e) { self->on_kill_timer(e); });
      return;
    }
    spdlog::debug("close timeout sid={}: dropping the TCP connection", sid_);
    teardown();
  }

  // Ends the TCP connection and the session.
  void teardown() {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored); // a pending wait or write completes with an error
    finish();
  }

  // A read failed: the peer is gone (or reset) without a closing handshake.
  void lost(error_code ec) {
    spdlog::debug("read ended sid={}: {}", sid_, ec.message());
    teardown();
  }

  void finish() {
    if (phase_ == phase::closed)
      return;
    phase_ = phase::closed;
    if (handler_) { // a session was opened (not when the 101 could not be written)
      std::uint16_t code = close_code_ ? close_code_ : peer_code_ ? peer_code_ : 1006;
      const std::string& why = close_code_ ? close_reason_ : peer_reason_;
      ctx_.m.close(code);
      spdlog::info("close sid={} user={} code={} reason=\"{}\"", sid_, who_.user, code, why);
      handler_->on_closed();
      handler_.reset();
    }
    if (kill_timer_)
      kill_timer_->cancel();
    discard_unsent(drop_reason::closed);
    lane_.remove(this);
    inflater_.reset();
  }

  std::shared_ptr<server_context> ctx_ptr_; // keeps ctx_ alive as long as this session
  server_context& ctx_;
  delivery_lane& lane_;
  stream_socket socket_;
  session_identity who_;
  std::string sid_;
  std::unique_ptr<session_handler> handler_;
  ws::frame_reader reader_;
  std::optional<ws::deflate_params> deflate_;
  std::unique_ptr<ws::inflater> inflater_;
  std::vector<out_entry> out_; // [head_, end) not yet written
  std::size_t head_ = 0;
  std::size_t partial_ = 0; // bytes of out_[head_] already written
  std::unique_ptr<net::steady_timer> kill_timer_;
  std::string close_reason_;
  std::string peer_reason_;
  std::size_t queued_bytes_ = 0;
  ws_session* prev_ = nullptr; // the lane's list of open sessions
  ws_session* next_ = nullptr;
  std::uint32_t last_rx_tick_ = 0;
  std::uint16_t close_code_ = 0; // ours, once we started closing
  std::uint16_t peer_code_ = 0;  // the client's, from its close frame
  std::uint16_t end_code_ = 0;   // the close due when the input ended
  bool linked_ = false;
  bool pinged_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  bool dirty_ = false;
  bool input_ended_ = false; // the client's close or a violation was read
  bool shutdown_after_flush_ = false;
  bool discard_input_ = false;
  std::atomic<phase> phase_{phase::open};
  std::atomic<bool> read_paused_{false};
  std::atomic<std::size_t> pending_input_{0};
};

// ---------------------------------------------------------------- delivery_lane (io thread)

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

void delivery_lane::add(ws_session* s) {
  s->linked_ = true;
  s->prev_ = nullptr;
  s->next_ = sessions_;
  if (sessions_)
    sessions_->prev_ = s;
  sessions_ = s;
  if (!ticking_) {
    ticking_ = true;
    tick_timer_.expires_after(tick_period_);
    tick_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec)
        on_tick();
    });
  }
}

void delivery_lane::remove(ws_session* s) noexcept {
  if (!s->linked_)
    return;
  s->linked_ = false;
  if (s->prev_)
    s->prev_->next_ = s->next_;
  else
    sessions_ = s->next_;
  if (s->next_)
    s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
}

// One pass over the open sessions; O(sessions) per tick, a few
// nanoseconds each, instead of a timer per connection.
void delivery_lane::on_tick() {
  ++tick_;
  for (auto* s = sessions_; s != nullptr;) {
    auto* next = s->next_; // check_alive may unlink s
    s->check_alive(tick_);
    s = next;
  }
  if (!sessions_) {
    ticking_ = false;
    return;
  }
  tick_timer_.expires_after(tick_period_);
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec)
      on_tick();
  });
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
                                         std::chrono::microseconds coalesce,
                                         std::chrono::milliseconds ping_interval) {
  send_batch::set_end_hook(&delivery_lane::hand_over);
  return std::make_shared<delivery_lane>(ioc, m, coalesce, ping_interval);
}

void start_ws_session(std::shared_ptr<server_context> ctx, stream_socket&& socket, ws_handshake hs,
                      session_identity who, std::size_t lane) {
  auto& l = *ctx->lanes.at(lane);
  std::shared_ptr<ws_session> s{new ws_session(ctx, std::move(socket), std::move(who), l),
                                deferred_delete{&l.context()}};
  s->run(hs);
}

} // namespace wsnode::transport
