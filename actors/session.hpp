// The session actor: one per WebSocket connection. It owns the session's
// state (identity, subscriptions, limits), parses and validates every client
// frame, answers acks/errors/pongs itself and hands pub/send/sub/unsub to
// the broker. Deliveries from the broker go straight to the connection's
// sink, not through this actor.
#pragma once

#include "actors/metrics.hpp"
#include "actors/ports.hpp"
#include "protocol/codec.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wsnode {

/// Per-node settings every session applies (immutable, shared).
struct session_config {
  std::string node_id = "n1";
  protocol::parse_limits limits;
  double messages_per_second = 100; ///< rate limit; <= 0 disables it
  double burst = 200;
  double max_errors = 30; ///< err replies allowed per error_window
  std::chrono::milliseconds error_window{10000};
  std::size_t max_subscriptions = 512;
  std::vector<std::string> readonly_namespaces; ///< clients may not pub here
};

/// A freshly spawned session: the handler transport feeds, and its id.
struct spawned_session {
  std::unique_ptr<session_handler> handler;
  std::uint64_t sid = 0;
};

/// Spawns the session actor for one upgraded connection; it joins `broker`
/// and sends `hello`. The actor lives until transport reports the connection
/// closed (or the handler is destroyed).
spawned_session spawn_session(caf::actor_system& sys, std::shared_ptr<const session_config> cfg,
                              metrics& m, const caf::actor& broker, const session_identity& who,
                              sink_ptr sink);

} // namespace wsnode
