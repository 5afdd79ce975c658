// Webhooks (protocol v1.2 events): the node's events in signed batches to
// [hooks] events_url, one batch at a time in order, retried with backoff
// until the application answers 2xx (at least once), from a bounded queue
// whose overflow is dropped and counted (docs/operations.md "Webhooks").
#pragma once

#include "core/events.hpp"
#include "core/metrics.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <string>

namespace wsnode::transport {

struct event_options {
  std::string url; ///< http://HOST[:PORT]/PATH (check_hook_url)
  std::string node_id;
  std::string secret; ///< HMAC key of X-Wsnode-Signature; also sent as X-Wsnode-Secret
  std::chrono::milliseconds timeout{2000}; ///< one call's bound
  std::size_t max_queue = 10000;           ///< events waiting; more are dropped
  std::array<bool, event_kind_count> kinds{};
};

class event_sender final : public event_port {
public:
  /// Starts the sender's thread. `m` must outlive it. Throws
  /// std::invalid_argument for a URL check_hook_url refuses.
  event_sender(event_options opts, hook_metrics& m);
  /// Sends what is queued for up to the call timeout, then stops.
  ~event_sender() override;
  event_sender(const event_sender&) = delete;
  event_sender& operator=(const event_sender&) = delete;

  bool wants(event_kind k) const noexcept override;
  void emit(event_kind k, std::string fields) override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace wsnode::transport
