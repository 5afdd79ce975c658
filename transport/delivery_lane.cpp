#include "transport/delivery_lane.hpp"

#include <boost/asio/post.hpp>

#include <condition_variable>
#include <thread>

namespace wsnode::transport {

namespace net = boost::asio;

/// A second thread for the write system calls of a big flush of a quiet
/// lane: the fan-out of one publish to thousands of sockets is kernel time
/// (TCP send and the loopback receive, ~10 us a socket), so two threads
/// bring its last delivery forward. The lane thread writes one half and
/// waits for the helper's half; no session is touched by both. A lane
/// under a stream of publishes flushes alone (docs/capacity-notes.md).
class delivery_lane::helper {
public:
  helper() : thread_([this] { run(); }) {}
  ~helper() {
    {
      std::lock_guard<std::mutex> g{mu_};
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  /// Starts writing `n` sessions from `first`.
  void start(lane_session* const* first, std::size_t n) {
    {
      std::lock_guard<std::mutex> g{mu_};
      first_ = first;
      n_ = n;
      busy_ = true;
      back_.clear();
    }
    cv_.notify_all();
  }
  /// Waits for the half started last; returns the sessions that flush()
  /// must finish on the lane thread.
  const std::vector<lane_session*>& join() {
    std::unique_lock<std::mutex> g{mu_};
    cv_.wait(g, [this] { return !busy_; });
    return back_;
  }

private:
  void run() {
    std::unique_lock<std::mutex> g{mu_};
    for (;;) {
      cv_.wait(g, [this] { return stopping_ || busy_; });
      if (stopping_)
        return;
      auto* first = first_;
      auto n = n_;
      g.unlock();
      for (std::size_t i = 0; i < n; ++i) {
        auto* s = first[i];
        if (!s->dirty_)
          continue;
        s->dirty_ = false;
        if (!s->write_only(iov_))
          mine_.push_back(s);
      }
      g.lock();
      back_.swap(mine_);
      mine_.clear();
      busy_ = false;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  lane_session* const* first_ = nullptr;
  std::size_t n_ = 0;
  bool busy_ = false;
  bool stopping_ = false;
  std::vector<lane_session*> back_;
  std::vector<lane_session*> mine_; // helper thread only
  std::vector<net::const_buffer> iov_;
  std::thread thread_; // last: starts after the rest is built
};

delivery_lane::delivery_lane(net::io_context& ioc, metrics& m, std::chrono::microseconds coalesce,
                             std::chrono::milliseconds ping_interval, std::size_t helper_min)
  : ioc_(ioc), m_(m), coalesce_(coalesce),
    helper_min_(coalesce.count() > 0 && std::thread::hardware_concurrency() > 1 ? helper_min : 0),
    tick_period_(std::clamp<std::chrono::milliseconds>(
        ping_interval / 4, std::chrono::milliseconds(25), std::chrono::milliseconds(1000))),
    ping_ticks_(static_cast<std::uint32_t>(std::max<std::int64_t>(
        1, (ping_interval + tick_period_ - std::chrono::milliseconds(1)) / tick_period_))) {}

delivery_lane::~delivery_lane() = default;

void delivery_lane::hand_over() {
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
          lane->append(held[i].s, std::move(held[i].f), held[i].lossy);
          held[i].lane = nullptr;
        }
    }
    if (wake)
      net::post(lane->ioc_, [lane] { lane->drain(); });
  }
  held.clear();
}

void delivery_lane::drain() {
  {
    std::lock_guard<std::mutex> g{mu_};
    work_.swap(in_);
    work_frames_.swap(frames_);
  }
  draining_ = true;
  for (auto& [s, f] : work_)
    s->deliver(work_frames_[f & ~lossy_bit], (f & lossy_bit) != 0);
  draining_ = false;
  work_.clear();
  work_frames_.clear();
  if (dirty_.empty())
    return;
  auto now = now_();
  // Coalescing: while the lane is busy, frames wait up to [ws] coalesce_us
  // for more frames to the same sockets, so that the kernel gets fewer,
  // fuller writes. Busy: the last flush took at least coalesce_us / 8 (a
  // few dozen sockets: there is something to save) and longer than the
  // lane has been idle since (which was less than 4 x coalesce_us). A
  // publish's ack and its fan-out, DMs, a fan-out every 50 ms: those lanes
  // are idle most of the time or write little, and write at once.
  auto idle = now - last_flush_;
  // A big flush on a lane without another big one for 4 x coalesce_us (a
  // fan-out now and then, not a stream of them) is split with the helper
  // thread; under a stream one thread writes more frames per write and
  // costs the clients less. Small flushes in between (DMs, acks) do not
  // count: they neither split nor make the lane a stream of fan-outs.
  if (helper_min_ > 0 && dirty_.size() >= helper_min_ && now - last_big_flush_ >= 4 * coalesce_)
    return flush_dirty(true);
  if (coalesce_.count() == 0 || idle >= 4 * coalesce_ || idle >= last_flush_cost_ ||
      last_flush_cost_ < coalesce_ / 8)
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

void delivery_lane::flush_dirty(bool split) {
  // flush() may end a session (remove() clears its flag): sessions are
  // freed only by a task posted later, so the pointers stay valid here
  auto start = now_();
  flushing_.swap(dirty_);
  auto n = flushing_.size();
  auto mine = n;
  if (split) {
    if (!helper_)
      helper_ = std::make_unique<helper>();
    mine /= 2;
    helper_->start(flushing_.data() + mine, flushing_.size() - mine);
  }
  for (std::size_t i = 0; i < mine; ++i)
    if (auto* s = flushing_[i]; s->dirty_) {
      s->dirty_ = false;
      s->flush();
    }
  if (mine < flushing_.size()) {
    auto& back = helper_->join();
    bump(m_.split_flushes, 1);
    bump(m_.split_sessions, flushing_.size() - mine - back.size());
    for (auto* s : back)
      s->flush();
  }
  flushing_.clear();
  last_flush_ = now_();
  last_flush_cost_ = last_flush_ - start;
  if (helper_min_ > 0 && n >= helper_min_)
    last_big_flush_ = last_flush_;
}

frame_ptr delivery_lane::compressed(const frame_ptr& f, int window_bits) {
  for (const auto& p : packed_)
    if (p.plain == f && p.window_bits == window_bits)
      return p.deflated;
  auto& d = deflaters_.at(static_cast<std::size_t>(window_bits));
  if (!d)
    d = std::make_unique<protocol::ws::deflater>(window_bits);
  bump(m_.deflate_calls, 1);
  auto& slot = packed_[next_packed_++ % packed_.size()];
  slot = {f, window_bits, make_frame(d->compress(*f))};
  return slot.deflated;
}

void delivery_lane::add(lane_session* s) {
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

void delivery_lane::remove(lane_session* s) noexcept {
  if (s->dirty_) { // rare: it ends with a coalesced flush pending
    s->dirty_ = false;
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), s), dirty_.end());
  }
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

std::shared_ptr<delivery_lane> make_lane(net::io_context& ioc, metrics& m,
                                         std::chrono::microseconds coalesce,
                                         std::chrono::milliseconds ping_interval,
                                         std::size_t helper_min) {
  send_batch::set_end_hook(&delivery_lane::hand_over);
  return std::make_shared<delivery_lane>(ioc, m, coalesce, ping_interval, helper_min);
}

} // namespace wsnode::transport
