// Presence of one broker shard, the exchange between nodes (see
// presence.hpp for the design, presence_wire.hpp for the messages): the
// deltas sent to and received from peers, snapshots, digests and the
// repairs they trigger, view changes and restarts. The channel table and
// local sessions: presence.cpp.
#include "actors/presence_detail.hpp"

#include "actors/presence_wire.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <optional>

namespace wsnode::actors {

using namespace presence_wire;

namespace {

/// Users per snapshot message.
constexpr std::size_t snapshot_chunk = 2000;

} // namespace

void presence_table::impl::send(const std::string& node, std::string p) {
  if (hooks.send)
    hooks.send(node, std::move(p));
}

void presence_table::impl::to_peers(const std::string& ch, const boost::json::object& o) {
  if (live.empty() || !hooks.send)
    return;
  auto p = payload(ch, o);
  for (const auto& node : live)
    send(node, p);
}

void presence_table::impl::snapshot_to(const std::string& node, const std::string& ch,
                                       const channel& c) {
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

void presence_table::impl::remote_add(const std::string& node, const std::string& ch,
                                      const std::string& user) {
  auto& c = chan(ch);
  auto& ms = c.remote[node];
  if (ms.users.empty())
    ms.last_digest = clock::now();
  if (ms.users.insert(user).second) {
    ms.hash ^= user_hash(user);
    inc(ch, c, user);
  }
}

void presence_table::impl::remote_remove(const std::string& node, const std::string& ch,
                                         const std::string& user) {
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

void presence_table::impl::replace(const std::string& node, const std::string& ch,
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

void presence_table::impl::drop_node(const std::string& node) {
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

void presence_table::impl::on_message(const std::string& from, std::string_view p) {
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

void presence_table::impl::on_view(std::vector<std::string> peers) {
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

void presence_table::impl::on_restart(const std::string& node) {
  drop_node(node);
  counts.drop_node(node);
  if (std::binary_search(live.begin(), live.end(), node))
    for (const auto& [name, c] : chans)
      if (!c.local.empty())
        snapshot_to(node, name, c);
}

void presence_table::impl::tick(clock::time_point now) {
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
