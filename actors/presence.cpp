// Presence of one broker shard (see presence.hpp for the design; the wire
// format of its service messages: presence_wire.hpp).
#include "actors/presence.hpp"

#include "actors/presence_counts.hpp"
#include "actors/presence_wire.hpp"
#include "actors/rank_nodes.hpp"
#include "protocol/codec.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <optional>

namespace wsnode::actors {

using namespace presence_wire;

namespace {

/// Users per snapshot message.
constexpr std::size_t snapshot_chunk = 2000;
/// Largest page: users per presence reply at most.
constexpr std::size_t max_page = 1000;

} // namespace

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
       clock::duration d)
    : self(std::move(s)), ns(std::move(n)), m(mm), hooks(std::move(h)), digest_interval(d),
      counts(
          [this](const std::string& node, const std::string& ch, std::uint64_t count) {
            send(node, payload(ch, {{"t", "c"}, {"n", count}}));
          },
          d) {}

  bool counted(std::string_view ch) const { return ns->of_channel(ch).presence_count; }

  ~impl() {
    std::int64_t users = 0;
    for (auto& [name, c] : chans)
      users += static_cast<std::int64_t>(c.users.size());
    bump(m.presence_channels, -static_cast<std::int64_t>(chans.size()));
    bump(m.presence_members, -users);
  }

  channel& chan(const std::string& ch) {
    auto [it, fresh] = chans.try_emplace(ch);
    if (fresh) {
      it->second.join_leave = ns->of_channel(ch).join_leave;
      bump(m.presence_channels, 1);
    }
    return it->second;
  }

  void forget_if_empty(const std::string& ch) {
    auto it = chans.find(ch);
    if (it != chans.end() && it->second.users.empty() && it->second.local.empty() &&
        it->second.remote.empty()) {
      chans.erase(it);
      bump(m.presence_channels, -1);
    }
  }

  void event(const std::string& ch, const channel& c, bool join, std::string_view user) {
    bump(join ? m.presence_joins : m.presence_leaves, 1);
    if (c.join_leave && hooks.deliver)
      hooks.deliver(ch, make_frame(join ? protocol::encode_join(ch, user)
                                        : protocol::encode_leave(ch, user)));
    // every node sees the same join or leave; the channel's owner alone
    // tells the application
    if (hooks.webhook && owns(ch))
      hooks.webhook(ch, user, join);
  }

  bool owns(std::string_view ch) const {
    std::vector<std::string> nodes = live;
    nodes.push_back(self);
    return rank_nodes(ch, std::move(nodes)).front() == self;
  }

  // One more / one fewer node holds `user` in `ch`.
  void inc(const std::string& ch, channel& c, const std::string& user) {
    auto [it, fresh] = c.users.try_emplace(user, 0);
    if (++it->second == 1) {
      bump(m.presence_members, 1);
      event(ch, c, true, user);
    }
  }
  void dec(const std::string& ch, channel& c, const std::string& user) {
    auto it = c.users.find(user);
    if (it == c.users.end())
      return;
    if (--it->second == 0) {
      c.users.erase(it);
      bump(m.presence_members, -1);
      event(ch, c, false, user);
    }
  }

  void send(const std::string& node, std::string p) {
    if (hooks.send)
      hooks.send(node, std::move(p));
  }
  void to_peers(const std::string& ch, const boost::json::object& o) {
    if (live.empty() || !hooks.send)
      return;
    auto p = payload(ch, o);
    for (const auto& node : live)
      send(node, p);
  }

  void snapshot_to(const std::string& node, const std::string& ch, const channel& c) {
    boost::json::array users;
    bool first = true;
    auto flush = [&](bool last) {
      boost::json::object o{{"t", "s"}, {"us", std::move(users)}, {"first", first}, {"last", last}};
      send(node, payload(ch, o));
      users = {};
      first = false;
    };
    for (const auto& [u, n] : c.local) {
      users.emplace_back(u);
      if (users.size() >= snapshot_chunk)
        flush(false);
    }
    flush(true);
  }

  void local_add(const std::string& ch, const std::string& user) {
    auto& c = chan(ch);
    if (++c.local[user] != 1)
      return;
    c.local_hash ^= user_hash(user);
    inc(ch, c, user);
    to_peers(ch, {{"t", "j"}, {"u", user}});
  }

  // A local session left `ch` (either kind of namespace).
  void forget(const std::string& ch, const std::string& user) {
    if (counted(ch))
      counts.remove(ch);
    else
      local_remove(ch, user);
  }

  void local_remove(const std::string& ch, const std::string& user) {
    auto it = chans.find(ch);
    if (it == chans.end())
      return;
    auto& c = it->second;
    auto l = c.local.find(user);
    if (l == c.local.end() || --l->second > 0)
      return;
    c.local.erase(l);
    c.local_hash ^= user_hash(user);
    dec(ch, c, user);
    to_peers(ch, {{"t", "l"}, {"u", user}});
    forget_if_empty(ch);
  }

  void remote_add(const std::string& node, const std::string& ch, const std::string& user) {
    auto& c = chan(ch);
    auto& ms = c.remote[node];
    if (ms.users.empty())
      ms.last_digest = clock::now();
    if (ms.users.insert(user).second) {
      ms.hash ^= user_hash(user);
      inc(ch, c, user);
    }
  }

  void remote_remove(const std::string& node, const std::string& ch, const std::string& user) {
    auto it = chans.find(ch);
    if (it == chans.end())
      return;
    auto& c = it->second;
    auto r = c.remote.find(node);
    if (r == c.remote.end() || r->second.users.erase(user) == 0)
      return;
    r->second.hash ^= user_hash(user);
    if (r->second.users.empty())
      c.remote.erase(r);
    dec(ch, c, user);
    forget_if_empty(ch);
  }

  // Replaces what `node` holds of `ch` with `users` (a whole snapshot).
  void replace(const std::string& node, const std::string& ch,
               std::unordered_set<std::string>&& users) {
    auto& c = chan(ch);
    auto& ms = c.remote[node];
    ms.last_digest = clock::now();
    std::vector<std::string> gone;
    for (const auto& u : ms.users)
      if (!users.contains(u))
        gone.push_back(u);
    std::vector<std::string> fresh;
    for (const auto& u : users)
      if (!ms.users.contains(u))
        fresh.push_back(u);
    for (const auto& u : fresh)
      remote_add(node, ch, u);
    for (const auto& u : gone)
      remote_remove(node, ch, u);
    if (auto it = chans.find(ch); it != chans.end()) {
      auto r = it->second.remote.find(node);
      if (r != it->second.remote.end() && r->second.users.empty())
        it->second.remote.erase(r);
    }
    forget_if_empty(ch);
  }

  // Everything `node` held leaves (it died or restarted).
  void drop_node(const std::string& node) {
    staged.erase(node);
    std::vector<std::string> names;
    for (auto& [name, c] : chans)
      if (c.remote.contains(node))
        names.push_back(name);
    for (const auto& name : names) {
      auto& c = chans.at(name);
      auto users = std::move(c.remote.at(node).users);
      c.remote.erase(node);
      for (const auto& u : users)
        dec(name, c, u);
      forget_if_empty(name);
    }
  }

  void on_message(const std::string& from, std::string_view p) {
    auto nl = p.find('\n');
    if (nl == std::string_view::npos || nl + 1 >= p.size())
      return bump(m.presence_bad_messages, 1);
    std::string ch{p.substr(0, nl)};
    boost::system::error_code ec;
    auto v = boost::json::parse(p.substr(nl + 1), ec);
    if (ec || !v.is_object() || !protocol::valid_channel(ch) || !ns->of_channel(ch).presence)
      return bump(m.presence_bad_messages, 1);
    const auto& o = v.as_object();
    auto t = member_str(o, "t");
    auto now = clock::now();
    if (counted(ch) != (t == "c")) // a count for a member list, or members for a count
      return bump(m.presence_bad_messages, 1);
    if (t == "c") {
      auto n = uint_member(o, "n");
      if (!n)
        return bump(m.presence_bad_messages, 1);
      return counts.on_count(from, ch, *n);
    }
    if (t == "j" || t == "l") {
      auto u = member_str(o, "u");
      if (!protocol::valid_user(u))
        return bump(m.presence_bad_messages, 1);
      return t == "j" ? remote_add(from, ch, u) : remote_remove(from, ch, u);
    }
    if (t == "s") {
      auto& stage = staged[from];
      auto* first = o.if_contains("first");
      if (first && first->is_bool() && first->as_bool())
        stage[ch].clear();
      auto& set = stage[ch];
      if (auto* us = o.if_contains("us"); us && us->is_array())
        for (const auto& u : us->as_array())
          if (u.is_string() && protocol::valid_user(u.as_string()))
            set.emplace(u.as_string());
      auto* last = o.if_contains("last");
      if (last && last->is_bool() && last->as_bool()) {
        auto users = std::move(set);
        stage.erase(ch);
        if (stage.empty())
          staged.erase(from);
        replace(from, ch, std::move(users));
      }
      return;
    }
    if (t == "q") {
      auto it = chans.find(ch);
      static const channel none;
      return snapshot_to(from, ch, it == chans.end() ? none : it->second);
    }
    if (t == "d") {
      auto n = uint_member(o, "n");
      auto h = uint_member(o, "h");
      if (!n || !h)
        return bump(m.presence_bad_messages, 1);
      auto count = *n;
      auto hash = *h;
      auto it = chans.find(ch);
      const member_set* ms = nullptr;
      if (it != chans.end())
        if (auto r = it->second.remote.find(from); r != it->second.remote.end())
          ms = &r->second;
      if (ms && ms->users.size() == count && ms->hash == hash) {
        it->second.remote.at(from).last_digest = now;
        return;
      }
      if (count == 0 && !ms)
        return;
      auto& c = chan(ch);
      auto& mine = c.remote[from];
      mine.last_digest = now;
      if (now - mine.last_query >= digest_interval) {
        mine.last_query = now;
        bump(m.presence_resyncs, 1);
        send(from, payload(ch, {{"t", "q"}}));
      }
      if (mine.users.empty() && count == 0)
        c.remote.erase(from);
      return;
    }
    bump(m.presence_bad_messages, 1);
  }

  void on_view(std::vector<std::string> peers) {
    std::sort(peers.begin(), peers.end());
    std::vector<std::string> gone;
    for (const auto& node : live)
      if (!std::binary_search(peers.begin(), peers.end(), node))
        gone.push_back(node);
    std::vector<std::string> joined;
    for (const auto& node : peers)
      if (!std::binary_search(live.begin(), live.end(), node))
        joined.push_back(node);
    live = std::move(peers);
    // after the view changed: a channel whose owner left has its webhook
    // leaves told by the next owner
    for (const auto& node : gone) {
      drop_node(node);
      counts.drop_node(node);
    }
    for (const auto& node : joined)
      for (const auto& [name, c] : chans)
        if (!c.local.empty())
          snapshot_to(node, name, c);
  }

  void on_restart(const std::string& node) {
    drop_node(node);
    counts.drop_node(node);
    if (std::binary_search(live.begin(), live.end(), node))
      for (const auto& [name, c] : chans)
        if (!c.local.empty())
          snapshot_to(node, name, c);
  }

  void tick(clock::time_point now) {
    if (live.empty() || now - last_digests < digest_interval)
      return;
    last_digests = now;
    counts.tick(live, now);
    std::vector<std::pair<std::string, std::string>> ask; // (node, ch)
    for (auto& [name, c] : chans) {
      if (!c.local.empty())
        to_peers(name, {{"t", "d"}, {"n", c.local.size()}, {"h", c.local_hash}});
      for (auto& [node, ms] : c.remote)
        if (now - ms.last_digest > 3 * digest_interval && now - ms.last_query >= digest_interval) {
          ms.last_query = now;
          ask.emplace_back(node, name);
        }
    }
    for (auto& [node, ch] : ask) {
      bump(m.presence_resyncs, 1);
      send(node, payload(ch, {{"t", "q"}}));
    }
  }
};

