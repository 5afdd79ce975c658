#include "actors/presence_counts.hpp"

#include <algorithm>

namespace wsnode::actors {

void presence_counts::remove(const std::string& ch) {
  auto it = chans_.find(ch);
  if (it == chans_.end() || it->second.local == 0)
    return;
  --it->second.local;
  forget_if_empty(it);
}

std::uint64_t presence_counts::count(std::string_view ch) const {
  auto it = chans_.find(std::string{ch});
  if (it == chans_.end())
    return 0;
  auto n = it->second.local;
  for (const auto& [node, r] : it->second.remote)
    n += r.n;
  return n;
}

void presence_counts::on_count(const std::string& node, const std::string& ch, std::uint64_t n) {
  if (n == 0) {
    if (auto it = chans_.find(ch); it != chans_.end()) {
      it->second.remote.erase(node);
      forget_if_empty(it);
    }
    return;
  }
  chans_[ch].remote[node] = {n, last_tick_};
}

void presence_counts::drop_node(const std::string& node) {
  std::erase(told_, node);
  for (auto it = chans_.begin(); it != chans_.end();) {
    auto next = std::next(it);
    it->second.remote.erase(node);
    forget_if_empty(it);
    it = next;
  }
}

void presence_counts::tick(const std::vector<std::string>& live, clock::time_point now) {
  last_tick_ = now;
  std::vector<std::string> fresh; // peers that never got our counts
  for (const auto& node : live)
    if (!std::binary_search(told_.begin(), told_.end(), node))
      fresh.push_back(node);
  told_ = live;
  for (auto it = chans_.begin(); it != chans_.end();) {
    auto next = std::next(it);
    auto& c = it->second;
    for (auto r = c.remote.begin(); r != c.remote.end();)
      r = now - r->second.heard > expire_intervals * interval_ ? c.remote.erase(r) : std::next(r);
    bool due = c.local != c.sent || ++c.since_sent >= refresh_intervals;
    for (const auto& node : due ? live : fresh)
      if (c.local > 0 || c.sent > 0)
        send_(node, it->first, c.local);
    if (due) {
      c.sent = c.local;
      c.since_sent = 0;
    }
    forget_if_empty(it);
    it = next;
  }
}

void presence_counts::forget_if_empty(std::unordered_map<std::string, channel>::iterator it) {
  const auto& c = it->second;
  if (c.local == 0 && c.sent == 0 && c.remote.empty())
    chans_.erase(it);
}

} // namespace wsnode::actors
