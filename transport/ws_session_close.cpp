// ws_session (ws_session_impl.hpp), the end of the connection: the steps
// close_handshake asks for performed in order, the session's close and the
// slow consumer's, the close timer, and the teardown that ends the TCP
// connection and tells the session handler once. The state machine itself
// is close_handshake; this file only does its I/O. Nothing here is on the
// per-frame path.
#include "transport/ws_session_impl.hpp"

#include <spdlog/spdlog.h>

namespace wsnode::transport {

namespace {

namespace ws = protocol::ws;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;

using phase = close_handshake::phase;
using step = close_handshake::step;

} // namespace

// Does what the close handshake asks for, in order (close_handshake.hpp).
void ws_session::perform(const close_handshake::steps& steps) {
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

void ws_session::on_slow() {
  if (hs_.current() != phase::open)
    return;
  spdlog::warn("slow consumer sid={}-{}: write queue over {} bytes, closing with 1013",
               ctx_->opts.node_id, sid_, ctx_->opts.max_queue_bytes);
  discard_unsent(drop_reason::slow_consumer);
  start_close(close_code::try_later, "slow consumer");
}

// Frames queued before the close go out first: the close frame is queued
// behind them (see close_handshake.hpp for what follows).
void ws_session::start_close(std::uint16_t code, std::string reason) {
  perform(hs_.on_close(code, std::move(reason)));
}

// The close timer bounds a close (close_handshake::on_timer).
void ws_session::wait_close_timer() {
  auto& timer = closing().timer;
  timer.expires_after(ctx_->opts.close_timeout);
  timer.async_wait([self = shared_from_this()](error_code ec) {
    if (ec)
      return;
    const auto& node = self->ctx_->opts.node_id;
    if (self->hs_.current() == phase::open)
      spdlog::warn("close timeout sid={}-{}: the session did not close; closing", node, self->sid_);
    else if (self->hs_.current() == phase::closing)
      spdlog::debug("close timeout sid={}-{}: dropping the TCP connection", node, self->sid_);
    self->perform(self->hs_.on_timer());
  });
}

// Ends the TCP connection and the session.
void ws_session::teardown() {
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored); // a pending wait or write completes with an error
  finish();
}

// A read failed: the peer is gone (or reset) without a closing handshake.
void ws_session::lost(error_code ec) {
  spdlog::debug("read ended sid={}-{}: {}", ctx_->opts.node_id, sid_, ec.message());
  teardown();
}

void ws_session::finish() {
  if (!hs_.on_finished())
    return;
  if (handler_) { // a session was opened (not when the 101 could not be written)
    auto code = hs_.final_code();
    std::string_view why;
    if (closing_) // ours, or (the client closed first and we echoed) the client's
      why = hs_.our_code() && !closing_->reason.empty() ? closing_->reason : closing_->peer_reason;
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

} // namespace wsnode::transport
