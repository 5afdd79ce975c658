// The wire format of presence's service messages (actors/presence.cpp):
// "CH\nP" + a JSON object (Boost.JSON) with "t" = "j" (join: "u"), "l"
// (leave: "u"), "s" (snapshot chunk: "us", "first", "last"), "d" (digest:
// "n", "h"), "q" (ask for a snapshot); in a presence = "count" namespace
// only "c" (the sender's session count: "n"). A peer's message is input: the
// readers never throw (tests/fuzz drives them).
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsnode::actors::presence_wire {

// FNV-1a: the same on every node (std::hash need not be).
inline std::uint64_t user_hash(std::string_view u) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : u) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline std::string payload(std::string_view ch, const boost::json::object& o) {
  std::string out{ch};
  out += '\n';
  out += boost::json::serialize(o);
  return out;
}

inline std::string member_str(const boost::json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string{v->as_string()} : std::string{};
}

// An unsigned integer member; nullopt for anything else (never throws: a
// peer's message is input, found by tests/fuzz).
inline std::optional<std::uint64_t> uint_member(const boost::json::object& o,
                                                std::string_view key) {
  auto* v = o.if_contains(key);
  if (v == nullptr)
    return std::nullopt;
  if (auto* u = v->if_uint64())
    return *u;
  if (auto* i = v->if_int64(); i && *i >= 0)
    return static_cast<std::uint64_t>(*i);
  return std::nullopt;
}

} // namespace wsnode::actors::presence_wire
