// The inside of presence_table (see presence.hpp): its parts live in
// presence.cpp (local sessions, the channel table, join/leave events,
// queries) and presence_exchange.cpp (deltas, snapshots, digests and
// repairs between nodes, views). Private to those files.
#pragma once

#include "actors/presence.hpp"
#include "actors/presence_counts.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace wsnode::actors {

struct presence_table::impl {
  // What one peer holds of a channel, as its deltas and snapshots said.
  struct member_set {
    std::unordered_set<std::string> users;
    std::uint64_t hash = 0; // xor of user_hash over users
    clock::time_point last_digest{};
    clock::time_point last_query{};
  };
  struct channel {
    std::map<std::string, std::uint32_t, std::less<>> users; // user -> nodes holding it
    std::unordered_map<std::string, std::uint32_t> local;    // user -> local sessions
    std::uint64_t local_hash = 0;
    std::unordered_map<std::string, member_set> remote; // node -> its members
    bool join_leave = false;
  };

  std::string self;
  std::shared_ptr<const namespace_table> ns;
  metrics& m;
  presence_hooks hooks;
  clock::duration digest_interval;
  clock::time_point last_digests{};
  std::unordered_map<std::string, channel> chans;
  std::unordered_map<sid_type, std::vector<std::pair<std::string, std::string>>> by_sid;
  std::vector<std::string> live;
  // snapshot chunks being received: node -> channel -> users so far
  std::unordered_map<std::string, std::unordered_map<std::string, std::unordered_set<std::string>>>
      staged;
  // the channels of presence = "count" namespaces
  presence_counts counts;

  impl(std::string s, std::shared_ptr<const namespace_table> n, metrics& mm, presence_hooks h,
       clock::duration d);
  ~impl();

  bool counted(std::string_view ch) const { return ns->of_channel(ch).presence_count; }

  // ---------------------------------------------------------------- table
  // (presence.cpp)

  channel& chan(const std::string& ch);
  void forget_if_empty(const std::string& ch);
  void event(const std::string& ch, const channel& c, bool join, std::string_view user);
  bool owns(std::string_view ch) const;
  // One more / one fewer node holds `user` in `ch`.
  void inc(const std::string& ch, channel& c, const std::string& user);
  void dec(const std::string& ch, channel& c, const std::string& user);

  void local_add(const std::string& ch, const std::string& user);
  // A local session left `ch` (either kind of namespace).
  void forget(const std::string& ch, const std::string& user);
  void local_remove(const std::string& ch, const std::string& user);

  // ---------------------------------------------------------------- exchange
  // (presence_exchange.cpp)

  void send(const std::string& node, std::string p);
  void to_peers(const std::string& ch, const boost::json::object& o);
  void snapshot_to(const std::string& node, const std::string& ch, const channel& c);

  void remote_add(const std::string& node, const std::string& ch, const std::string& user);
  void remote_remove(const std::string& node, const std::string& ch, const std::string& user);
  // Replaces what `node` holds of `ch` with `users` (a whole snapshot).
  void replace(const std::string& node, const std::string& ch,
               std::unordered_set<std::string>&& users);
  // Everything `node` held leaves (it died or restarted).
  void drop_node(const std::string& node);

  void on_message(const std::string& from, std::string_view p);
  void on_view(std::vector<std::string> peers);
  void on_restart(const std::string& node);
  void tick(clock::time_point now);
};

} // namespace wsnode::actors
