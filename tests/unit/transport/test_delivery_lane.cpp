// The delivery lane without sockets: batches, when flushes are coalesced,
// a session that ends while a coalesced flush is pending for it, and the
// helper thread that writes half of a big flush.
#include "transport/delivery_lane.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

using namespace wsnode;
using namespace wsnode::transport;

namespace {

// The lanes' clock in these tests: time moves only when a test moves it
// (a flush's cost, a pause), so the coalescing rules see exactly the times
// the test means, also on a loaded machine. Before, they were sleeps: 2 of
// 60 runs beside 3 busy loops found a write held back (a preempted flush
// looked long), and with ten times the timings 8 of 60.
std::chrono::steady_clock::time_point fake_time{std::chrono::hours(1)};
std::chrono::steady_clock::time_point fake_now() noexcept {
  return fake_time;
}
void advance(std::chrono::microseconds d) {
  fake_time += d;
}

// Queues like ws_session: inside a drain it asks for a flush at the end.
struct fake_session final : lane_session {
  explicit fake_session(delivery_lane& l) : lane(l) {}
  ~fake_session() { lane.remove(this); }
  void deliver(frame_ptr, bool) override {
    ++delivered;
    lane.mark_dirty(this);
  }
  void flush() override {
    ++flushed;
    advance(cost); // a flush that keeps the lane busy
  }
  void check_alive(std::uint32_t) override {}
  delivery_lane& lane;
  int delivered = 0;
  int flushed = 0;
  std::chrono::microseconds cost{0};
};

// Writes on whichever thread the lane picks; `refuse`: its write_only()
// hands it back to flush() (a full kernel buffer, a close to finish).
struct writing_session final : lane_session {
  explicit writing_session(delivery_lane& l) : lane(l) {}
  ~writing_session() { lane.remove(this); }
  void deliver(frame_ptr, bool) override { lane.mark_dirty(this); }
  void flush() override {
    ++flushed;
    flusher = std::this_thread::get_id();
  }
  bool write_only(std::vector<boost::asio::const_buffer>&) override {
    ++written;
    writer = std::this_thread::get_id();
    return !refuse;
  }
  void check_alive(std::uint32_t) override {}
  delivery_lane& lane;
  bool refuse = false;
  int flushed = 0;
  int written = 0;
  std::thread::id flusher, writer;
};

// Runs the io_context until `pred` or 2 s.
template <class Pred>
bool run_until(boost::asio::io_context& ioc, Pred pred) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!pred() && std::chrono::steady_clock::now() < end) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(5));
  }
  return pred();
}

constexpr auto coalesce = std::chrono::milliseconds(20);

std::shared_ptr<delivery_lane> fake_clock_lane(boost::asio::io_context& ioc, metrics& m,
                                               std::chrono::microseconds coalesce_us = coalesce,
                                               std::size_t helper_min = 256) {
  auto lane = make_lane(ioc, m, coalesce_us, std::chrono::seconds(30), helper_min);
  lane->use_clock(&fake_now);
  return lane;
}

// A lane (coalesce_us 20,000) on an io_context that only the test runs.
struct lane_fixture {
  boost::asio::io_context ioc;
  metrics m;
  std::shared_ptr<delivery_lane> lane = fake_clock_lane(ioc, m);
  frame_ptr frame = make_frame("x");
};

} // namespace

TEST_CASE_FIXTURE(
    lane_fixture,
    "delivery_lane: a session that ends with a coalesced flush pending is not flushed") {
  fake_session a{*lane};
  auto b = std::make_unique<fake_session>(*lane);

  a.cost = std::chrono::milliseconds(5);
  // a quiet lane writes at once
  lane->push(&a, frame);
  CHECK(run_until(ioc, [&] { return a.flushed == 1; }));
  // right after a flush that took longer than the lane has been idle since
  // (and more than coalesce_us / 8), the next batch waits up to
  // coalesce_us for more
  lane->push(&a, frame);
  lane->push(b.get(), frame);
  CHECK(run_until(ioc, [&] { return b->delivered == 1; }));
  CHECK(a.flushed == 1);
  CHECK(b->flushed == 0);
  b.reset(); // ends before the coalesced flush (its memory is gone)
  CHECK(run_until(ioc, [&] { return a.flushed == 2; }));
  CHECK(a.delivered == 2);
}

TEST_CASE_FIXTURE(lane_fixture, "delivery_lane: a lane that is idle most of the time never waits") {
  fake_session a{*lane};
  fake_session b{*lane};
  b.cost = std::chrono::milliseconds(3); // a fan-out's flush, > coalesce_us / 8
  // an ack, 100 us later its fan-out, 30 ms later the next publish; a
  // stream of single writes 1 ms apart (DMs), and one without pauses: each
  // is written in the drain that brought it, before the lane's coalescing
  // timer could fire
  auto step = [&](fake_session& s, std::chrono::microseconds gap) {
    int before = s.flushed;
    lane->push(&s, frame);
    ioc.restart();
    ioc.poll();
    CHECK(s.flushed == before + 1);
    advance(gap);
  };
  for (int i = 0; i < 5; ++i) {
    step(a, std::chrono::microseconds(100));
    step(b, std::chrono::milliseconds(30));
  }
  for (int i = 0; i < 20; ++i)
    step(a, std::chrono::milliseconds(1));
  // back to back, each flush too short to be worth a wait
  for (int i = 0; i < 20; ++i)
    step(a, std::chrono::microseconds(0));
}

