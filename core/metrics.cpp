#include "core/metrics.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <unistd.h>

namespace wsnode {

namespace {

constexpr std::array<std::string_view, drop_reason_count> drop_names{
    "slow_consumer", "closed", "rate_limited", "mesh_hwm", "lossy", "backbone"};
constexpr std::array<std::string_view, refusal_reason_count> refusal_names{
    "no_grant",        "bad_sub_token",      "publish_server",    "not_subscriber",
    "presence_off",    "subscription_limit", "refresh_bad_token", "refresh_other_user",
    "refresh_no_auth", "token_expired",      "max_subscribers"};
constexpr std::array<std::string_view, reload_result_count> reload_names{"ok", "restart_needed",
                                                                         "error"};
constexpr std::array<std::string_view, reject_reason_count> reject_names{
    "auth", "origin", "limit", "draining", "bad_request", "hook", "hook_failed", "banned"};

template <class A>
auto load(const A& a) {
  return a.load(std::memory_order_relaxed);
}

void head(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

template <class V>
void single(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            V value) {
  head(out, name, type, help);
  fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
}

// The backbone's metrics under one set of names whatever the kind, with
// the kind as a label (the mesh's keep their wsnode_mesh_* names too).
void render_backbone(std::string& out, const metrics& m) {
  auto labelled = [&](std::string_view name, std::string_view type, std::string_view help,
                      auto value) {
    head(out, name, type, help);
    fmt::format_to(std::back_inserter(out), "{}{{kind=\"{}\"}} {}\n", name, m.backbone_kind, value);
  };
  labelled("wsnode_backbone_up", "gauge", "1 while the backbone can carry messages.",
           load(m.backbone_up));
  labelled("wsnode_backbone_peers", "gauge", "Other nodes in this node's view.",
           load(m.mesh_peers));
  labelled("wsnode_backbone_sent_total", "counter", "Messages published to the backbone.",
           load(m.mesh_sent));
  labelled("wsnode_backbone_received_total", "counter",
           "Channel and user messages received from the backbone (heartbeats excluded).",
           load(m.mesh_received));
  labelled("wsnode_backbone_service_received_total", "counter",
           "Service messages (history, presence) received from the backbone.",
           load(m.mesh_service_received));
  labelled("wsnode_backbone_malformed_total", "counter", "Backbone messages dropped as malformed.",
           load(m.mesh_malformed));
  labelled("wsnode_backbone_subscribe_timeouts_total", "counter",
           "Subscriptions acknowledged after the confirmation timeout.",
           load(m.mesh_confirm_timeouts));
  labelled("wsnode_backbone_disconnects_total", "counter",
           "Connections to the backbone lost (NATS: this node's server connection).",
           load(m.backbone_disconnects));
  labelled("wsnode_backbone_reconnects_total", "counter", "Connections to the backbone made again.",
           load(m.backbone_reconnects));
}

// wsnode_hook_*: calls by hook and result, the latency histogram, open and
// waiting calls.
void render_hooks(std::string& out, const hook_metrics& h) {
  using protocol::hook_kind;
  using protocol::hook_kind_count;
  head(out, "wsnode_hook_calls_total", "counter",
       "Calls to the application's hooks, by hook and result (ok, error, disconnect: its answer; "
       "the rest are failures).");
  for (int k = 0; k < hook_kind_count; ++k)
    for (int r = 0; r < hook_metrics::result_count; ++r) {
      std::string_view result =
          r == 0   ? "ok"
          : r == 1 ? "error"
          : r == 2 ? "disconnect"
                   : protocol::to_string(static_cast<protocol::hook_failure>(r - 2));
      fmt::format_to(std::back_inserter(out),
                     "wsnode_hook_calls_total{{hook=\"{}\",result=\"{}\"}} {}\n",
                     protocol::to_string(static_cast<hook_kind>(k)), result,
                     load(h.calls[static_cast<std::size_t>(k)][static_cast<std::size_t>(r)]));
    }
  head(out, "wsnode_hook_duration_seconds", "histogram",
       "Time from asking a hook call to its answer (queue wait included), by hook.");
  for (int k = 0; k < hook_kind_count; ++k) {
    auto name = protocol::to_string(static_cast<hook_kind>(k));
    const auto& b = h.buckets[static_cast<std::size_t>(k)];
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
      total += load(b[i]);
      if (i < hook_metrics::bounds.size())
        fmt::format_to(std::back_inserter(out),
                       "wsnode_hook_duration_seconds_bucket{{hook=\"{}\",le=\"{}\"}} {}\n", name,
                       hook_metrics::bounds[i], total);
      else
        fmt::format_to(std::back_inserter(out),
                       "wsnode_hook_duration_seconds_bucket{{hook=\"{}\",le=\"+Inf\"}} {}\n", name,
                       total);
    }
    fmt::format_to(std::back_inserter(out),
                   "wsnode_hook_duration_seconds_sum{{hook=\"{}\"}} {}\n"
                   "wsnode_hook_duration_seconds_count{{hook=\"{}\"}} {}\n",
                   name, static_cast<double>(load(h.micros[static_cast<std::size_t>(k)])) / 1e6,
                   name, total);
  }
  single(out, "wsnode_hook_in_flight", "gauge", "Hook calls open to the application now.",
         load(h.in_flight));
  single(out, "wsnode_hook_queued", "gauge",
         "Hook calls waiting for a free slot ([hooks] max_in_flight).", load(h.queued));
  head(out, "wsnode_webhook_events_total", "counter",
       "Webhook events: sent (the application answered 2xx) or dropped (the queue was full).");
  fmt::format_to(std::back_inserter(out),
                 "wsnode_webhook_events_total{{result=\"sent\"}} {}\n"
                 "wsnode_webhook_events_total{{result=\"dropped\"}} {}\n",
                 load(h.events_sent), load(h.events_dropped));
  single(out, "wsnode_webhook_calls_failed_total", "counter",
         "Webhook calls that failed (timeout, refused, not 2xx); their events are sent again.",
         load(h.event_posts_failed));
  single(out, "wsnode_webhook_queued", "gauge",
         "Webhook events waiting to be sent ([hooks] events_max_queue).", load(h.events_queued));
}

} // namespace

void hook_metrics::observe(protocol::hook_kind k, const protocol::hook_answer& a,
                           double seconds) noexcept {
  auto ki = static_cast<std::size_t>(k);
  calls[ki][static_cast<std::size_t>(result_index(a))].fetch_add(1, std::memory_order_relaxed);
  std::size_t b = 0;
  while (b < bounds.size() && seconds > bounds[b])
    ++b;
  buckets[ki][b].fetch_add(1, std::memory_order_relaxed);
  micros[ki].fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void metrics::close(std::uint16_t code) noexcept {
  std::size_t i = 0;
  while (i < counted_close_codes.size() && counted_close_codes[i] != code)
    ++i;
  closed[i].fetch_add(1, std::memory_order_relaxed);
}

std::string render_prometheus(const metrics& m, std::string_view node, std::string_view version) {
  std::string out;
  out.reserve(4096);
  head(out, "wsnode_info", "gauge", "Build and node identity.");
  fmt::format_to(std::back_inserter(out), "wsnode_info{{node=\"{}\",version=\"{}\"}} 1\n", node,
                 version);
  single(out, "wsnode_connections", "gauge", "Open WebSocket sessions.", load(m.connections));
  single(out, "wsnode_session_actors", "gauge",
         "Live session actors (one per open WebSocket session, until it has exited).",
         load(m.session_actors));
  single(out, "wsnode_connections_opened_total", "counter", "WebSocket sessions opened.",
         load(m.connections_total));
  single(out, "wsnode_messages_in_total", "counter", "Frames received from clients.",
         load(m.messages_in));
  single(out, "wsnode_messages_out_total", "counter", "Frames written to clients.",
         load(m.messages_out));
  single(out, "wsnode_socket_writes_total", "counter",
         "Write system calls to client sockets (one gather write each).", load(m.socket_writes));
  single(out, "wsnode_bytes_out_total", "counter", "Bytes written to client sockets.",
         load(m.bytes_out));
  single(out, "wsnode_split_flushes_total", "counter",
         "Flushes of a quiet io thread to 256+ sockets whose writes a helper thread shared.",
         load(m.split_flushes));
  single(out, "wsnode_split_sessions_total", "counter",
         "Sockets written by the helper thread in those flushes.", load(m.split_sessions));
  single(out, "wsnode_deliveries_total", "counter",
         "msg/dm frames handed to local sessions (fan-out).", load(m.deliveries));
  single(out, "wsnode_merged_frames_total", "counter",
         "Arrays of merged messages built (one per channel window, shared by its batch=1 "
         "sessions).",
         load(m.merged_frames));
  single(out, "wsnode_merged_messages_total", "counter", "Messages those arrays held.",
         load(m.merged_messages));
  single(out, "wsnode_deflate_calls_total", "counter",
         "Outgoing frames compressed (one per shared frame and window size, not per session).",
         load(m.deflate_calls));
  single(out, "wsnode_publishes_total", "counter", "Channel publishes handled.", load(m.publishes));
  single(out, "wsnode_direct_messages_total", "counter", "Direct messages handled.",
         load(m.direct_messages));
  single(out, "wsnode_queued_bytes", "gauge", "Bytes waiting in session write queues.",
         load(m.queued_bytes));
  single(out, "wsnode_channels", "gauge", "Channels with local subscribers.", load(m.channels));
  single(out, "wsnode_users", "gauge", "Users with local sessions.", load(m.users));
  single(out, "wsnode_http_requests_total", "counter", "HTTP requests other than upgrades.",
         load(m.http_requests));
  single(out, "wsnode_api_calls_total", "counter", "Accepted /api/* calls.", load(m.api_calls));

  head(out, "wsnode_dropped_total", "counter", "Frames or messages dropped, by reason.");
  for (std::size_t i = 0; i < drop_names.size(); ++i)
    fmt::format_to(std::back_inserter(out), "wsnode_dropped_total{{reason=\"{}\"}} {}\n",
                   drop_names[i], load(m.dropped[i]));
  head(out, "wsnode_upgrades_rejected_total", "counter", "WebSocket upgrades refused, by reason.");
  for (std::size_t i = 0; i < reject_names.size(); ++i)
    fmt::format_to(std::back_inserter(out), "wsnode_upgrades_rejected_total{{reason=\"{}\"}} {}\n",
                   reject_names[i], load(m.upgrades_rejected[i]));
  head(out, "wsnode_errors_total", "counter", "err frames sent to clients, by code.");
  for (int i = 0; i < protocol::error_code_count; ++i)
    fmt::format_to(std::back_inserter(out), "wsnode_errors_total{{code=\"{}\"}} {}\n",
                   protocol::to_string(static_cast<protocol::error_code>(i)),
                   load(m.errors[static_cast<std::size_t>(i)]));
  head(out, "wsnode_refusals_total", "counter",
       "Client commands refused by policy (private channels, publish rules, presence, tokens), "
       "by reason.");
  for (std::size_t i = 0; i < refusal_names.size(); ++i)
    fmt::format_to(std::back_inserter(out), "wsnode_refusals_total{{reason=\"{}\"}} {}\n",
                   refusal_names[i], load(m.refusals[i]));
  head(out, "wsnode_config_reloads_total", "counter",
       "Reloads (SIGHUP), by result: ok, restart_needed (applied; some keys need a restart), "
       "error (refused; the running config stays).");
  for (std::size_t i = 0; i < reload_names.size(); ++i)
    fmt::format_to(std::back_inserter(out), "wsnode_config_reloads_total{{result=\"{}\"}} {}\n",
                   reload_names[i], load(m.config_reloads[i]));
  head(out, "wsnode_closed_total", "counter", "WebSocket sessions closed, by close code.");
  for (std::size_t i = 0; i < counted_close_codes.size(); ++i)
    fmt::format_to(std::back_inserter(out), "wsnode_closed_total{{code=\"{}\"}} {}\n",
                   counted_close_codes[i], load(m.closed[i]));
  fmt::format_to(std::back_inserter(out), "wsnode_closed_total{{code=\"other\"}} {}\n",
                 load(m.closed.back()));

  single(out, "wsnode_mesh_peers", "gauge", "Mesh peers heard from recently.", load(m.mesh_peers));
  single(out, "wsnode_mesh_sent_total", "counter", "Messages published to the mesh.",
         load(m.mesh_sent));
  single(out, "wsnode_mesh_received_total", "counter",
         "Channel and user messages received from the mesh (heartbeats excluded).",
         load(m.mesh_received));
  single(out, "wsnode_mesh_service_received_total", "counter",
         "Service messages (history, presence) received from the mesh.",
         load(m.mesh_service_received));
  single(out, "wsnode_mesh_malformed_total", "counter",
         "Mesh messages dropped as malformed (frames, envelope, topic or service tag).",
         load(m.mesh_malformed));
  single(out, "wsnode_mesh_gaps_total", "counter",
         "Messages missed from mesh peers (sequence gaps per origin and topic).",
         load(m.mesh_gaps));
  single(out, "wsnode_mesh_subscribe_timeouts_total", "counter",
         "Subscriptions acknowledged after the confirmation timeout (a peer did not confirm).",
         load(m.mesh_confirm_timeouts));
  single(out, "wsnode_mesh_peers_lost_total", "counter",
         "Live peers declared dead at once because their mesh connection reset.",
         load(m.mesh_peers_lost));
  render_backbone(out, m);
  single(out, "wsnode_history_channels", "gauge",
         "Channels with a history copy on this node (owned or replicated).",
         load(m.history_channels));
  single(out, "wsnode_history_messages", "gauge", "Messages held in channel history here.",
         load(m.history_messages));
  single(out, "wsnode_history_bytes", "gauge", "Bytes of the messages held in history here.",
         load(m.history_bytes));
  head(out, "wsnode_recoveries_total", "counter",
       "Subscriptions with since, by outcome (recovered: the missed messages were replayed).");
  fmt::format_to(std::back_inserter(out),
                 "wsnode_recoveries_total{{result=\"recovered\"}} {}\n"
                 "wsnode_recoveries_total{{result=\"not_recovered\"}} {}\n",
                 load(m.recoveries_ok), load(m.recoveries_failed));
  single(out, "wsnode_resyncs_total", "counter",
         "resync frames sent: a session's stream of a channel broke (gap or new epoch).",
         load(m.resyncs));
  single(out, "wsnode_history_new_epochs_total", "counter",
         "History channels started with a new epoch (no copy on a majority).",
         load(m.history_new_epochs));
  single(out, "wsnode_history_takeovers_total", "counter",
         "Channel ownerships taken by this node with an existing copy (after an owner died or "
         "on a hand-over).",
         load(m.history_takeovers));
  single(out, "wsnode_history_handovers_total", "counter",
         "Channel ownerships this node gave up to a newer term.", load(m.history_handovers));
  single(out, "wsnode_history_filled_total", "counter",
         "Messages of a history channel fetched from its owner to fill a gap in a stream here.",
         load(m.history_filled));
  single(out, "wsnode_history_fill_failures_total", "counter",
         "Gaps in a history channel's stream here that its owner could not fill (resync sent).",
         load(m.history_fill_failures));
  single(out, "wsnode_history_unavailable_total", "counter",
         "Publishes and reads of history channels refused (owner or copies out of reach).",
         load(m.history_unavailable));
  single(out, "wsnode_history_bad_messages_total", "counter",
         "Malformed history messages received from the mesh.", load(m.history_bad_messages));
  single(out, "wsnode_presence_channels", "gauge", "Presence channels this node holds members of.",
         load(m.presence_channels));
  single(out, "wsnode_presence_members", "gauge",
         "Distinct users over those channels, cluster-wide as this node knows them.",
         load(m.presence_members));
  single(out, "wsnode_presence_joins_total", "counter",
         "A user's first session anywhere entered a presence channel.", load(m.presence_joins));
  single(out, "wsnode_presence_leaves_total", "counter",
         "A user's last session anywhere left a presence channel (node deaths included).",
         load(m.presence_leaves));
  single(out, "wsnode_presence_resyncs_total", "counter",
         "Presence snapshots asked of a peer after a digest mismatch or silence.",
         load(m.presence_resyncs));
  single(out, "wsnode_occupancy_repairs_total", "counter",
         "Occupancy lists asked of a node after its digests differed twice (lost deltas healed).",
         load(m.occupancy_repairs));
  single(out, "wsnode_presence_bad_messages_total", "counter",
         "Malformed presence messages received from the mesh.", load(m.presence_bad_messages));
  render_hooks(out, m.hooks);
  single(out, "process_resident_memory_bytes", "gauge", "Resident set size.", process_rss_bytes());
  return out;
}

std::uint64_t process_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr)
    return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2)
    return 0;
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

} // namespace wsnode
