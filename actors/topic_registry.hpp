// A two-way index topic -> subscribers and subscriber -> topics.
// Publishing costs O(subscribers of that topic); a topic's entry is freed
// when its last subscriber leaves, so the caller can drop its interest (for
// example, unsubscribe on the mesh). Not thread-safe: one owner (the broker).
#pragma once

#include "core/string_hash.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wsnode::actors {

/// Subscribers are identified by a 64-bit id and carry a `Value` (for the
/// broker, the session's sink) that publish hands to the caller.
template <class Value>
class topic_registry {
public:
  using id_type = std::uint64_t;
  using subscribers = std::unordered_map<id_type, Value>;

  /// Adds `id` to `topic`. Returns true when `topic` had no subscriber before.
  /// Adding an existing pair only replaces its value and returns false.
  bool add(std::string_view topic, id_type id, Value v) {
    auto it = topics_.find(topic);
    bool first = it == topics_.end();
    if (first)
      it = topics_.emplace(std::string{topic}, subscribers{}).first;
    auto [pos, inserted] = it->second.insert_or_assign(id, std::move(v));
    (void)pos;
    if (inserted)
      by_id_[id].push_back(&it->first);
    return first;
  }

  /// Removes `id` from `topic`. Returns true when `topic` became empty.
  bool remove(std::string_view topic, id_type id) {
    auto it = topics_.find(topic);
    if (it == topics_.end() || it->second.erase(id) == 0)
      return false;
    auto own = by_id_.find(id);
    if (own != by_id_.end()) {
      auto& v = own->second;
      v.erase(std::find_if(v.begin(), v.end(), [&](const std::string* t) { return *t == topic; }));
      if (v.empty())
        by_id_.erase(own);
    }
    if (!it->second.empty())
      return false;
    topics_.erase(it);
    return true;
  }

  /// Removes `id` from every topic; calls `on_empty(topic)` for each topic
  /// that became empty.
  template <class F>
  void remove_all(id_type id, F&& on_empty) {
    auto own = by_id_.find(id);
    if (own == by_id_.end())
      return;
    for (const std::string* topic : own->second) {
      auto it = topics_.find(*topic);
      if (it == topics_.end())
        continue;
      it->second.erase(id);
      if (it->second.empty()) {
        on_empty(std::string_view{*topic}); // before the key goes with the entry
        topics_.erase(it);
      }
    }
    by_id_.erase(own);
  }

  /// Returns the subscribers of `topic`, or nullptr when it has none.
  const subscribers* find(std::string_view topic) const {
    auto it = topics_.find(topic);
    return it == topics_.end() ? nullptr : &it->second;
  }

  /// Calls `f(topic, subscriber count)` for every topic, in no order.
  template <class F>
  void for_each_topic(F&& f) const {
    for (const auto& [topic, subs] : topics_)
      f(std::string_view{topic}, subs.size());
  }

  /// Number of topics with at least one subscriber.
  std::size_t topic_count() const noexcept { return topics_.size(); }

  /// Number of topics `id` is in.
  std::size_t count_of(id_type id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? 0 : it->second.size();
  }

  /// Number of subscriber ids with at least one topic.
  std::size_t id_count() const noexcept { return by_id_.size(); }

private:
  std::unordered_map<std::string, subscribers, string_hash, std::equal_to<>> topics_;
  // the keys of topics_ (their nodes never move); an id's entries go before
  // the topic they point to
  std::unordered_map<id_type, std::vector<const std::string*>> by_id_;
};

} // namespace wsnode::actors
