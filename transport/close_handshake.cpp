#include "transport/close_handshake.hpp"

namespace wsnode::transport {

namespace {

// The reason our close frame gives for a violation that ended the input.
const char* reason_for(std::uint16_t code) {
  switch (code) {
  case 1009:
    return "message too big";
  case 1007:
    return "invalid UTF-8";
  default:
    return "protocol error";
  }
}

using kind = close_handshake::step::kind;

} // namespace

void close_handshake::arm_timer(steps& out) {
  if (timer_armed_)
    return;
  timer_armed_ = true;
  out.push_back({kind::arm_timer});
}

// The client's input ends: the session answers what came before, then
// closes; the timer bounds how long it may take.
void close_handshake::end_input(std::uint16_t code, steps& out) {
  input_ended_ = true;
  end_code_ = code;
  arm_timer(out);
  out.push_back({kind::tell_input_end, code});
}

// Input is dropped from now on; once our close (and everything before it)
// is out, the sending side shuts down.
void close_handshake::linger(steps& out) {
  discard_input_ = true;
  if (current() == phase::closing) {
    shutdown_after_drain_ = true;
    out.push_back({kind::check_drain});
  }
}

close_handshake::steps close_handshake::on_peer_close(std::uint16_t code) {
  steps out;
  if (input_ended_) {
    linger(out);
    return out;
  }
  peer_code_ = code;
  if (current() == phase::open) {
    end_input(code, out);
    linger(out);
    return out;
  }
  // The answer to our close: the client has read everything up to our
  // close frame, and the server closes TCP (RFC 6455 7.1.1) once the rest
  // of the queue is out.
  input_ended_ = true;
  discard_input_ = true;
  teardown_after_drain_ = true;
  out.push_back({kind::check_drain});
  return out;
}

close_handshake::steps close_handshake::on_violation(std::uint16_t code) {
  steps out;
  if (current() == phase::open && !input_ended_)
    end_input(code, out);
  linger(out);
  return out;
}

close_handshake::steps close_handshake::on_close(std::uint16_t code, std::string reason) {
  steps out;
  if (current() != phase::open)
    return out;
  phase_.store(phase::closing, std::memory_order_release);
  close_code_ = code;
  // the close due at the end of input carries the violation's reason; the
  // client's own close is echoed without one
  if (reason.empty() && input_ended_ && code == end_code_ && code != peer_code_)
    reason = reason_for(code);
  arm_timer(out); // a client that never answers must not hold the close forever
  out.push_back({kind::send_close, code, std::move(reason)});
  if (discard_input_)
    linger(out);
  else
    out.push_back({kind::skip_data}); // data frames are dropped while the client's close is awaited
  return out;
}

close_handshake::steps close_handshake::on_drained() {
  if (teardown_after_drain_)
    return {{kind::teardown}};
  if (shutdown_after_drain_) {
    shutdown_after_drain_ = false;
    return {{kind::shutdown_send}};
  }
  return {};
}

close_handshake::steps close_handshake::on_timer() {
  switch (current()) {
  case phase::closed:
    return {};
  case phase::open: { // the session did not close in time: close anyway
    auto out = on_close(end_code_, {});
    out.push_back({kind::arm_timer}); // and bound the client's answer too
    return out;
  }
  case phase::closing:
    break;
  }
  return {{kind::teardown}}; // the client never finished the handshake
}

bool close_handshake::on_finished() noexcept {
  return phase_.exchange(phase::closed, std::memory_order_acq_rel) != phase::closed;
}

} // namespace wsnode::transport
