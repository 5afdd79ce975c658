// The load generator's machinery: worker threads (one io_context each),
// WebSocket clients speaking a protocol adapter, HTTP publishers. Scenarios
// (bench/scenarios.cpp) drive it from the main thread.
#pragma once

#include "bench/adapters.hpp"
#include "bench/histogram.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace wsnode::bench {

struct endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
};

struct engine_options {
  protocol proto = protocol::wsnode;
  endpoint ws;                   ///< WebSocket target (a node or the nginx front)
  endpoint http;                 ///< HTTP publish target
  std::size_t threads = 2;       ///< worker threads
  std::size_t sources = 1;       ///< source addresses 127.0.0.1 .. 127.0.0.N
  std::size_t concurrency = 256; ///< connection attempts in flight
};

/// What one worker thread measured (merged at the end).
struct thread_stats {
  histogram latency;
  std::uint64_t delivered = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t errors = 0;
  std::uint64_t reads = 0;      ///< read system calls that returned bytes
  std::uint64_t read_bytes = 0; ///< bytes those reads returned
};

/// One client to open: its user, the channels it subscribes to, and
/// whether it must land on a node other than `avoid_node` (retrying).
struct client_spec {
  std::string user;
  std::vector<std::string> channels;
  std::string avoid_node;
};

class engine {
public:
  explicit engine(engine_options opts);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Opens clients and subscribes them; blocks until each is subscribed or
  /// failed. `progress(opened)` is called from time to time. Returns the
  /// index of the first client opened by this call.
  std::size_t open(const std::vector<client_spec>& specs,
                   const std::function<void(std::size_t)>& progress = {});

  std::size_t ready() const noexcept { return ready_.load(); }
  std::size_t failed() const noexcept { return failed_.load(); }
  /// The node (wsnode's hello) client `i` landed on; empty for others.
  std::string node_of(std::size_t i) const;

  /// Publishes `payload` to `ch` from client `from` (over its WebSocket,
  /// or HTTP when the protocol publishes over HTTP or `use_http`).
  /// Thread-safe; returns at once. `in_flight()` counts unacknowledged ones.
  void publish(std::size_t from, const std::string& ch, std::string payload, bool use_http);
  /// Sends a direct message from client `from` to `user`.
  void direct(std::size_t from, const std::string& user, std::string payload);
  std::int64_t in_flight() const noexcept { return in_flight_.load(); }

  /// Delivery-bounded pacing: from now on the messages of sender 1 count
  /// as complete once `subscribers` clients received them. Call before
  /// publishing; then announce each message with expect_message(seq).
  void track_deliveries(std::uint32_t subscribers);
  /// Sender 1's message `seq` is about to be published (delivery tracking).
  void expect_message(std::uint64_t seq);
  /// Tracked messages announced and not yet delivered to every subscriber.
  std::int64_t undelivered() const noexcept {
    return static_cast<std::int64_t>(expected_.load() - complete_.load());
  }

  /// Deliveries so far (all threads; approximate while running).
  std::uint64_t delivered() const noexcept { return delivered_.load(std::memory_order_relaxed); }

  /// Closes every client and stops the threads; returns the merged stats.
  thread_stats finish();

  struct impl;

private:
  friend class ws_client;
  friend class http_client;
  std::unique_ptr<impl> impl_;
  std::atomic<std::size_t> ready_{0};
  std::atomic<std::size_t> failed_{0};
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> expected_{0}; // tracked messages announced
  std::atomic<std::uint64_t> complete_{0}; // ... and delivered to every subscriber
};

} // namespace wsnode::bench
