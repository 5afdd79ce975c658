// The delivery lane without sockets: batches, when flushes are coalesced,
// and a session that ends while a coalesced flush is pending for it.
#include "transport/delivery_lane.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <thread>

using namespace wsnode;
using namespace wsnode::transport;

namespace {

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
    if (cost.count() > 0)
      std::this_thread::sleep_for(cost); // a flush that keeps the lane busy
  }
  void check_alive(std::uint32_t) override {}
  delivery_lane& lane;
  int delivered = 0;
  int flushed = 0;
  std::chrono::microseconds cost{0};
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

// A lane (coalesce_us 20,000) on an io_context that only the test runs.
struct lane_fixture {
  boost::asio::io_context ioc;
  metrics m;
  std::shared_ptr<delivery_lane> lane =
      make_lane(ioc, m, std::chrono::milliseconds(20), std::chrono::seconds(30));
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
  auto step = [&](fake_session& s, std::chrono::microseconds pause) {
    int before = s.flushed;
    lane->push(&s, frame);
    ioc.restart();
    ioc.poll();
    CHECK(s.flushed == before + 1);
    std::this_thread::sleep_for(pause);
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
