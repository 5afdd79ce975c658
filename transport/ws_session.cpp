#include "transport/ws_session.hpp"

#include "protocol/websocket.hpp"
#include "protocol/ws_deflate.hpp"
#include "transport/close_handshake.hpp"
#include "transport/delivery_lane.hpp"
#include "transport/write_queue.hpp"

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

using phase = close_handshake::phase;
using step = close_handshake::step;

/// Full buffers read from one socket before others get their turn.
constexpr int max_reads_per_wakeup = 4;

} // namespace

/// Threading: everything runs on the connection's io_context (one thread),
/// except send/close/input_done, which may be called from any thread.
class ws_session final : public frame_sink,
                         public lane_session,
                         public std::enable_shared_from_this<ws_session> {
public:
  ws_session(std::shared_ptr<server_context> ctx, stream_socket&& s, delivery_lane& lane,
             bool batch)
    : ctx_(std::move(ctx)), lane_(lane), socket_(std::move(s)),
      reader_(ctx_->opts.max_message_bytes, false), out_(ctx_->m), batch_(batch) {}

  ~ws_session() override {
    lane_.remove(this);
    bump(ctx_->m.connections, -1);
  }

  /// Answers the upgrade and starts the session.
  void run(const ws_handshake& hs, const session_identity& who) {
    std::string res = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nServer: wsnode\r\nSec-WebSocket-Accept: ";
    res += ws::accept_key(hs.key);
    res += "\r\n";
    if (ctx_->opts.compression && !hs.extensions.empty()) {
      if (auto params = ws::negotiate_deflate(hs.extensions)) {
        deflate_ = std::make_unique<compression>(compression{*params, nullptr});
        res += "Sec-WebSocket-Extensions: " + ws::deflate_response(*params) + "\r\n";
      }
    }
    res += "\r\n";
    reader_ = ws::frame_reader{ctx_->opts.max_message_bytes, deflate_ != nullptr};
    error_code ec;
    socket_.non_blocking(true, ec); // reads drain the socket until EAGAIN
    push_raw(std::move(res));       // written at once: the queue is empty
    if (hs_.current() == phase::closed) {
      spdlog::debug("upgrade failed from {}: the client left", who.remote);
      return; // no session was opened, none to close
    }
    bump(ctx_->m.connections_total, 1);
    handler_ = ctx_->node.open_session(who, shared_from_this(), sid_);
    spdlog::info("open sid={}-{} user={} remote={}", ctx_->opts.node_id, sid_, who.user,
                 who.remote);
    lane_.add(this);
    last_rx_tick_ = lane_.tick();
    do_read();
  }

  // ------------------------------------------------------------ frame_sink (any thread)

  send_result send(frame_ptr f) override {
    if (hs_.current() != phase::open) {
      ctx_->m.drop(drop_reason::closed);
      return send_result::closed;
    }
    lane_.push(this, std::move(f));
    return send_result::queued;
  }

  send_result send_lossy(frame_ptr f) override {
    if (hs_.current() != phase::open) {
      ctx_->m.drop(drop_reason::closed);
      return send_result::closed;
    }
    lane_.push(this, std::move(f), true);
    return send_result::queued;
  }

  send_result send_replay(frame_ptr f) override {
    replay_allowance_.fetch_add(f->size(), std::memory_order_relaxed);
    return send(std::move(f));
  }

  void close(std::uint16_t code, std::string reason) override {
    // frames the caller sent before, still held by its send_batch, go first
    if (send_batch::active())
      delivery_lane::hand_over();
    net::post(lane_.context(), [self = shared_from_this(), code, r = std::move(reason)]() mutable {
      self->start_close(code, std::move(r));
    });
  }

  bool batched() const noexcept override { return batch_; }

  void input_done() override {
    auto left = pending_input_.fetch_sub(1) - 1;
    if (left < ctx_->opts.max_pending_input && read_paused_.load())
      net::post(lane_.context(), [self = shared_from_this()] {
        if (self->hs_.current() == phase::open && self->read_paused_.exchange(false)) {
          self->last_rx_tick_ = self->lane_.tick();
          self->do_read();
        }
      });
  }

  // ------------------------------------------------------------ io thread: output

  /// One frame from the lane.
  void deliver(frame_ptr f, bool lossy) override {
    if (hs_.current() != phase::open) {
      ctx_->m.drop(drop_reason::closed);
      return;
    }
    auto n = f->size();
    auto bound = ctx_->opts.max_queue_bytes + replay_allowance_.load(std::memory_order_relaxed);
    if (out_.bytes() + n > bound && out_.bytes() > 0) {
      if (lossy) { // a comment this viewer cannot take now: skip it, keep the viewer
        ctx_->m.drop(drop_reason::lossy);
        return;
      }
      ctx_->m.drop(drop_reason::slow_consumer);
      on_slow();
      return;
    }
    out_entry e;
    if (deflate_) { // compressed once per frame and window size, shared like the frame
      e.frame = lane_.compressed(f, deflate_->params.server_window_bits);
      e.header = ws::frame_header{ws::opcode::text, e.frame->size(), true};
    } else {
      e.header = ws::frame_header{ws::opcode::text, n};
      e.frame = std::move(f);
    }
    push_entry(std::move(e));
  }

  /// Writes what is queued (see write_queue); only when the kernel's buffer
  /// is full does the session wait for the socket to become writable.
  void flush() override {
    if (nothing_to_write())
      return;
    error_code ec;
    switch (out_.write(socket_, lane_.iov_scratch(), ec)) {
    case write_queue::outcome::failed:
      return fail_write(ec);
    case write_queue::outcome::blocked:
      return wait_writable();
    case write_queue::outcome::drained:
      replay_allowance_.store(0, std::memory_order_relaxed); // a replay is out
      return after_flush();
    }
  }

  /// flush()'s write alone, on the lane's helper thread (the lane thread
  /// waits): a drained queue is done; all else goes back to flush() on the
  /// io thread, which finds what is left still queued.
  bool write_only(std::vector<net::const_buffer>& iov) override {
    if (nothing_to_write())
      return true; // flush() would do nothing either
    if (hs_.waits_for_drain())
      return false; // a close waits for the drain: flush() does both
    error_code ec;
    if (out_.write(socket_, iov, ec) != write_queue::outcome::drained)
      return false; // a full kernel buffer or an error: flush() writes again
    replay_allowance_.store(0, std::memory_order_relaxed); // a replay is out
    return true;
  }

  // A write waits for the socket, one failed, or nothing is queued.
  bool nothing_to_write() const noexcept { return writing_ || write_failed_ || out_.empty(); }

  /// Once per lane tick: frees an empty queue's memory; keep-alive: a ping
  /// after ping_interval of silence, the connection dropped after twice that.
  void check_alive(std::uint32_t tick) override {
    out_.free_memory(); // an idle connection keeps no queue memory
    if (hs_.current() != phase::open || read_paused_.load())
      return;
    auto idle = tick - last_rx_tick_;
    if (idle >= 2 * lane_.ping_ticks()) {
      spdlog::debug("idle timeout sid={}-{}: dropping the connection", ctx_->opts.node_id, sid_);
      return teardown();
    }
    if (idle >= lane_.ping_ticks() && !pinged_) {
      pinged_ = true;
      push_raw(ws::make_frame(ws::opcode::ping, {}));
    }
  }

private:
  // ------------------------------------------------------------ reading

  // Waits for the socket to become readable: no buffer is held meanwhile.
  void do_read() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
  }

  void on_readable(error_code ec) {
    if (hs_.current() == phase::closed)
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
      bool more = consume(buf, n);
      if (handler_)
        handler_->on_read_end(); // the read's messages go to the actor together
      if (!more)
        return; // the connection is ending: read no more
      if (n < rx_buffer_bytes)
        break;
    }
    auto max = ctx_->opts.max_pending_input;
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
    if (hs_.discarding_input())
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
        if (hs_.current() == phase::open)
          push_raw(ws::make_frame(ws::opcode::pong, reader_.control_payload()));
        break;
      case ws::frame_reader::event::pong:
        break;
      case ws::frame_reader::event::close:
        on_close_frame();
        return hs_.current() != phase::closed;
      case ws::frame_reader::event::error:
        on_violation(reader_.error_code());
        return hs_.current() != phase::closed;
      }
      if (hs_.current() == phase::closed)
        return false;
      if (hs_.discarding_input())
        return true; // a violation inside a message (compressed data): read no further
    }
  }

  void on_message() {
    auto text = reader_.take_message();
    bool binary = reader_.binary();
    if (reader_.compressed()) {
      auto& inflater = deflate_->inflater;
      if (!inflater)
        inflater = std::make_unique<ws::inflater>();
      std::string plain;
      auto r = inflater->decompress(text, plain, ctx_->opts.max_message_bytes);
      if (deflate_->params.client_no_context)
        inflater.reset(); // nothing to keep between messages
      // violations found after the frame layer: as any other (on_violation)
      if (r == ws::inflater::result::too_big)
        return on_violation(close_code::too_big);
      if (r == ws::inflater::result::bad_data)
        return on_violation(1002);
      if (!binary && !ws::valid_utf8(plain))
        return on_violation(1007);
      text = std::move(plain);
    }
    if (hs_.current() != phase::open || !handler_)
      return;
    pending_input_.fetch_add(1);
    handler_->on_message(std::move(text), binary);
  }

  // The client's close frame: the answer to ours, or its own close. Its own
  // is echoed once the session has answered the messages before it.
  void on_close_frame() {
    if (hs_.peer_code() == 0) // the first one's reason is the one logged
      closing().peer_reason = std::string{reader_.close_reason()};
    perform(hs_.on_peer_close(reader_.close_code()));
  }

  // A protocol violation (1002 framing, 1007 UTF-8, 1009 size): every
  // complete message before it is handled and answered, then the
  // connection fails with `code`. Nothing after it is read.
  void on_violation(std::uint16_t code) {
    spdlog::debug("protocol error sid={}-{}: {}", ctx_->opts.node_id, sid_, code);
    perform(hs_.on_violation(code));
  }

  // Does what the close handshake asks for, in order (close_handshake.hpp).
  void perform(const close_handshake::steps& steps) {
    for (const auto& st : steps) {
      switch (st.what) {
      case step::kind::tell_input_end:
        // the session answers what came before, then closes (sink close ->
        // start_close); without one, the close goes out now
        if (handler_)
          handler_->on_input_end(st.code);
        else
          start_close(st.code, {});
        break;
      case step::kind::send_close:
        closing().reason = st.reason;
        // 1005 (the client's close had no code) is never sent: an empty close
        push_raw(st.code == 1005 ? ws::make_frame(ws::opcode::close, {})
                                 : ws::make_close(st.code, st.reason));
        break;
      case step::kind::skip_data:
        reader_.skip_data();
        break;
      case step::kind::arm_timer:
        wait_close_timer();
        break;
      case step::kind::check_drain:
        after_flush();
        break;
      case step::kind::shutdown_send: {
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
        break;
      }
      case step::kind::teardown:
        return teardown();
      }
    }
  }

  // ------------------------------------------------------------ writing

  // Our own frames (101, control frames).
  void push_raw(std::string bytes) {
    if (write_failed_ || hs_.current() == phase::closed)
      return;
    out_entry e;
    e.raw = std::move(bytes);
    push_entry(std::move(e));
  }

  // Inside a lane's batch the flush waits for the end of the batch;
  // otherwise (control frames, replies to a close) it starts now.
  void push_entry(out_entry&& e) {
    out_.push(std::move(e));
    if (!lane_.draining()) {
      flush();
    } else {
      lane_.mark_dirty(this);
    }
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
    spdlog::debug("write failed sid={}-{}: {}", ctx_->opts.node_id, sid_, ec.message());
    write_failed_ = true;
    discard_unsent(drop_reason::closed);
    teardown();
  }

  // Drops what is queued but not begun (see write_queue::discard_unsent).
  void discard_unsent(drop_reason why) {
    if (auto dropped = out_.discard_unsent(); dropped > 0)
      ctx_->m.drop(why, dropped);
  }

  // ------------------------------------------------------------ closing

  void on_slow() {
    if (hs_.current() != phase::open)
      return;
    spdlog::warn("slow consumer sid={}-{}: write queue over {} bytes, closing with 1013",
                 ctx_->opts.node_id, sid_, ctx_->opts.max_queue_bytes);
    discard_unsent(drop_reason::slow_consumer);
    start_close(close_code::try_later, "slow consumer");
  }

  // Frames queued before the close go out first: the close frame is queued
  // behind them (see close_handshake.hpp for what follows).
  void start_close(std::uint16_t code, std::string reason) {
    perform(hs_.on_close(code, std::move(reason)));
  }

  // Everything queued has reached the kernel.
  bool drained() const noexcept { return !writing_ && out_.empty(); }

  // What a close waits for once everything queued reached the kernel.
  void after_flush() {
    if (drained())
      perform(hs_.on_drained());
  }

  // The close timer bounds a close (close_handshake::on_timer).
  void wait_close_timer() {
    auto& timer = closing().timer;
    timer.expires_after(ctx_->opts.close_timeout);
    timer.async_wait([self = shared_from_this()](error_code ec) {
      if (ec)
        return;
      const auto& node = self->ctx_->opts.node_id;
      if (self->hs_.current() == phase::open)
        spdlog::warn("close timeout sid={}-{}: the session did not close; closing", node,
                     self->sid_);
      else if (self->hs_.current() == phase::closing)
        spdlog::debug("close timeout sid={}-{}: dropping the TCP connection", node, self->sid_);
      self->perform(self->hs_.on_timer());
    });
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
    spdlog::debug("read ended sid={}-{}: {}", ctx_->opts.node_id, sid_, ec.message());
    teardown();
  }

  void finish() {
    if (!hs_.on_finished())
      return;
    if (handler_) { // a session was opened (not when the 101 could not be written)
      auto code = hs_.final_code();
      std::string_view why;
      if (closing_) // ours, or (the client closed first and we echoed) the client's
        why =
            hs_.our_code() && !closing_->reason.empty() ? closing_->reason : closing_->peer_reason;
      ctx_->m.close(code);
      spdlog::info("close sid={}-{} code={} reason=\"{}\"", ctx_->opts.node_id, sid_, code, why);
      handler_->on_closed(code, why);
      handler_.reset();
    }
    if (closing_)
      closing_->timer.cancel();
    discard_unsent(drop_reason::closed);
    lane_.remove(this);
    if (deflate_)
      deflate_->inflater.reset();
  }

  std::shared_ptr<server_context> ctx_; // alive as long as this session
  delivery_lane& lane_;
  stream_socket socket_;
  std::uint64_t sid_ = 0;
  std::unique_ptr<session_handler> handler_;
  ws::frame_reader reader_;
  // permessage-deflate, when negotiated (most connections: not)
  struct compression {
    ws::deflate_params params;
    std::unique_ptr<ws::inflater> inflater; // kept between messages unless no_context
  };
  std::unique_ptr<compression> deflate_;
  write_queue out_;
  // What only an ending connection needs, kept out of every open one.
  struct closing_state {
    explicit closing_state(net::io_context& ioc) : timer(ioc) {}
    net::steady_timer timer; // bounds the close (close_handshake::on_timer)
    std::string reason;      // of our close frame
    std::string peer_reason; // of the client's
  };
  closing_state& closing() {
    if (!closing_)
      closing_ = std::make_unique<closing_state>(lane_.context());
    return *closing_;
  }
  std::unique_ptr<closing_state> closing_; // made when the connection starts to end
  close_handshake hs_;
  std::uint32_t last_rx_tick_ = 0;
  bool pinged_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  const bool batch_; // the client asked for merged frames (batch=1)
  std::atomic<bool> read_paused_{false};
  std::atomic<std::size_t> pending_input_{0};
  std::atomic<std::size_t> replay_allowance_{0}; // see send_replay
};

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

void start_ws_session(std::shared_ptr<server_context> ctx, stream_socket&& socket, ws_handshake hs,
                      session_identity who, std::size_t lane) {
  auto& l = *ctx->lanes.at(lane);
  std::shared_ptr<ws_session> s{new ws_session(ctx, std::move(socket), l, hs.batch),
                                deferred_delete{&l.context()}};
  s->run(hs, who);
}

} // namespace wsnode::transport
