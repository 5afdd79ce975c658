// The delivery lane of one io thread: the fast lane from the broker to the
// sockets. A publish's deliveries reach the sessions of an io thread as one
// batch (one lock, one wake-up), never as one actor message or one post per
// delivery; each touched socket then gets one write. It also carries what
// the sessions of the thread share: the read buffer, the deflaters and the
// keep-alive tick.
#pragma once

#include "core/metrics.hpp"
#include "core/ports.hpp"
#include "protocol/websocket.hpp"
#include "protocol/ws_deflate.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace wsnode::transport {

/// The read buffer every session of an io thread shares.
inline constexpr std::size_t rx_buffer_bytes = 64 * 1024;

class delivery_lane;

/// What a lane drives: one connection, on the lane's io thread.
class lane_session {
public:
  /// One frame from the lane (inside a batch: flush() follows). `lossy`:
  /// a frame of a lossy namespace, skipped rather than closing the session
  /// when its write queue is full.
  virtual void deliver(frame_ptr f, bool lossy) = 0;
  /// Writes what is queued.
  virtual void flush() = 0;
  /// The write of flush() alone, on the lane's helper thread while the
  /// lane thread waits for it: touches only this session's queue and
  /// socket, with `iov` as gather scratch. True when nothing is left for
  /// flush() to do; false hands the session back to flush() on the lane
  /// thread (a full kernel buffer, an error, a close waiting for the
  /// drain). The default does nothing and hands it back.
  virtual bool write_only(std::vector<boost::asio::const_buffer>& /*iov*/) { return false; }
  /// Once per lane tick (keep-alive).
  virtual void check_alive(std::uint32_t tick) = 0;

protected:
  lane_session() = default;
  ~lane_session() = default;
  lane_session(const lane_session&) = delete;
  lane_session& operator=(const lane_session&) = delete;

private:
  friend class delivery_lane;
  lane_session* prev_ = nullptr; // the lane's list of open sessions
  lane_session* next_ = nullptr;
  bool linked_ = false;
  bool dirty_ = false; // in the lane's list of sessions to flush
};

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
  delivery_lane(boost::asio::io_context& ioc, metrics& m, std::chrono::microseconds coalesce,
                std::chrono::milliseconds ping_interval, std::size_t helper_min);
  ~delivery_lane();

  /// Any thread. `s` stays valid until the drain (sessions are destroyed on
  /// their io thread, after tasks posted before). Inside a send_batch the
  /// pair is held by the calling thread and handed over with the batch.
  void push(lane_session* s, frame_ptr f, bool lossy = false) {
    staged().push_back({this, s, std::move(f), lossy});
    if (!send_batch::active())
      hand_over(); // a single send: its own batch
  }

  /// The end of the calling thread's send_batch: every held pair goes to
  /// its lane, with one lock and at most one wake-up per lane.
  static void hand_over();

  /// io thread: a session with queued output, to flush at the end of the batch.
  void mark_dirty(lane_session* s) {
    if (!s->dirty_) {
      s->dirty_ = true;
      dirty_.push_back(s);
    }
  }
  /// io thread: true while a batch is being handed out.
  bool draining() const noexcept { return draining_; }

  boost::asio::io_context& context() noexcept { return ioc_; }
  /// io thread: the gather list of the write under way (writes are synchronous).
  std::vector<boost::asio::const_buffer>& iov_scratch() noexcept { return iov_; }
  /// io thread: the read buffer of this thread (rx_buffer_bytes).
  char* rx_buffer() noexcept { return rx_.get(); }
  /// io thread: the payload of `f` compressed with `window_bits`. The
  /// server keeps no context between messages, so these bytes are the same
  /// for every session with that window size: a frame delivered to many
  /// deflate sessions is compressed once per window size and shared.
  frame_ptr compressed(const frame_ptr& f, int window_bits);

  // keep-alive (io thread)
  void add(lane_session* s);
  /// Forgets `s` (keep-alive list, pending flush): it is about to end. A
  /// session can end while a coalesced flush is pending for it.
  void remove(lane_session* s) noexcept;
  std::uint32_t tick() const noexcept { return tick_; }
  std::uint32_t ping_ticks() const noexcept { return ping_ticks_; }

  using clock_fn = std::chrono::steady_clock::time_point (*)() noexcept;
  /// io thread: the clock that times flushes and idle spells for the
  /// coalescing and helper rules (tests: one they move by hand, so that a
  /// loaded machine's stretched sleeps do not change the lane's decisions).
  void use_clock(clock_fn now) noexcept { now_ = now; }

