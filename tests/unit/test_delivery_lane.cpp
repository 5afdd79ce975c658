// The delivery lane without sockets: batches, coalesced flushes, and a
// session that ends while a coalesced flush is pending for it.
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
  void flush() override { ++flushed; }
  void check_alive(std::uint32_t) override {}
  delivery_lane& lane;
  int delivered = 0;
  int flushed = 0;
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

} // namespace

TEST_CASE("delivery_lane: a session that ends with a coalesced flush pending is not flushed") {
  boost::asio::io_context ioc;
  metrics m;
  auto lane = make_lane(ioc, m, std::chrono::milliseconds(50), std::chrono::seconds(30));
  auto frame = make_frame("x");
  fake_session a{*lane};
  auto b = std::make_unique<fake_session>(*lane);

  // a quiet lane writes at once, and so does the write right after (a
  // publish's ack, then its fan-out)
  lane->push(&a, frame);
  CHECK(run_until(ioc, [&] { return a.flushed == 1; }));
  lane->push(&a, frame);
  CHECK(run_until(ioc, [&] { return a.flushed == 2; }));
  // the third in a row waits up to coalesce_us for more
  lane->push(&a, frame);
  lane->push(b.get(), frame);
  CHECK(run_until(ioc, [&] { return b->delivered == 1; }));
  CHECK(a.flushed == 2);
  CHECK(b->flushed == 0);
  b.reset(); // ends before the coalesced flush (its memory is gone)
  CHECK(run_until(ioc, [&] { return a.flushed == 3; }));
  CHECK(a.delivered == 3);
}

TEST_CASE("delivery_lane: light traffic never waits") {
  boost::asio::io_context ioc;
  metrics m;
  auto lane = make_lane(ioc, m, std::chrono::microseconds(2000), std::chrono::seconds(30));
  auto frame = make_frame("x");
  fake_session a{*lane};
  // pairs of writes (an ack and its fan-out) 20 ms apart: each is written
  // in the drain that brought it, before the lane's coalescing timer could fire
  for (int i = 1; i <= 5; ++i) {
    for (int k = 0; k < 2; ++k) {
      lane->push(&a, frame);
      ioc.restart();
      ioc.poll();
      CHECK(a.flushed == 2 * (i - 1) + k + 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}
