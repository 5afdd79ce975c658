// Rendezvous hashing: the nodes ranked for a name (a channel, a user), the
// same on every node that sees the same set. The first ranks owns the name
// (history, occupancy); a name's owner changes only when its owner leaves
// or a node ranking before it joins.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::actors {

namespace rank_detail {

// FNV-1a of (a, NUL, b): stable across builds and platforms, unlike std::hash.
inline std::uint64_t fnv1a(std::string_view a, std::string_view b) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(a);
  mix(std::string_view{"\0", 1});
  mix(b);
  return h;
}

} // namespace rank_detail

/// The nodes ordered for `name` (rendezvous hashing): index 0 owns it.
inline std::vector<std::string> rank_nodes(std::string_view name, std::vector<std::string> nodes) {
  std::sort(nodes.begin(), nodes.end(), [&](const std::string& x, const std::string& y) {
    auto hx = rank_detail::fnv1a(name, x);
    auto hy = rank_detail::fnv1a(name, y);
    return hx != hy ? hx > hy : x < y;
  });
  return nodes;
}

} // namespace wsnode::actors
