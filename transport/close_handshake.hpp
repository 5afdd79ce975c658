// The end of one WebSocket connection (RFC 6455 7) as a plain state
// machine: what the client's close frame, a protocol violation, the
// session's close, a slow consumer, a drained write queue or the close
// timer each lead to. It does no I/O: each event returns the steps the
// connection takes, in order (transport/ws_session_close.cpp performs them), so
// unit tests can walk every path without a socket.
//
// The rules it keeps:
// - the client's input ends (its close frame, or a violation): the session
//   answers every earlier message first, then closes; our close frame goes
//   out behind everything queued before it;
// - after our close we wait for the client's (data frames dropped) and
//   close TCP once it came and the queue is out;
// - a close after the client's input ended is a lingering close: input is
//   read and dropped, the sending side shuts down once our close is out,
//   and the connection ends at the client's EOF or the close timer (closing
//   a socket with unread input would reset it and lose our close frame);
// - the close timer bounds all of it: a session that does not close in
//   time is closed anyway (and the timer armed again), a client that never
//   finishes the handshake is dropped.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::transport {

class close_handshake {
public:
  enum class phase : std::uint8_t { open, closing, closed };

  /// One thing the connection does, in the order given.
  struct step {
    enum class kind : std::uint8_t {
      tell_input_end, ///< the session handler learns the input ended (`code`)
      send_close,     ///< queue our close frame: `code`, `reason` (1005: empty frame)
      skip_data,      ///< the frame reader drops data frames from now on
      arm_timer,      ///< (re)start the close timer
      check_drain,    ///< if the write queue is already empty, call on_drained()
      shutdown_send,  ///< shut the sending side of TCP down
      teardown,       ///< end the TCP connection and the session (then on_finished())
    };
    kind what;
    std::uint16_t code = 0;
    std::string reason = {}; ///< send_close: the close frame's reason
    bool operator==(const step&) const = default;
  };
  using steps = std::vector<step>;

  /// Read from any thread (frame_sink::send refuses frames once not open).
  phase current() const noexcept { return phase_.load(std::memory_order_acquire); }
  /// Input is read and dropped (lingering, or after the close completed).
  bool discarding_input() const noexcept { return discard_input_; }
  /// A close waits for the write queue to drain (the lane's helper thread
  /// must leave such a connection to the I/O thread).
  bool waits_for_drain() const noexcept { return teardown_after_drain_ || shutdown_after_drain_; }
  /// Our close code (0: we did not start closing) and the client's (0:
  /// none read). (The reasons are the connection's to keep: an open
  /// connection holds none, and this machine holds no memory of its own.)
  std::uint16_t our_code() const noexcept { return close_code_; }
  std::uint16_t peer_code() const noexcept { return peer_code_; }
  /// The code a finished connection is counted and logged with: ours, else
  /// the client's, else 1006 (no close at all).
  std::uint16_t final_code() const noexcept {
    return close_code_ ? close_code_ : peer_code_ ? peer_code_ : 1006;
  }

  // ---- events

  /// The client's close frame (`code` 1005: none given).
  steps on_peer_close(std::uint16_t code);
  /// A protocol violation: 1002 framing, 1007 UTF-8, 1009 size.
  steps on_violation(std::uint16_t code);
  /// The session (or the connection itself) closes with `code`; frames
  /// queued before go out first.
  steps on_close(std::uint16_t code, std::string reason);
  /// Everything queued has reached the kernel.
  steps on_drained();
  /// The close timer fired.
  steps on_timer();
  /// The connection has ended (torn down, or the 101 could not be written).
  /// Returns false when it had ended before.
  bool on_finished() noexcept;

private:
  void end_input(std::uint16_t code, steps& out);
  void linger(steps& out);
  void arm_timer(steps& out);

  std::uint16_t close_code_ = 0; // ours, once we started closing
  std::uint16_t peer_code_ = 0;  // the client's close frame's
  std::uint16_t end_code_ = 0;   // what ended the client's input
  std::atomic<phase> phase_{phase::open};
  bool input_ended_ = false; // the client's close or a violation was read
  bool discard_input_ = false;
  bool shutdown_after_drain_ = false;
  bool teardown_after_drain_ = false;
  bool timer_armed_ = false;
};

} // namespace wsnode::transport
