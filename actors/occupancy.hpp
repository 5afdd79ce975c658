// Which channels (and users) have subscribers (sessions) anywhere in the
// cluster, told once per cluster: the `occupied` / `vacated` webhooks and
// `undelivered` for a `send` to a user with no session anywhere.
//
// Each name has two keepers: the first two of the live nodes in a
// rendezvous ranking of (name, node id), as for history; the first is its
// owner. Every node tells both keepers when a name's first local holder
// comes or its last goes (a delta, on the backbone's per-node topic, in
// order from each node); each keeper keeps, per name, the set of nodes
// holding it, and the owner emits `occupied` when the set fills and
// `vacated` when it empties: one event per transition for the whole
// cluster, whichever node the subscribers are on.
//
// When the owner goes, the backup ranks first among the rest and owns the
// name with the holders already known: what only the gone owner held is
// vacated by the new owner. When the keepers change (a node joins or
// leaves the view, or restarts), every holder tells its new keepers (a
// sync: no event, the name was occupied already).
//
// Deltas lost on the way heal: every few seconds each node sends each of
// its names' keepers a digest (count and hash) of what it holds there; a
// keeper whose own record of that node differs twice in a row asks it for
// the whole list and replaces its record, announcing what the lost deltas
// would have (docs/operations.md "Webhooks" says what may still be
// missing). Not thread-safe: the node's desk actor owns it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::actors {

struct occupancy_hooks {
  /// Sends a payload (encoded by this class) to another node's table.
  std::function<void(const std::string& node, std::string payload)> send;
  /// A name became held somewhere (true) or nowhere (false) in the cluster
  /// (names are "c:<channel>" or "u:<user>").
  std::function<void(const std::string& name, bool held)> changed;
  /// An undelivered `send` reached the owner of "u:<user>" while no node
  /// holds it: `fields` are the event's (to, data, from).
  std::function<void(std::string fields)> undelivered;
  /// This keeper asked a node for its whole list (digests differed).
  std::function<void()> repair;
};

class occupancy_table {
public:
  using clock = std::chrono::steady_clock;

  occupancy_table(std::string self, occupancy_hooks hooks,
                  clock::duration digest_interval = std::chrono::seconds(5));

  /// This node's first local holder of `name` came (true) or its last went.
  void local(const std::string& name, bool held);
  /// A `send` found no session of `user` here: the owner of "u:<user>"
  /// decides whether it is undelivered anywhere (`fields`: the event's).
  void check_undelivered(const std::string& user, std::string fields);
  /// A payload from `from`'s table. Malformed ones are ignored (false).
  bool on_message(const std::string& from, std::string_view payload);
  /// The live peers (this node excluded) changed.
  void on_view(std::vector<std::string> live);
  /// `node` restarted: it holds nothing it told before.
  void on_restart(const std::string& node);
  /// Digests to the keepers; call about every second.
  void tick(clock::time_point now = clock::now());

  /// Names this node keeps (owns or backs up) with holders.
  std::size_t kept() const noexcept { return holders_.size(); }

private:
  std::vector<std::string> keepers(std::string_view name) const; // owner first
  bool owns(std::string_view name) const;
  bool keeps(std::string_view name) const;
  void apply(const std::string& node, const std::string& name, bool held, bool announce);
  void tell(const std::string& node, char kind, std::string_view name, std::string_view extra = {});
  void drop_node(const std::string& node, bool restarted);
  void sync(const std::string& owner, const std::string& name);
  void on_digest(const std::string& from, std::string_view digest);
  void send_list(const std::string& keeper);
  void end_repair(const std::string& from);

  std::string self_;
  occupancy_hooks hooks_;
  std::vector<std::string> peers_;                                    // live, sorted, self excluded
  std::set<std::string, std::less<>> local_;                          // names held on this node
  std::map<std::string, std::set<std::string>, std::less<>> holders_; // kept names -> nodes
  clock::duration digest_interval_;
  clock::time_point last_digest_{};
  std::map<std::string, int> mismatches_;                  // node -> digests in a row that differed
  std::map<std::string, std::set<std::string>> repairing_; // node -> its list so far
};

} // namespace wsnode::actors