presence_table::presence_table(std::string self, std::shared_ptr<const namespace_table> ns,
                               metrics& m, presence_hooks hooks, clock::duration digest_interval)
  : impl_(std::make_unique<impl>(std::move(self), std::move(ns), m, std::move(hooks),
                                 digest_interval)) {}

presence_table::~presence_table() = default;

void presence_table::add(std::string_view ch, sid_type sid, std::string_view user) {
  auto& mine = impl_->by_sid[sid];
  for (const auto& [c, u] : mine)
    if (c == ch)
      return;
  if (impl_->counted(ch)) { // a count: who it is does not matter
    mine.emplace_back(std::string{ch}, std::string{});
    return impl_->counts.add(mine.back().first);
  }
  mine.emplace_back(std::string{ch}, std::string{user});
  impl_->local_add(mine.back().first, mine.back().second);
}

void presence_table::remove(std::string_view ch, sid_type sid) {
  auto it = impl_->by_sid.find(sid);
  if (it == impl_->by_sid.end())
    return;
  auto& mine = it->second;
  auto e = std::find_if(mine.begin(), mine.end(), [&](const auto& p) { return p.first == ch; });
  if (e == mine.end())
    return;
  auto entry = std::move(*e);
  mine.erase(e);
  if (mine.empty())
    impl_->by_sid.erase(it);
  impl_->forget(entry.first, entry.second);
}

