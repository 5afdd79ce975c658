// The engine's insides, shared by its parts (engine.cpp: the engine and
// the HTTP publisher; ws_client.cpp: the WebSocket client). Not for users
// of the engine.
#pragma once

#include "bench/engine.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace wsnode::bench {

/// The read buffer every client of a worker thread shares: a readable
/// socket is read into it until the kernel has nothing more.
inline constexpr std::size_t worker_rx_bytes = 64 * 1024;

struct worker {
  boost::asio::io_context ioc{1};
  std::thread thread;
  thread_stats stats;
  std::unique_ptr<char[]> rx{new char[worker_rx_bytes]};
};

class ws_client;
class http_client;

struct engine::impl {
  impl(engine& o, engine_options opts);

  // a client finished opening (ok) or gave up
  void opened(bool ok) {
    (ok ? owner.ready_ : owner.failed_).fetch_add(1);
    std::lock_guard<std::mutex> g{mu};
    --in_progress;
    cv.notify_all();
  }

  /// A message of the tracked sender reached one more subscriber.
  void delivered_tracked(std::uint64_t seq) {
    if (track_fanout == 0)
      return;
    auto& n = tracked[seq % tracked_slots];
    if (n.fetch_add(1, std::memory_order_relaxed) + 1 == track_fanout)
      owner.complete_.fetch_add(1, std::memory_order_relaxed);
  }

  static constexpr std::size_t tracked_slots = 1 << 16;

  engine& owner;
  engine_options opts;
  std::vector<std::unique_ptr<worker>> workers;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards;
  std::vector<std::shared_ptr<ws_client>> clients;
  std::vector<std::shared_ptr<http_client>> https;
  std::atomic<std::size_t> next_http{0};
  std::atomic<std::uint64_t> http_errors{0};
  std::mutex mu;
  std::condition_variable cv;
  std::size_t in_progress = 0;
  // delivery tracking (engine::track_deliveries): deliveries per sequence
  // number of sender 1, modulo tracked_slots
  std::uint32_t track_fanout = 0;
  std::unique_ptr<std::atomic<std::uint32_t>[]> tracked;
};

} // namespace wsnode::bench
