// A client session: the owner of one connection's state (identity,
// subscriptions, limits). It parses and validates every client frame,
// answers acks/errors/pongs itself and hands pub/send/sub/unsub to the
// broker actor. Deliveries from the broker go straight to the connection's
// sink, not through the session.
//
// Threading: a session is a plain object that lives on its connection's io
// thread (transport calls it one call at a time); it talks to the broker by
// message, and the broker answers through `frame_sink::notify`, which
// transport hands back on the same thread. An idle connection so costs no
// actor, no mailbox and no scheduling.
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

/// A fresh session: the handler transport feeds, and its id.
struct new_session {
  std::unique_ptr<session_handler> handler;
  std::uint64_t sid = 0;
};

/// Makes the session of one upgraded connection: it joins `broker`, which
/// sends `hello` once the user is reachable from every node. The session
/// leaves the broker when the connection closes or the handler is
/// destroyed. `sink` must outlive the handler.
new_session make_session(std::shared_ptr<const session_config> cfg, metrics& m,
                         const caf::actor& broker, const session_identity& who, sink_ptr sink);

} // namespace wsnode
