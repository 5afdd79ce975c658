// The wire format of history service messages between nodes: the channel
// name, '\n', then one JSON object (Boost.JSON). See history/service.cpp
// for the message types.
#pragma once

#include "actors/history/service.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsnode::actors::wire {

/// A channel's history as one node holds it.
struct copy {
  struct entry {
    std::uint64_t off;
    frame_ptr frame;
    std::chrono::steady_clock::duration age;
  };
  struct key {
    std::string key;
    std::uint64_t off;
    std::chrono::steady_clock::duration age;
  };
  std::string ep;
  std::uint64_t cterm = 0;
  std::uint64_t top = 0;
  std::uint64_t commit = 0;
  std::vector<entry> entries;
  std::vector<key> keys;
};

std::string payload(std::string_view ch, const boost::json::object& msg);
/// Splits a payload; nullopt when it is malformed.
std::optional<std::pair<std::string, boost::json::object>> parse(std::string_view payload);

// Members, with defaults when absent or of another type.
std::string str(const boost::json::object& o, std::string_view key);
std::uint64_t num(const boost::json::object& o, std::string_view key);
bool flag(const boost::json::object& o, std::string_view key);

boost::json::object encode_copy(const copy& c);
copy decode_copy(const boost::json::object& o);
/// An append of `off`; `commit` tells the replica what is committed (so
/// that a take-over re-sends only what may not have been sent).
boost::json::object encode_append(std::uint64_t term, std::uint64_t off, std::string_view frame,
                                  std::string_view key, std::uint64_t commit);
boost::json::object encode_read(const read_request& r);
read_request decode_read(const boost::json::object& o);
boost::json::object encode_read_outcome(const read_outcome& r);
read_outcome decode_read_outcome(const boost::json::object& o);

} // namespace wsnode::actors::wire