TEST_CASE_FIXTURE(
    lane_fixture,
    "delivery_lane: idle for 4 x coalesce_us, a lane writes at once after any flush") {
  // A flush longer than 4 x coalesce_us (a fan-out to thousands of sockets)
  // leaves a lane busy only until it has been idle for 4 x coalesce_us.
  // (8a0ded4 dropped this bound, and a DM 9 ms after a 12 ms fan-out waited.)
  lane = fake_clock_lane(ioc, m, std::chrono::milliseconds(2)); // the default coalesce_us
  fake_session a{*lane};
  a.cost = std::chrono::milliseconds(12);
  lane->push(&a, frame);
  CHECK(run_until(ioc, [&] { return a.flushed == 1; }));
  a.cost = {};
  advance(std::chrono::milliseconds(9)); // idle >= 8 ms, < 12 ms
  lane->push(&a, frame);
  ioc.restart();
  ioc.poll();
  CHECK(a.flushed == 2);
}

TEST_CASE_FIXTURE(lane_fixture,
                  "delivery_lane: a quiet lane's big flush is written by two threads, once each") {
  auto fan_out = [&](std::deque<writing_session>& subs) {
    {
      send_batch batch; // one publish: one drain
      for (auto& s : subs)
        lane->push(&s, frame);
    }
    CHECK(run_until(ioc, [&] {
      return std::all_of(subs.begin(), subs.end(),
                         [](auto& s) { return s.flushed + s.written > 0; });
    }));
  };
  auto me = std::this_thread::get_id();
  SUBCASE("a fan-out to 400: the helper writes half, hands refused ones back") {
    std::deque<writing_session> subs;
    for (int i = 0; i < 400; ++i)
      subs.emplace_back(*lane).refuse = i % 10 == 9;
    fan_out(subs);
    int by_helper = 0;
    for (auto& s : subs) {
      if (s.written == 0) { // the lane thread's half
        CHECK(s.flushed == 1);
        CHECK(s.flusher == me);
        continue;
      }
      ++by_helper;
      CHECK(s.written == 1);
      CHECK(s.writer != me);
      CHECK(s.flushed == (s.refuse ? 1 : 0)); // finished on the lane thread
      if (s.refuse)
        CHECK(s.flusher == me);
    }
    CHECK(by_helper == 200);
    CHECK(m.split_flushes == 1);
    CHECK(m.split_sessions == 180); // the helper's half less its 20 refused
  }
  SUBCASE("a fan-out right after another: the lane is not quiet, it writes alone") {
    std::deque<writing_session> subs;
    for (int i = 0; i < 400; ++i)
      subs.emplace_back(*lane);
    fan_out(subs); // split
    for (auto& s : subs)
      s.flushed = s.written = 0;
    fan_out(subs); // well within 4 x coalesce_us of the first
    for (auto& s : subs) {
      CHECK(s.written == 0);
      CHECK(s.flushed == 1);
    }
    CHECK(m.split_flushes == 1); // the first fan-out's only
  }
  SUBCASE("a DM written just before a fan-out: small flushes leave the lane quiet") {
    std::deque<writing_session> dm, subs;
    dm.emplace_back(*lane);
    for (int i = 0; i < 400; ++i)
      subs.emplace_back(*lane);
    fan_out(dm);
    CHECK(dm[0].flushed == 1);
    fan_out(subs);
    CHECK(m.split_flushes == 1);
    CHECK(m.split_sessions == 200);
  }
  SUBCASE("flush_helper_min: a lane made with 500 keeps a fan-out to 400, with 0 any") {
    for (std::size_t min : {500, 0}) {
      lane = fake_clock_lane(ioc, m, coalesce, min);
      std::deque<writing_session> subs;
      for (int i = 0; i < 400; ++i)
        subs.emplace_back(*lane);
      fan_out(subs);
      for (auto& s : subs)
        CHECK(s.written == 0);
    }
    CHECK(m.split_flushes == 0);
  }
  SUBCASE("a fan-out to 100: too small to split") {
    std::deque<writing_session> subs;
    for (int i = 0; i < 100; ++i)
      subs.emplace_back(*lane);
    fan_out(subs);
    for (auto& s : subs) {
      CHECK(s.written == 0);
      CHECK(s.flushed == 1);
    }
    CHECK(m.split_flushes == 0);
  }
}
