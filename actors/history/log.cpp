#include "actors/history/log.hpp"

namespace wsnode::actors {

void history_log::append(frame_ptr frame, std::string_view key, clock::time_point now) {
  ++top_;
  bytes_ += frame->size();
  ring_.push_back({top_, std::move(frame), now});
  trim_to_size();
  if (!key.empty())
    remember_key(std::string{key}, top_, now);
}

void history_log::reset(std::string epoch, std::uint64_t top, std::deque<entry> entries) {
  epoch_ = std::move(epoch);
  top_ = top;
  ring_ = std::move(entries);
  bytes_ = 0;
  for (const auto& e : ring_)
    bytes_ += e.frame->size();
  trim_to_size();
  keys_.clear();
  key_order_.clear();
}

void history_log::remember_key(std::string key, std::uint64_t off, clock::time_point at) {
  auto [it, fresh] = keys_.insert_or_assign(key, key_rec{off, at});
  (void)it;
  (void)fresh;
  key_order_.push_back({std::move(key), at});
  while (keys_.size() > limits_.max_keys && !key_order_.empty()) {
    auto k = keys_.find(key_order_.front().key);
    if (k != keys_.end() && k->second.at == key_order_.front().at)
      keys_.erase(k);
    key_order_.pop_front();
  }
}

void history_log::trim_to_size() {
  while (ring_.size() > limits_.size) {
    bytes_ -= ring_.front().frame->size();
    ring_.pop_front();
  }
}

void history_log::expire(clock::time_point now) {
  while (!ring_.empty() && now - ring_.front().at > limits_.ttl) {
    bytes_ -= ring_.front().frame->size();
    ring_.pop_front();
  }
  while (!key_order_.empty() && now - key_order_.front().at > limits_.key_window) {
    auto k = keys_.find(key_order_.front().key);
    if (k != keys_.end() && k->second.at == key_order_.front().at)
      keys_.erase(k);
    key_order_.pop_front();
  }
}

std::optional<std::uint64_t> history_log::find_key(std::string_view key) const {
  auto it = keys_.find(std::string{key});
  if (it == keys_.end())
    return std::nullopt;
  return it->second.off;
}

bool history_log::read_since(std::uint64_t since, std::size_t max, std::uint64_t upto,
                             std::vector<frame_ptr>& out) const {
  upto = std::min(upto, top_);
  if (since > upto || upto - since > max || since + 1 < first())
    return false;
  for (auto it = ring_.begin() + static_cast<std::ptrdiff_t>(since + 1 - first());
       it != ring_.end() && it->off <= upto; ++it)
    out.push_back(it->frame);
  return true;
}

void history_log::newest(std::size_t limit, std::uint64_t upto, std::vector<frame_ptr>& out,
                         std::optional<std::uint64_t> after) const {
  upto = std::min(upto, top_);
  if (limit == 0 || ring_.empty() || upto < first())
    return;
  // [lo, upto] held; with `after`, the oldest `limit` past it, else the newest
  std::uint64_t lo = first();
  if (after) {
    lo = std::max(lo, *after + 1);
    if (lo > upto)
      return;
    upto = std::min<std::uint64_t>(upto, lo + limit - 1);
  } else if (upto - lo + 1 > limit) {
    lo = upto - limit + 1;
  }
  for (auto off = lo; off <= upto; ++off)
    out.push_back(ring_[static_cast<std::size_t>(off - first())].frame);
}

} // namespace wsnode::actors
