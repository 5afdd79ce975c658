// A client session: one CAF actor per upgraded connection, the owner of
// the connection's state (identity, subscriptions, rate limit and error
// budget, replies in command order, commands held until `hello`). It
// parses and validates every client message, answers acks/errors/pongs
// itself and hands pub/send/sub/unsub to the broker actor. In a namespace
// with history, `sub`, `pub` and `history` are answered by the channel's
// shard (position, offset, messages) and the session puts the answer in
// its place among the replies; a `sub`'s live messages are held by the
// broker until the session has sent the ack and the replayed messages
// (see actors/broker_history.cpp).
//
// Two paths meet at the connection's frame_sink:
// - control: transport hands the actor what it reads (one actor message
//   per read, through the `session_handler` that make_session returns);
//   the broker shards answer the actor by message (joined, a subscription
//   live, history and presence answers); the actor answers the client
//   through the sink, in command order (actors/reply_order.hpp).
// - fast lane: deliveries (msg, dm) never pass through the actor. The
//   broker encodes a frame once and hands it straight to the sinks of the
//   subscribers, grouped by I/O thread (transport/delivery_lane.hpp), as
//   Phoenix's channels "fastlane" broadcasts past the channel processes.
#pragma once

#include "actors/namespaces.hpp"
#include "actors/rate_limiter.hpp"
#include "core/events.hpp"
#include "core/hooks.hpp"
#include "core/live.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"
#include "protocol/auth_token.hpp"
#include "protocol/codec.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wsnode::actors {

class broker_set;

/// Per-node settings every session applies (immutable, shared; a reload
/// makes a new version, see session_env::current).
struct session_config {
  std::string node_id = "n1";
  protocol::parse_limits limits;
  double messages_per_second = 100; ///< rate limit; <= 0 disables it
  double burst = 200;
  double max_errors = 30; ///< err replies allowed per error_window
  std::chrono::milliseconds error_window{10000};
  std::size_t max_subscriptions = 512;
  std::shared_ptr<const namespace_table> namespaces = std::make_shared<const namespace_table>();
  /// Verifies subscription and refresh tokens; null in dev mode.
  std::shared_ptr<const protocol::token_verifier> verifier;
  /// How long past its token's `exp` a connection may stay unrefreshed.
  std::chrono::milliseconds expiry_grace{30000};
};

/// What every session of a node shares: its settings, the limits derived
/// from them, the metrics and the brokers. One per node and reload, so
/// that a session holds one pointer instead of each part.
struct session_env {
  session_env(session_config c, metrics& mm, std::shared_ptr<const broker_set> b,
              std::shared_ptr<hook_port> h = nullptr, std::shared_ptr<event_port> e = nullptr);
  /// The node's current version (null: never reloaded). A session checks
  /// it when a handler starts and moves to a newer one there, so that one
  /// message is judged by one version; a reload reaches every session
  /// without a message to each. Outlives every session (the node's).
  const live<session_env>* current = nullptr;
  session_config cfg;
  metrics& m;
  std::shared_ptr<const broker_set> brokers;
  std::shared_ptr<hook_port> hooks;   ///< the application's hooks; null: none configured
  std::shared_ptr<event_port> events; ///< webhooks; null: none configured
  bucket_limits rate;                 ///< messages_per_second, burst
  bucket_limits errors;               ///< max_errors per error_window
};

/// A fresh session: the handler transport feeds, and its id.
struct new_session {
  std::unique_ptr<session_handler> handler;
  std::uint64_t sid = 0;
};

/// Spawns the session actor of one upgraded connection: it joins the
/// broker shard of its user (see broker_set), which sends `hello` once the
/// user is reachable from every node. The returned handler (transport's
/// side) feeds the actor; the actor leaves the brokers and exits when the
/// connection closes (`on_closed`) or the handler is destroyed. It holds
/// `sink` until it has exited.
new_session make_session(caf::actor_system& sys, std::shared_ptr<const session_env> env,
                         const session_identity& who, sink_ptr sink);

} // namespace wsnode::actors