void presence_table::leave(sid_type sid) {
  auto it = impl_->by_sid.find(sid);
  if (it == impl_->by_sid.end())
    return;
  auto mine = std::move(it->second);
  impl_->by_sid.erase(it);
  for (const auto& [ch, user] : mine)
    impl_->forget(ch, user);
}

std::size_t presence_table::count(std::string_view ch) const {
  if (impl_->counted(ch))
    return impl_->counts.count(ch);
  auto it = impl_->chans.find(std::string{ch});
  return it == impl_->chans.end() ? 0 : it->second.users.size();
}

std::string presence_table::page(std::string_view id, std::string_view ch, std::size_t limit,
                                 std::string_view cursor, bool api, std::size_t max_bytes) const {
  if (impl_->counted(ch)) // counts only: an empty member list, no cursor
    return protocol::encode_presence(id, ch, impl_->counts.count(ch), {}, {}, api);
  std::vector<std::string_view> users;
  std::string next;
  auto it = impl_->chans.find(std::string{ch});
  std::size_t count = 0;
  if (it != impl_->chans.end()) {
    const auto& all = it->second.users;
    count = all.size();
    limit = std::min(limit, max_page);
    // room for the envelope (op, id, ch, count, cursor) and each user's quotes
    std::size_t budget = max_bytes > 256 + ch.size() ? max_bytes - 256 - ch.size() : 0;
    auto u = cursor.empty() ? all.begin() : all.upper_bound(cursor);
    for (; u != all.end() && users.size() < limit; ++u) {
      if (u->first.size() + 3 > budget)
        break;
      budget -= u->first.size() + 3;
      users.push_back(u->first);
    }
    if (u != all.end() && !users.empty())
      next = std::string{users.back()};
  }
  return protocol::encode_presence(id, ch, count, users, next, api);
}

void presence_table::on_message(const std::string& from, std::string_view payload) {
  impl_->on_message(from, payload);
}

void presence_table::on_view(std::vector<std::string> live) {
  impl_->on_view(std::move(live));
}

void presence_table::on_restart(const std::string& node) {
  impl_->on_restart(node);
}

void presence_table::tick(clock::time_point now) {
  impl_->tick(now);
}

} // namespace wsnode::actors
