#include "transport/mesh_peers.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace wsnode::transport::mesh {

peer_table::change peer_table::heard(std::string_view origin, std::uint64_t epoch,
                                     clock::time_point now) {
  auto it = peers_.find(origin);
  change c = change::none;
  if (it == peers_.end()) {
    it = peers_.emplace(std::string{origin}, peer{}).first;
    c = change::up;
  } else if (it->second.epoch != epoch) {
    c = change::restarted;
  } else if (!heard_lately(it->second, now)) {
    c = change::back;
  }
  it->second.epoch = epoch;
  it->second.last_seen = now;
  it->second.lost = false;
  return c;
}

bool peer_table::hears(std::string_view origin, std::string_view list, std::string_view self) {
  auto it = peers_.find(origin);
  if (it == peers_.end())
    return false;
  bool found = false;
  while (!list.empty() && !found) {
    auto comma = list.find(',');
    found = list.substr(0, comma) == self;
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  bool changed = it->second.hears_me != found;
  it->second.hears_me = found;
  return changed;
}

std::string peer_table::heard_list(clock::time_point now) const {
  std::vector<std::string_view> ids;
  for (const auto& [id, p] : peers_)
    if (heard_lately(p, now))
      ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::string out;
  for (auto id : ids) {
    if (!out.empty())
      out += ',';
    out += id;
  }
  return out;
}

bool peer_table::lost(std::string_view id, clock::time_point now) {
  auto it = peers_.find(id);
  if (it == peers_.end())
    return false;
  bool was = alive(it->second, now);
  it->second.lost = true;
  return was;
}

bool peer_table::alive(std::string_view id, clock::time_point now) const {
  auto it = peers_.find(id);
  return it != peers_.end() && alive(it->second, now);
}

bool peer_table::all_live_in(const std::set<std::string, std::less<>>& ids,
                             clock::time_point now) const {
  for (const auto& [id, p] : peers_)
    if (alive(p, now) && !ids.contains(id))
      return false;
  return true;
}

std::vector<std::string> peer_table::live(clock::time_point now) const {
  std::vector<std::string> out;
  for (const auto& [id, p] : peers_)
    if (alive(p, now))
      out.push_back(id);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::vector<std::string>> peer_table::view_change(clock::time_point now) {
  auto l = live(now);
  if (l == last_view_)
    return std::nullopt;
  last_view_ = l;
  return l;
}

void peer_table::visit(
    clock::time_point now,
    const std::function<void(const std::string&, bool, clock::duration, bool)>& f) {
  for (auto& [id, p] : peers_) {
    bool a = alive(p, now);
    f(id, a, now - p.last_seen, p.reported_alive);
    p.reported_alive = a;
  }
}

std::string
peer_table::json(clock::time_point now, std::int64_t& up,
                 const std::function<void(const std::string&, std::int64_t)>& went_silent) {
  up = 0;
  std::string out = "[";
  visit(now, [&](const std::string& id, bool a, clock::duration age, bool was_alive) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
    if (a)
      ++up;
    else if (was_alive)
      went_silent(id, ms);
    if (out.size() > 1)
      out += ',';
    out += fmt::format(R"({{"node":"{}","alive":{},"last_seen_ms":{}}})", id, a, ms);
  });
  return out + ']';
}

bool confirmations::complete(const map::iterator& it, const peer_table& peers,
                             clock::time_point now) const {
  return peers.all_live_in(it->second.confirmed_by, now);
}

bool confirmations::add(std::string topic, clock::time_point deadline, const peer_table& peers,
                        clock::time_point now) {
  auto [it, fresh] = pending_.insert_or_assign(topic, waiting{deadline, {}});
  if (complete(it, peers, now)) {
    pending_.erase(it);
    return true;
  }
  deadlines_.emplace_back(deadline, std::move(topic));
  return false;
}

void confirmations::remove(std::string_view topic) {
  if (auto it = pending_.find(topic); it != pending_.end())
    pending_.erase(it);
}

bool confirmations::confirm(std::string_view topic, std::string_view peer, const peer_table& peers,
                            clock::time_point now) {
  auto it = pending_.find(topic);
  if (it == pending_.end())
    return false;
  it->second.confirmed_by.emplace(peer);
  if (!complete(it, peers, now))
    return false;
  pending_.erase(it);
  return true;
}

std::vector<confirmations::done> confirmations::expire(const peer_table& peers,
                                                       clock::time_point now, bool recheck) {
  std::vector<done> out;
  while (!deadlines_.empty() && deadlines_.front().first <= now) {
    auto it = pending_.find(deadlines_.front().second);
    // a topic waits under its latest deadline only (subscribed again since)
    if (it != pending_.end() && it->second.deadline == deadlines_.front().first) {
      out.push_back({it->first, true});
      pending_.erase(it);
    }
    deadlines_.pop_front();
  }
  if (recheck) {
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (complete(it, peers, now)) {
        out.push_back({it->first, false});
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  return out;
}

clock::time_point confirmations::earliest_deadline() {
  while (!deadlines_.empty() && !pending_.contains(deadlines_.front().second))
    deadlines_.pop_front();
  return deadlines_.empty() ? clock::time_point::max() : deadlines_.front().first;
}

void interest_table::want(std::string_view topic) {
  auto it = topics_.find(topic);
  if (it == topics_.end())
    topics_.emplace(std::string{topic}, entry{});
  else
    it->second.wanted = true;
}

void interest_table::unwant(std::string_view topic, clock::time_point now) {
  if (auto it = topics_.find(topic); it != topics_.end()) {
    it->second.wanted = false;
    it->second.unwanted_since = now;
  }
}

std::optional<std::uint64_t> interest_table::next_seq(std::string_view topic) {
  auto it = topics_.find(topic);
  if (it == topics_.end() || !it->second.wanted)
    return std::nullopt;
  return ++it->second.seq;
}

void interest_table::forget(clock::time_point now) {
  if (now - last_scan_ < std::chrono::minutes(1) && last_scan_ != clock::time_point{})
    return;
  last_scan_ = now;
  std::erase_if(topics_, [&](const auto& e) {
    return !e.second.wanted && now - e.second.unwanted_since > keep_;
  });
}

} // namespace wsnode::transport::mesh
