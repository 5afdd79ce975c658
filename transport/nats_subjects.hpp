// The NATS backbone's subjects: what wsnode names (channels, users, node
// ids) becomes one subject token, and back. Pure functions, no I/O (unit
// tested and fuzzed on their own).
//
// NATS splits subjects at '.', treats '*' and '>' as wildcards and ends a
// subject at whitespace; a channel name may hold '.' ("room:a.b"). A token
// keeps [A-Za-z0-9_:@-] and writes every other byte as %XX (upper-case
// hex), so "room:a.b" is "room:a%2Eb" and decoding is exact.
//
// Subjects, under a prefix ([nats] subject_prefix, default "wsnode"):
//   PREFIX.c.TOKEN    a channel's messages (nodes with local interest subscribe)
//   PREFIX.u.TOKEN    a user's direct messages
//   PREFIX.n.NODE     messages to one node: service messages, barriers
//   PREFIX.hb         heartbeats (every node subscribes)
#pragma once

#include "core/backbone.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace wsnode::transport::nats {

/// `name` as one subject token ("" stays "", which no subject accepts).
std::string encode_token(std::string_view name);
/// The name a token encodes; nullopt when it is not one encode_token makes.
std::optional<std::string> decode_token(std::string_view token);

/// PREFIX.c.TOKEN or PREFIX.u.TOKEN.
std::string topic_subject(std::string_view prefix, topic_kind kind, std::string_view name);
/// PREFIX.n.TOKEN: the subject node `node` listens on.
std::string node_subject(std::string_view prefix, std::string_view node);
/// PREFIX.hb.
std::string heartbeat_subject(std::string_view prefix);

/// A topic subject split back; nullopt for any other subject.
struct parsed_subject {
  topic_kind kind;
  std::string name;
};
std::optional<parsed_subject> parse_topic_subject(std::string_view prefix,
                                                  std::string_view subject);

} // namespace wsnode::transport::nats
