// Channel history across the cluster: who sequences a channel's messages,
// where copies are held, and how requests reach them. One per broker shard,
// for the history channels of that shard; driven by the broker actor (one
// thread, no locks).
//
// Ownership (docs/operations.md "History and recovery"):
// - The nodes are ranked per channel by a hash of (channel, node id)
//   (rendezvous hashing); the first live node owns the channel: it gives
//   offsets, appends to its copy and to `replicas` more copies (the next
//   live nodes in rank), and acknowledges a publish once every replica has
//   it, so that a majority of the configured nodes holds it (owner + 1 of 3).
// - A node becomes owner by acquisition: it takes a new term, larger than
//   any it has seen, and asks every live peer to promise it (a promise
//   rejects appends and copies of older terms from then on). With a
//   majority of promises it adopts the best copy among them (highest copy
//   term, then highest offset), keeps its epoch, and copies it to its
//   replicas before it acknowledges anything new. An owner that sees a
//   newer term steps down (fencing: an old owner can never get an append
//   confirmed once a majority has promised a newer term).
// - No copy anywhere among a majority: the channel starts a new epoch. A
//   node that (re)started within `fresh_window` and holds no copy of the
//   channel does not count towards that majority (it may be a replica that
//   lost its copy in the restart).
// - Reads (recovery, history) go to the owner and see committed messages
//   only; the owner answers one once a majority (itself included) has
//   confirmed after the read arrived that it promised no newer term, so an
//   owner that was replaced without knowing it never answers (a position
//   never goes back within an epoch). Reads arriving together share one
//   confirmation round.
// - No flapping: a node that promised a term to an owner that is alive in
//   its view and was active within `term_hold` refuses newer terms from
//   nodes that rank after that owner (in a bridge, where two nodes cannot
//   hear each other, they would otherwise take the channel from each other
//   in turn); a better-ranked node (back from a restart) takes it over.
// - Promises survive restarts (history/term_store.hpp).
// A single node (no mesh) owns every channel, with no replica.
#pragma once

#include "actors/cluster_service.hpp"
#include "actors/history/log.hpp"
#include "actors/namespaces.hpp"
#include "actors/rank_nodes.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wsnode::actors {

struct history_options {
  std::string node_id = "n1";
  std::size_t cluster_size = 1; ///< configured nodes (this one and its mesh peers)
  std::chrono::milliseconds idempotency_window{300000};
  std::chrono::milliseconds timeout{5000}; ///< a publish or read gives up after this
  /// After a (re)start, how long this node's empty promise does not count
  /// towards a majority (its peers copy its channels to it meanwhile).
  std::chrono::milliseconds fresh_window{3000};
  /// How long after its last commit an owner keeps announcing a channel's top.
  std::chrono::milliseconds tail_window{2000};
  /// A node that promised a term to a live owner refuses newer terms from
  /// others until that owner has been quiet for this long (no flapping).
  std::chrono::milliseconds term_hold{2000};
  /// Where this service keeps the terms it promised ("" = memory only).
  std::string state_file;
  /// Terms at or below this may have been promised by an earlier process.
  std::uint64_t term_floor = 0;
};

/// What the service needs from its broker.
struct history_hooks {
  /// Sends a service message to another node (best effort; may be lost).
  std::function<void(const std::string& node, std::string payload)> send;
  /// A message is committed (this node owns the channel): deliver it to
  /// local subscribers and to the other nodes.
  std::function<void(const std::string& ch, const std::string& ep, std::uint64_t off,
                     const frame_ptr& frame)>
      committed;
  /// This node owns `ch`, whose committed top is `top` in epoch `ep` under
  /// `term`: tell the other nodes (for a while after each write), so that
  /// one whose stream missed the newest messages fills them.
  std::function<void(const std::string& ch, const std::string& ep, std::uint64_t term,
                     std::uint64_t top)>
      announce;
};

/// The outcome of a publish into a history channel.
struct publish_outcome {
  bool ok = false;
  std::uint64_t off = 0;
  std::string error; ///< why, when !ok
};

/// What a read asks for.
struct read_request {
  enum class purpose : std::uint8_t { subscribe, history } kind = purpose::subscribe;
  std::optional<std::string> since_ep; ///< with since_off: recover from there
  std::uint64_t since_off = 0;
  std::optional<std::size_t> limit; ///< history: most messages (default: all held)
};

/// The outcome of a read: the channel's committed position and messages.
struct read_outcome {
  bool ok = false;
  std::string error;
  std::string ep;
  std::uint64_t off = 0;
  std::optional<bool> recovered; ///< subscribe with since: all missed messages follow
  std::vector<frame_ptr> frames;
};

/// Channel history as the broker uses it: publish, read, and the cluster
/// service that keeps it. `history_service` below replicates it over the
/// backbone's service messages; another store (JetStream on NATS) stands in
/// for it behind this interface.
class history_store : public cluster_service {
public:
  using publish_done = std::function<void(publish_outcome)>;
  using read_done = std::function<void(read_outcome)>;

  service_tag tag() const noexcept final { return service_tag::history; }
  /// Publishes `data` (raw JSON) from `from` ("" for the API) into `ch`.
  virtual void publish(const std::string& ch, std::string from, std::string data, std::string key,
                       publish_done done) = 0;
  /// Reads `ch`'s position (and messages) from its owner.
  virtual void read(const std::string& ch, read_request req, read_done done) = 0;
  /// True when the broker sends committed messages to the other nodes
  /// itself; false when the store's engine has its own live feed.
  virtual bool propagates() const noexcept { return true; }
};

class history_service final : public history_store {
public:
  history_service(history_options opts, std::shared_ptr<const namespace_table> ns, metrics& m,
                  history_hooks hooks);
  ~history_service() override;
  history_service(const history_service&) = delete;
  history_service& operator=(const history_service&) = delete;

  void publish(const std::string& ch, std::string from, std::string data, std::string key,
               publish_done done) override;
  void read(const std::string& ch, read_request req, read_done done) override;

  /// A service message from node `from` (see history/service.cpp).
  void on_message(const std::string& from, std::string_view payload) override;
  /// The live peers changed (ids, this node excluded).
  void on_view(std::vector<std::string> live_peers) override;
  /// Peer `node` restarted (it holds nothing any more).
  void on_restart(const std::string& node) override;
  /// Housekeeping: retries, timeouts, history ttl. Call about every 250 ms.
  void tick(clock::time_point now = clock::now()) override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The node count that makes a majority of `cluster_size`.
constexpr std::size_t majority(std::size_t cluster_size) noexcept {
  return cluster_size / 2 + 1;
}

} // namespace wsnode::actors
