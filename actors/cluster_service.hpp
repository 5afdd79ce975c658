// A node-to-node service held by each broker shard (channel history,
// presence): it talks to the same service on other nodes through the
// backbone's service messages, follows the set of live peers, and keeps
// its timers on the shard's tick. The broker actor dispatches the
// backbone's service messages by their tag (core/backbone.hpp) and knows
// no more of a service than this.
#pragma once

#include "core/backbone.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::actors {

class cluster_service {
public:
  using clock = std::chrono::steady_clock;

  virtual ~cluster_service() = default;
  /// The tag its messages carry on the backbone.
  virtual service_tag tag() const noexcept = 0;
  /// A message from the same service on node `from`.
  virtual void on_message(const std::string& from, std::string_view payload) = 0;
  /// The live peers changed (sorted ids, this node excluded).
  virtual void on_view(std::vector<std::string> live_peers) = 0;
  /// Peer `node` restarted: it lost what it held.
  virtual void on_restart(const std::string& node) = 0;
  /// Timers: retries, expiries, digests.
  virtual void tick(clock::time_point now) = 0;
};

} // namespace wsnode::actors
