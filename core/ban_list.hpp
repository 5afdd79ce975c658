// Users the application banned (/api/disconnect with ban_ms): the node's
// desk writes (on every node that heard the call), the upgrade reads
// before the 101. Thread-safe; an entry goes once its time has passed.
#pragma once

#include "core/string_hash.hpp"

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace wsnode {

class ban_list {
public:
  using clock = std::chrono::steady_clock;

  /// `user`'s new connections are refused until `until` (a later ban wins).
  void ban(std::string user, clock::time_point until) {
    std::lock_guard lock{mu_};
    prune(clock::now());
    auto& t = until_[std::move(user)];
    t = std::max(t, until);
  }
  /// True while `user` is banned.
  bool banned(std::string_view user) const {
    std::lock_guard lock{mu_};
    if (until_.empty())
      return false;
    auto it = until_.find(user);
    return it != until_.end() && clock::now() < it->second;
  }

private:
  // Called on each ban, so that the table holds only bans still running
  // (plus those that ended since the last ban).
  void prune(clock::time_point now) {
    std::erase_if(until_, [now](const auto& e) { return e.second <= now; });
  }
  mutable std::mutex mu_;
  std::unordered_map<std::string, clock::time_point, string_hash, std::equal_to<>> until_;
};

} // namespace wsnode
