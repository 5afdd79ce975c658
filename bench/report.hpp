// Results of a benchmark run: measurement of processes (/proc), the JSON
// result and the readable table.
#pragma once

#include "bench/histogram.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace wsnode::bench {

/// CPU seconds (user+system, all threads) and RSS of a set of processes.
struct proc_sample {
  double cpu_s = 0;
  std::uint64_t rss_bytes = 0;
};

/// Samples `pids` (missing ones count as 0).
proc_sample sample_processes(const std::vector<int>& pids);

/// CPU seconds this process used so far.
double self_cpu_seconds();

/// Nanoseconds on the monotonic clock (shared by all processes of the host).
std::uint64_t now_ns() noexcept;

struct result {
  std::string scenario;
  std::string protocol;
  std::string target;
  std::size_t connections = 0;
  std::size_t connect_failures = 0;
  double connect_seconds = 0;
  // deliveries
  std::uint64_t published = 0;
  std::uint64_t expected = 0;
  std::uint64_t delivered = 0;
  std::uint64_t lost = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t errors = 0; ///< err frames / failed publishes
  double seconds = 0;       ///< first publish .. last delivery
  double offered_rate = 0;  ///< publishes/s asked for (0 = window-limited)
  std::string bound = "ack"; ///< what the window counts: "ack" or "delivery" (fanout)
  std::size_t payload = 0;
  histogram latency; ///< microseconds, publish -> delivery
  // processes
  double server_cpu_s = 0;
  double bench_cpu_s = 0;
  std::uint64_t server_rss_before = 0;
  std::uint64_t server_rss_after = 0;
  std::vector<std::pair<std::size_t, std::uint64_t>> rss_curve; ///< (connections, server RSS)
  // the clients' side of the socket
  std::uint64_t client_reads = 0;      ///< read system calls that returned bytes
  std::uint64_t client_read_bytes = 0; ///< bytes they returned

  double delivered_per_s() const { return seconds > 0 ? delivered / seconds : 0; }
  double per_server_core() const { return server_cpu_s > 0 ? delivered / server_cpu_s : 0; }
  /// wsbench CPU microseconds per delivery (the client's cost).
  double client_us_per_delivery() const { return delivered > 0 ? bench_cpu_s * 1e6 / delivered : 0; }
  double bytes_per_client_read() const {
    return client_reads > 0 ? double(client_read_bytes) / double(client_reads) : 0;
  }
  double deliveries_per_client_read() const {
    return client_reads > 0 ? double(delivered) / double(client_reads) : 0;
  }
  double rss_per_connection() const {
    return connections > 0 && server_rss_after > server_rss_before
               ? double(server_rss_after - server_rss_before) / double(connections)
               : 0;
  }
};

/// One JSON object (a single line).
std::string to_json(const result& r);
/// A readable table.
std::string to_table(const result& r);

} // namespace wsnode::bench
