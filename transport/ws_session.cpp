// ws_session (ws_session_impl.hpp), its start and its output: the 101 and
// the session's birth, what the session actor and the lane send it, and the
// write queue's way to the kernel. The output's per-frame path (deliver,
// push_entry, flush, write_only) is all here, so its calls stay within one
// file and inline; the input is in ws_session_input.cpp, the end of the
// connection in ws_session_close.cpp.
#include "transport/ws_session_impl.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace wsnode::transport {

namespace {

namespace net = boost::asio;
namespace ws = protocol::ws;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

using phase = close_handshake::phase;

} // namespace

ws_session::ws_session(std::shared_ptr<server_context> ctx, stream_socket&& s, delivery_lane& lane,
                       bool batch)
  : ctx_(std::move(ctx)), lane_(lane), socket_(std::move(s)),
    reader_(ctx_->opts.max_message_bytes, false), out_(ctx_->m), batch_(batch) {}

ws_session::~ws_session() {
  lane_.remove(this);
  bump(ctx_->m.connections, -1);
}

void ws_session::run(const ws_handshake& hs, const session_identity& who) {
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
  spdlog::info("open sid={}-{} user={} remote={}", ctx_->opts.node_id, sid_, who.user, who.remote);
  lane_.add(this);
  last_rx_tick_ = lane_.tick();
  do_read();
}

// ------------------------------------------------------------ frame_sink (any thread)

send_result ws_session::send(frame_ptr f) {
  if (hs_.current() != phase::open) {
    ctx_->m.drop(drop_reason::closed);
    return send_result::closed;
  }
  lane_.push(this, std::move(f));
  return send_result::queued;
}

send_result ws_session::send_lossy(frame_ptr f) {
  if (hs_.current() != phase::open) {
    ctx_->m.drop(drop_reason::closed);
    return send_result::closed;
  }
  lane_.push(this, std::move(f), true);
  return send_result::queued;
}

send_result ws_session::send_replay(frame_ptr f) {
  replay_allowance_.fetch_add(f->size(), std::memory_order_relaxed);
  return send(std::move(f));
}

void ws_session::close(std::uint16_t code, std::string reason) {
  // frames the caller sent before, still held by its send_batch, go first
  if (send_batch::active())
    delivery_lane::hand_over();
  net::post(lane_.context(), [self = shared_from_this(), code, r = std::move(reason)]() mutable {
    self->start_close(code, std::move(r));
  });
}

void ws_session::input_done() {
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

void ws_session::deliver(frame_ptr f, bool lossy) {
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

void ws_session::flush() {
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

bool ws_session::write_only(std::vector<net::const_buffer>& iov) {
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

void ws_session::check_alive(std::uint32_t tick) {
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

// ------------------------------------------------------------ writing

// Our own frames (101, control frames).
void ws_session::push_raw(std::string bytes) {
  if (write_failed_ || hs_.current() == phase::closed)
    return;
  out_entry e;
  e.raw = std::move(bytes);
  push_entry(std::move(e));
}

// Inside a lane's batch the flush waits for the end of the batch;
// otherwise (control frames, replies to a close) it starts now.
inline void ws_session::push_entry(out_entry&& e) {
  out_.push(std::move(e));
  if (!lane_.draining()) {
    flush();
  } else {
    lane_.mark_dirty(this);
  }
}

void ws_session::wait_writable() {
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
void ws_session::fail_write(error_code ec) {
  spdlog::debug("write failed sid={}-{}: {}", ctx_->opts.node_id, sid_, ec.message());
  write_failed_ = true;
  discard_unsent(drop_reason::closed);
  teardown();
}

// Drops what is queued but not begun (see write_queue::discard_unsent).
void ws_session::discard_unsent(drop_reason why) {
  if (auto dropped = out_.discard_unsent(); dropped > 0)
    ctx_->m.drop(why, dropped);
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

void start_ws_session(std::shared_ptr<server_context> ctx, stream_socket&& socket, ws_handshake hs,
                      session_identity who, std::size_t lane) {
  auto& l = *ctx->lanes.at(lane);
  std::shared_ptr<ws_session> s{new ws_session(ctx, std::move(socket), l, hs.batch),
                                deferred_delete{&l.context()}};
  s->run(hs, who);
}

} // namespace wsnode::transport
