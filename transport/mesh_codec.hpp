// The mesh wire format: topics, the envelope of every mesh message, and
// per-(origin, topic) sequence tracking. Pure functions and a plain class;
// no sockets (unit-tested on their own).
//
// A mesh message is three ZeroMQ frames: [topic][envelope][payload].
//   topic     "c:<channel>|", "u:<user>|", or a control topic "!hb|", "!ok|".
//             '|' cannot occur in names, so the SUB prefix match of
//             "c:room:4|" never matches "c:room:42|".
//   envelope  version (1 byte) | epoch (u64 LE) | seq (u64 LE) | origin
//             length (1 byte) | origin node id. `epoch` is random per process
//             start; `seq` counts per (origin, topic).
//   payload   the encoded client frame, forwarded without re-encoding; for
//             "!ok|" the topics whose subscriptions are confirmed ('\n'
//             between); for "!hb|" the ids of the peers the sender hears
//             (',' between).
#pragma once

#include "core/backbone.hpp"
#include "core/string_hash.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace wsnode::transport::mesh {

inline constexpr std::string_view heartbeat_topic = "!hb|";
inline constexpr std::string_view confirm_topic = "!ok|";
/// Every node subscribes to this prefix: all control topics.
inline constexpr std::string_view control_prefix = "!";

/// "c:room:1|" or "u:alice|".
std::string encode_topic(topic_kind kind, std::string_view name);

/// Splits a data topic; nullopt for control topics and malformed ones.
struct parsed_topic {
  topic_kind kind;
  std::string_view name;
};
std::optional<parsed_topic> decode_topic(std::string_view topic);

struct envelope {
  std::string origin;
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
};

/// Serializes an envelope (origin: 1-255 bytes).
std::string encode_envelope(const envelope& e);
/// Parses an envelope; nullopt when malformed or of another version.
std::optional<envelope> decode_envelope(std::string_view bytes);

/// Tracks the last sequence number seen per (origin, topic) to count
/// messages lost between nodes and to drop duplicates. Not thread-safe.
class seq_tracker {
public:
  struct verdict {
    bool deliver = true;      ///< false for a duplicate or older message
    std::uint64_t missed = 0; ///< messages skipped before this one
  };

  /// Records `seq` of `topic` from `origin` (which started at `epoch`). The
  /// first message of a topic (or of a new epoch) sets the baseline.
  verdict observe(std::string_view origin, std::uint64_t epoch, std::string_view topic,
                  std::uint64_t seq);
  /// Forgets `topic` (this node unsubscribed: the next message is a baseline).
  void forget_topic(std::string_view topic);
  /// Number of (origin, topic) pairs tracked.
  std::size_t size() const;

private:
  struct origin_state {
    std::uint64_t epoch = 0;
    std::unordered_map<std::string, std::uint64_t, string_hash, std::equal_to<>> last;
  };
  std::unordered_map<std::string, origin_state, string_hash, std::equal_to<>> origins_;
};

} // namespace wsnode::transport::mesh
