// The node's desk: one actor per node for what concerns the whole node
// rather than one channel's shard. It answers the server API's
// cluster-wide calls (core/ports.hpp `cluster_api`: it asks every live
// node's desk over the backbone and merges their parts, see
// actors/cluster_answers.hpp) and keeps the node's share of the cluster's
// occupancy (actors/occupancy.hpp: occupied / vacated / undelivered).
//
// Its backbone messages carry service_tag::cluster and an empty channel
// line ("\n" + body); the node's shard router hands them, and every view
// change and restart, to the desk.
#pragma once

#include "actors/broker.hpp"
#include "core/backbone.hpp"
#include "core/ban_list.hpp"
#include "core/events.hpp"
#include "core/metrics.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace wsnode::actors {

struct desk_options {
  std::string node_id = "n1";
  std::string version;
  /// How long the desk waits for the other nodes' parts; those not in by
  /// then are listed as missing.
  std::chrono::milliseconds timeout{2500};
  std::shared_ptr<ban_list> bans;     ///< never null
  std::shared_ptr<event_port> events; ///< null: no webhooks
};

/// Spawns the desk. Shards report local occupancy to it by
/// atoms::occupancy (see desk_occupancy_fn).
caf::actor spawn_desk(caf::actor_system& sys, metrics& m, std::shared_ptr<backbone> bb,
                      std::shared_ptr<const broker_set> brokers, desk_options opts);

/// What the shards call when a channel's first local subscriber comes or
/// its last goes, or (kind user) a user's first session or last: a message
/// to the desk. Null when no configured event needs it. `desk` is read at
/// the first call (set it before the first session opens).
broker_core::occupancy_fn desk_occupancy_fn(std::shared_ptr<caf::actor> desk,
                                            const event_port* events,
                                            std::shared_ptr<const namespace_table> ns);

} // namespace wsnode::actors
