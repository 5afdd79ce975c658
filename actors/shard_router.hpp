// The node's side of `backbone_events`: what a backbone reports becomes a
// message to the broker shard that owns the topic (or to every shard, for
// changes of the cluster's view). The backbone calls it on its own thread;
// each call is one asynchronous send, never a wait.
#pragma once

#include "core/backbone.hpp"

#include <caf/actor.hpp>

#include <memory>

namespace wsnode::actors {

class broker_set;

/// Events routed to `brokers`' shards by topic (a service message by the
/// channel its payload names first), and to `desk` (actors/cluster_desk.hpp)
/// the desk's service messages; view changes and restarts go to both.
std::shared_ptr<backbone_events> route_to_shards(std::shared_ptr<const broker_set> brokers,
                                                 caf::actor desk);

} // namespace wsnode::actors
