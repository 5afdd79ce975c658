// Presence: who is subscribed to a channel anywhere in the cluster, for
// namespaces with `presence = true` (docs/protocol.md "Presence"); for
// `presence = "count"`, only how many sessions (presence_counts.hpp).
//
// One presence_table per broker shard, holding the channels of that shard.
// Every node tells every live peer when a user's first local session enters
// a channel or its last one leaves (deltas on the mesh's per-node topics),
// so each node holds the whole cluster's members of its presence channels:
// a count is O(1) and a page is read locally, with no request across the
// mesh. Each node also decides join/leave events for its own subscribers
// from the same deltas: a user's first node entering / last node leaving.
//
// What keeps the copies right:
// - a peer that becomes live (new, back, restarted) gets a snapshot of this
//   node's members of every presence channel;
// - a peer that is gone from the view (no heartbeat for 3 intervals) or
//   restarted has its members removed at once, with `leave` events;
// - every digest_interval each node sends, per channel where it has
//   members, a digest (count and hash of its members) to each peer; a peer
//   whose copy differs, or that holds members of a node that sent no digest
//   for 3 intervals, asks that node for a snapshot (a lost delta heals).
#pragma once

#include "actors/cluster_service.hpp"
#include "actors/namespaces.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace wsnode::actors {

/// The first byte after the channel line of a presence service message
/// (history service messages start with '{').
inline constexpr char presence_tag = 'P';

struct presence_hooks {
  /// Sends a service message to one node (best effort).
  std::function<void(const std::string& node, std::string payload)> send;
  /// Hands a join/leave frame to the local subscribers of `ch`.
  std::function<void(const std::string& ch, const frame_ptr& frame)> deliver;
  /// The `join` / `leave` webhook: a user's first session anywhere in the
  /// cluster entered `ch`, or its last left; called on the channel's owner
  /// node only (rendezvous ranking), so once per cluster. Empty: none.
  std::function<void(const std::string& ch, std::string_view user, bool join)> webhook;
};

class presence_table final : public cluster_service {
public:
  using sid_type = std::uint64_t;

  presence_table(std::string self, std::shared_ptr<const namespace_table> ns, metrics& m,
                 presence_hooks hooks, clock::duration digest_interval = std::chrono::seconds(2));
  ~presence_table() override;
  presence_table(const presence_table&) = delete;
  presence_table& operator=(const presence_table&) = delete;

  // ---- local sessions
  /// Session `sid` of `user` subscribed to `ch` (idempotent).
  void add(std::string_view ch, sid_type sid, std::string_view user);
  /// Session `sid` left `ch` (no-op when it was not in it).
  void remove(std::string_view ch, sid_type sid);
  /// Session `sid` ended: it leaves every channel.
  void leave(sid_type sid);

  // ---- queries
  /// Distinct users of `ch` anywhere in the cluster (as this node knows).
  std::size_t count(std::string_view ch) const;
  /// The presence reply (protocol::encode_presence): at most `limit` users
  /// after `cursor`, in user id order, and no more than `max_bytes` of
  /// frame; a "cursor" member when more follow.
  std::string page(std::string_view id, std::string_view ch, std::size_t limit,
                   std::string_view cursor, bool api, std::size_t max_bytes) const;

  // ---- cluster
  service_tag tag() const noexcept override { return service_tag::presence; }
  void on_message(const std::string& from, std::string_view payload) override;
  /// The live peers (self excluded) changed.
  void on_view(std::vector<std::string> live) override;
  /// `node` restarted: what it held is gone.
  void on_restart(const std::string& node) override;
  /// Digests and their checks; call every few hundred milliseconds.
  void tick(clock::time_point now = clock::now()) override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace wsnode::actors
