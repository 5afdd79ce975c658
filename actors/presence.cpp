// Presence of one broker shard, the local side (see presence.hpp for the
// design): the channel table (which nodes hold which users), the join and
// leave events it decides, the local sessions' bookkeeping and the queries.
// What goes between nodes (deltas, snapshots, digests, repairs, views):
// presence_exchange.cpp; the wire format of its service messages:
// presence_wire.hpp.
#include "actors/presence_detail.hpp"

#include "actors/presence_wire.hpp"
#include "actors/rank_nodes.hpp"
#include "protocol/codec.hpp"

#include <algorithm>

namespace wsnode::actors {

using namespace presence_wire;

namespace {

/// Largest page: users per presence reply at most.
constexpr std::size_t max_page = 1000;

} // namespace

presence_table::impl::impl(std::string s, std::shared_ptr<const namespace_table> n, metrics& mm,
                           presence_hooks h, clock::duration d)
  : self(std::move(s)), ns(std::move(n)), m(mm), hooks(std::move(h)), digest_interval(d),
    counts(
        [this](const std::string& node, const std::string& ch, std::uint64_t count) {
          send(node, payload(ch, {{"t", "c"}, {"n", count}}));
        },
        d) {}

presence_table::impl::~impl() {
  std::int64_t users = 0;
  for (auto& [name, c] : chans)
    users += static_cast<std::int64_t>(c.users.size());
  bump(m.presence_channels, -static_cast<std::int64_t>(chans.size()));
  bump(m.presence_members, -users);
}

presence_table::impl::channel& presence_table::impl::chan(const std::string& ch) {
  auto [it, fresh] = chans.try_emplace(ch);
  if (fresh) {
    it->second.join_leave = ns->of_channel(ch).join_leave;
    bump(m.presence_channels, 1);
  }
  return it->second;
}

void presence_table::impl::forget_if_empty(const std::string& ch) {
  auto it = chans.find(ch);
  if (it != chans.end() && it->second.users.empty() && it->second.local.empty() &&
      it->second.remote.empty()) {
    chans.erase(it);
    bump(m.presence_channels, -1);
  }
}

void presence_table::impl::event(const std::string& ch, const channel& c, bool join,
                                 std::string_view user) {
  bump(join ? m.presence_joins : m.presence_leaves, 1);
  if (c.join_leave && hooks.deliver)
    hooks.deliver(
        ch, make_frame(join ? protocol::encode_join(ch, user) : protocol::encode_leave(ch, user)));
  // every node sees the same join or leave; the channel's owner alone
  // tells the application
  if (hooks.webhook && owns(ch))
    hooks.webhook(ch, user, join);
}

bool presence_table::impl::owns(std::string_view ch) const {
  std::vector<std::string> nodes = live;
  nodes.push_back(self);
  return rank_nodes(ch, std::move(nodes)).front() == self;
}

void presence_table::impl::inc(const std::string& ch, channel& c, const std::string& user) {
  auto [it, fresh] = c.users.try_emplace(user, 0);
  if (++it->second == 1) {
    bump(m.presence_members, 1);
    event(ch, c, true, user);
  }
}

void presence_table::impl::dec(const std::string& ch, channel& c, const std::string& user) {
  auto it = c.users.find(user);
  if (it == c.users.end())
    return;
  if (--it->second == 0) {
    c.users.erase(it);
    bump(m.presence_members, -1);
    event(ch, c, false, user);
  }
}

void presence_table::impl::local_add(const std::string& ch, const std::string& user) {
  auto& c = chan(ch);
  if (++c.local[user] != 1)
    return;
  c.local_hash ^= user_hash(user);
  inc(ch, c, user);
  to_peers(ch, {{"t", "j"}, {"u", user}});
}

void presence_table::impl::forget(const std::string& ch, const std::string& user) {
  if (counted(ch))
    counts.remove(ch);
  else
    local_remove(ch, user);
}

void presence_table::impl::local_remove(const std::string& ch, const std::string& user) {
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

} // namespace wsnode::actors