private:
  static constexpr std::size_t max_pending = 1 << 22;

  struct held_send {
    delivery_lane* lane;
    lane_session* s;
    frame_ptr f;
    bool lossy;
  };
  /// The top bit of a delivery's frame index marks a lossy frame.
  static constexpr std::uint32_t lossy_bit = 1u << 31;
  static std::vector<held_send>& staged() {
    thread_local std::vector<held_send> v;
    return v;
  }

  // With mu_ held.
  void append(lane_session* s, frame_ptr&& f, bool lossy) {
    if (in_.size() >= max_pending) {
      m_.drop(drop_reason::slow_consumer); // the io thread is far behind
      return;
    }
    if (frames_.empty() || frames_.back().get() != f.get())
      frames_.push_back(std::move(f));
    in_.emplace_back(s, static_cast<std::uint32_t>(frames_.size() - 1) | (lossy ? lossy_bit : 0));
  }

  void drain();
  /// `split`: a flush of a quiet lane, which hands half of its sessions to
  /// the helper thread when they are many.
  void flush_dirty(bool split = false);
  void on_tick();

  boost::asio::io_context& ioc_;
  metrics& m_;
  std::chrono::microseconds coalesce_;
  std::size_t helper_min_; // 0 = never split (also on one core)
  std::chrono::milliseconds tick_period_;
  std::uint32_t ping_ticks_;
  std::mutex mu_;
  std::vector<std::pair<lane_session*, std::uint32_t>> in_;
  std::vector<frame_ptr> frames_;
  // io thread only
  std::vector<std::pair<lane_session*, std::uint32_t>> work_;
  std::vector<frame_ptr> work_frames_;
  std::vector<lane_session*> dirty_;
  std::vector<lane_session*> flushing_; // dirty_ while flush_dirty runs
  class helper;
  std::unique_ptr<helper> helper_; // made on the first split flush
  clock_fn now_ = &std::chrono::steady_clock::now;
  std::chrono::steady_clock::time_point last_flush_{};
  std::chrono::steady_clock::duration last_flush_cost_{};  // how long that flush took
  std::chrono::steady_clock::time_point last_big_flush_{}; // of helper_min_+ sessions
  bool draining_ = false;
  bool timer_armed_ = false;
  boost::asio::steady_timer timer_{ioc_};
  std::unique_ptr<char[]> rx_{new char[rx_buffer_bytes]};
  std::vector<boost::asio::const_buffer> iov_;
  std::array<std::unique_ptr<protocol::ws::deflater>, 16> deflaters_;
  // The frames compressed last: a fan-out delivers one frame to its
  // sessions in a row, and the plain frame held here keeps its address
  // from being reused while the entry may match.
  struct packed {
    frame_ptr plain;
    int window_bits = 0;
    frame_ptr deflated;
  };
  std::array<packed, 4> packed_;
  std::size_t next_packed_ = 0;
  lane_session* sessions_ = nullptr; // intrusive list of open sessions
  std::uint32_t tick_ = 0;
  bool ticking_ = false;
  boost::asio::steady_timer tick_timer_{ioc_};
};

/// Makes the delivery lane of one io_context; writes wait up to `coalesce`
/// for more frames to the same sockets, sessions are pinged after
/// `ping_interval` of silence and dropped after twice that, and a quiet
/// lane's flush to `helper_min` or more sockets (0: none) is split with a
/// helper thread.
std::shared_ptr<delivery_lane> make_lane(boost::asio::io_context& ioc, metrics& m,
                                         std::chrono::microseconds coalesce,
                                         std::chrono::milliseconds ping_interval,
                                         std::size_t helper_min = 256);

} // namespace wsnode::transport
