// Process-wide counters and gauges, rendered as Prometheus text on /metrics.
// Thread-safe: plain relaxed atomics, updated from io threads and actors.
#pragma once

#include "protocol/codec.hpp"
#include "protocol/hook_codec.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace wsnode {

/// Why a frame or message was dropped (label of wsnode_dropped_total).
enum class drop_reason : std::uint8_t {
  slow_consumer, ///< frames discarded when a session's write queue overflowed
  closed,        ///< frames for a session that was already closing
  rate_limited,  ///< client commands refused by the rate limit
  mesh_hwm,      ///< mesh messages the backbone could not queue
  lossy,         ///< frames of lossy namespaces skipped for a subscriber with a full queue
  backbone,      ///< messages NATS refused or dropped (disconnected, slow consumer)
};
inline constexpr int drop_reason_count = 6;

/// Why a client's command was refused by policy (label of
/// wsnode_refusals_total); each is also an `err` (or a 4001 close).
enum class refusal_reason : std::uint8_t {
  no_grant,           ///< sub of a private channel without token or `channels` claim
  bad_sub_token,      ///< subscription token invalid, expired, or for another user/channel
  publish_server,     ///< pub into a namespace with publish = "server"
  not_subscriber,     ///< pub into publish = "subscribers" without a subscription
  presence_off,       ///< presence of a namespace without presence = true
  subscription_limit, ///< [limits] max_subscriptions reached
  refresh_bad_token,  ///< refresh with a token that does not verify (closed 4001)
  refresh_other_user, ///< refresh with a token of another `sub`
  refresh_no_auth,    ///< refresh on a node in dev mode
  token_expired,      ///< closed 4001: `exp` passed and not refreshed within the grace
  max_subscribers,    ///< sub of a channel holding its namespace's max_subscribers here
};
inline constexpr int refusal_reason_count = 11;

/// How a reload (SIGHUP) ended (label of wsnode_config_reloads_total).
enum class reload_result : std::uint8_t {
  ok,             ///< every changed key applied
  restart_needed, ///< applied, but some changed keys need a restart (named in the log)
  error,          ///< the file was refused; the running config stays
};
inline constexpr int reload_result_count = 3;

/// Why an upgrade was refused (label of wsnode_upgrades_rejected_total).
/// hook: the connect hook refused (403); hook_failed: it failed (503).
enum class reject_reason : std::uint8_t {
  auth,
  origin,
  limit,
  draining,
  bad_request,
  hook,
  hook_failed,
  banned ///< the user is banned (/api/disconnect with ban_ms)
};
inline constexpr int reject_reason_count = 8;

/// Close codes counted in wsnode_closed_total{code}.
inline constexpr std::array<std::uint16_t, 11> counted_close_codes{
    1000, 1001, 1002, 1006, 1007, 1008, 1009, 1011, 1013, 4001, 4003};

/// The application's hooks: calls by hook and result, their latency, and
/// how many are open or waiting (wsnode_hook_*).
struct hook_metrics {
  using counter = std::atomic<std::uint64_t>;
  /// Upper bounds (seconds) of the latency histogram's buckets; +Inf follows.
  static constexpr std::array<double, 13> bounds{.001, .0025, .005, .01, .025, .05, .1,
                                                 .25,  .5,    1,    2.5, 5,    10};
  /// Results: ok, error, disconnect, then the failures (hook_failure after none).
  static constexpr int result_count = 3 + protocol::hook_failure_count - 1;
  static int result_index(const protocol::hook_answer& a) noexcept {
    if (a.what == protocol::hook_answer::kind::failed)
      return 2 + static_cast<int>(a.failure);
    return static_cast<int>(a.what);
  }
  std::array<std::array<counter, result_count>, protocol::hook_kind_count> calls{};
  std::array<std::array<counter, bounds.size() + 1>, protocol::hook_kind_count> buckets{};
  std::array<counter, protocol::hook_kind_count> micros{}; ///< summed latency
  std::atomic<std::int64_t> in_flight{0};                  ///< HTTP calls open
  std::atomic<std::int64_t> queued{0}; ///< calls waiting for one of max_in_flight
  // webhooks ([hooks] events_url)
  counter events_sent{0};                     ///< events the application acknowledged (2xx)
  counter events_dropped{0};                  ///< events not queued: the queue was full
  counter event_posts_failed{0};              ///< webhook calls that failed (retried)
  std::atomic<std::int64_t> events_queued{0}; ///< events waiting to be sent
  /// Counts one finished call of `k`, asked `seconds` ago.
  void observe(protocol::hook_kind k, const protocol::hook_answer& a, double seconds) noexcept;
};

struct metrics {
  using counter = std::atomic<std::uint64_t>;
  using gauge = std::atomic<std::int64_t>;

