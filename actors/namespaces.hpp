// Namespaces: per-namespace options from the `[[namespace]]` tables of the
// config (docs/operations.md). A channel's namespace is the part of its
// name before the first ':'; a channel whose namespace has no table gets
// the defaults, which are protocol v1's behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::actors {

/// Who may publish into a namespace's channels.
enum class publish_rule : std::uint8_t {
  anyone,      ///< every connected client (and the HTTP API)
  subscribers, ///< clients subscribed to the channel (and the HTTP API)
  server,      ///< the HTTP API only
};

/// Who may subscribe to a namespace's channels.
enum class subscribe_rule : std::uint8_t {
  anyone, ///< every connected client
  token,  ///< a subscription token or the connection token's `channels` claim
};

struct namespace_options {
  std::string name; ///< "" = channels without ':'
  // history (stream positions, recovery, idempotent publish)
  std::size_t history_size = 0; ///< messages kept per channel; 0 = no history
  std::chrono::milliseconds history_ttl{300000};
  std::size_t recovery_max = 300; ///< most messages one recovery replays
  // policy
  subscribe_rule subscribe = subscribe_rule::anyone;
  publish_rule publish = publish_rule::anyone;
  bool presence = false;       ///< the presence op and API (members, or counts below)
  bool presence_count = false; ///< presence = "count": cluster-wide counts, no member list
  bool join_leave = false;
  bool lossy = false;
  std::size_t max_subscribers = 0; ///< per node; 0 = unlimited
  bool events = true;              ///< occupied/vacated webhooks for its channels ([hooks] events)
  // merged frames (danmaku): to sessions that opted in with batch=1, a
  // channel's messages within merge_ms go out as one JSON array
  std::chrono::milliseconds merge_ms{0}; ///< the longest a message waits; 0 = no merging
  std::size_t merge_max = 50;            ///< the most messages one array holds
  // the application's hooks ([hooks] subscribe_url, publish_url)
  bool subscribe_hook = false;
  bool publish_hook = false;

  bool has_history() const noexcept { return history_size > 0; }
  bool merges() const noexcept { return merge_ms.count() > 0; }
};

/// The namespaces of a node (immutable once built; shared read-only).
class namespace_table {
public:
  namespace_table() = default;
  explicit namespace_table(std::vector<namespace_options> list);

  /// The options of `ch`'s namespace (the defaults when it has no table).
  const namespace_options& of_channel(std::string_view ch) const noexcept;
  /// True when any namespace keeps history.
  bool any_history() const noexcept { return any_history_; }
  /// True when any namespace has presence.
  bool any_presence() const noexcept { return any_presence_; }
  const std::vector<namespace_options>& all() const noexcept { return list_; }

private:
  std::vector<namespace_options> list_; // a few: a linear scan beats hashing
  namespace_options defaults_;
  bool any_history_ = false;
  bool any_presence_ = false;
};

} // namespace wsnode::actors