  gauge connections{0};         ///< open WebSocket sessions
  counter connections_total{0}; ///< sessions ever opened
  gauge session_actors{0};      ///< live session actors (one per open session)
  counter messages_in{0};       ///< client frames received
  counter messages_out{0};      ///< frames written to clients
  /// write system calls to client sockets (frames per write = messages_out / this)
  counter socket_writes{0};
  counter bytes_out{0};       ///< bytes those writes handed to the kernel
  counter split_flushes{0};   ///< flushes of a quiet lane shared with its helper thread
  counter split_sessions{0};  ///< sessions whose write the helper thread did in those
  counter deliveries{0};      ///< msg/dm frames handed to local sessions
  counter merged_frames{0};   ///< arrays of merged messages built (one per window, shared)
  counter merged_messages{0}; ///< messages those arrays held
  counter deflate_calls{0};   ///< outgoing frames compressed (one per shared frame and window size)
  counter publishes{0};       ///< channel publishes handled by the broker
  counter direct_messages{0}; ///< DMs handled by the broker
  gauge queued_bytes{0};      ///< bytes waiting in session write queues
  gauge channels{0};          ///< channels with local subscribers
  gauge users{0};             ///< users with local sessions
  counter http_requests{0};   ///< HTTP requests (not upgrades)
  counter api_calls{0};       ///< accepted /api/* calls
  std::array<counter, drop_reason_count> dropped{};
  std::array<counter, reject_reason_count> upgrades_rejected{};
  std::array<counter, protocol::error_code_count> errors{};
  std::array<counter, refusal_reason_count> refusals{};
  std::array<counter, counted_close_codes.size() + 1> closed{}; ///< last: other
  std::array<counter, reload_result_count> config_reloads{};

  // mesh (see the cluster backbone)
  gauge mesh_peers{0};
  counter mesh_sent{0};
  counter mesh_received{0};
  counter mesh_gaps{0};
  counter mesh_service_received{0}; ///< service messages (history, presence) sent to this node
  counter mesh_malformed{0};        ///< mesh messages dropped: frames, envelope, topic or tag
  counter mesh_confirm_timeouts{0}; ///< subscriptions acked without every peer's confirmation
  counter mesh_peers_lost{0};       ///< live peers declared dead because their connection reset
  /// The backbone's kind ("local", "mesh", "nats"): the label of the
  /// wsnode_backbone_* metrics (the mesh counters above, under both names).
  /// Set once by the node's wiring before any thread reads it.
  const char* backbone_kind = "local";
  gauge backbone_up{1};            ///< 1 while the backbone can carry messages
  counter backbone_disconnects{0}; ///< connections to the backbone lost (NATS)
  counter backbone_reconnects{0};  ///< connections to the backbone made again (NATS)
  // history (namespaces with history_size > 0)
  gauge history_channels{0};        ///< channels with a history copy on this node
  gauge history_messages{0};        ///< messages held in those copies
  gauge history_bytes{0};           ///< bytes of those messages
  counter recoveries_ok{0};         ///< sub with since: recovered
  counter recoveries_failed{0};     ///< sub with since: not recovered (recovered:false)
  counter resyncs{0};               ///< resync frames sent (a stream broke)
  counter history_new_epochs{0};    ///< channels started afresh (no copy found)
  counter history_takeovers{0};     ///< ownership taken with an existing copy
  counter history_handovers{0};     ///< ownership given up to a newer term
  counter history_filled{0};        ///< messages a stream got from its owner to fill a gap
  counter history_fill_failures{0}; ///< gaps the owner could not fill (resync instead)
  counter history_unavailable{0};   ///< publishes/reads refused: owner or copies out of reach
  counter history_bad_messages{0};  ///< malformed history messages from the mesh
  // presence (namespaces with presence = true)
  gauge presence_channels{0};       ///< presence channels this node holds members of
  gauge presence_members{0};        ///< distinct users over those channels (cluster-wide)
  counter presence_joins{0};        ///< a user's first node entered a channel
  counter presence_leaves{0};       ///< a user's last node left a channel (deaths included)
  counter presence_resyncs{0};      ///< snapshots asked of a peer (digest mismatch or silence)
  counter occupancy_repairs{0};     ///< occupancy lists asked of a node after digests differed
  counter presence_bad_messages{0}; ///< malformed presence messages from the mesh
  hook_metrics hooks;

  void drop(drop_reason r, std::uint64_t n = 1) noexcept {
    dropped[static_cast<std::size_t>(r)].fetch_add(n, std::memory_order_relaxed);
  }
  void reject(reject_reason r) noexcept {
    upgrades_rejected[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  void error(protocol::error_code c) noexcept {
    errors[static_cast<std::size_t>(c)].fetch_add(1, std::memory_order_relaxed);
  }
  void refuse(refusal_reason r) noexcept {
    refusals[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  void close(std::uint16_t code) noexcept;
};

/// Adds `n` to a counter or gauge (relaxed).
template <class A, class N>
inline void bump(A& a, N n = 1) noexcept {
  a.fetch_add(n, std::memory_order_relaxed);
}

/// Renders every metric in the Prometheus text format (version 0.0.4);
/// `node` labels nothing but is shown in wsnode_info.
std::string render_prometheus(const metrics& m, std::string_view node, std::string_view version);

/// Resident set size of this process in bytes (from /proc/self/statm).
std::uint64_t process_rss_bytes();

} // namespace wsnode
