// The small interfaces where transport (Beast/Asio) and actors (CAF) meet.
// Neither side includes the other's headers: transport implements
// `frame_sink` and calls `session_handler` / `node_port`; actors implement
// those and call `frame_sink`.
#pragma once

#include "protocol/api_bodies.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode {

/// One encoded frame, built once and shared read-only by every receiver.
using frame_ptr = std::shared_ptr<const std::string>;

/// Makes a shared frame from `s`.
inline frame_ptr make_frame(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

/// WebSocket close codes used by wsnode.
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;     ///< node draining
inline constexpr std::uint16_t policy = 1008;         ///< rate/abuse/auth
inline constexpr std::uint16_t too_big = 1009;        ///< message too big
inline constexpr std::uint16_t internal = 1011;       ///< internal error
inline constexpr std::uint16_t try_later = 1013;      ///< slow consumer
inline constexpr std::uint16_t token_expired = 4001;  ///< not refreshed in time (v1.1)
inline constexpr std::uint16_t app_disconnect = 4003; ///< disconnected by the application (v1.2)
} // namespace close_code

/// Outcome of `frame_sink::send`. (A session whose write queue overflows is
/// found on its I/O thread: it is closed with 1013 and the drop counted
/// there, after `send` returned `queued`.)
enum class send_result : std::uint8_t {
  queued, ///< handed to the session's I/O thread
  closed, ///< the session is closing or closed; frame dropped
};

/// Groups the `frame_sink::send` calls one thread makes while it is alive
/// (the fan-out of one publish), so that transport can hand them to each
/// I/O thread at once: one lock and at most one wake-up per thread instead
/// of one per delivery. Scopes nest; the outermost one hands them over.
/// Without a hook (no transport, unit tests) sends go through at once.
class send_batch {
public:
  send_batch() noexcept { ++depth(); }
  ~send_batch() {
    if (--depth() == 0 && end_hook() != nullptr)
      end_hook().load()();
  }
  send_batch(const send_batch&) = delete;
  send_batch& operator=(const send_batch&) = delete;

  /// True while a batch is open on this thread.
  static bool active() noexcept { return depth() > 0 && end_hook() != nullptr; }
  /// Set by transport at start-up: hands over what the thread held.
  static void set_end_hook(void (*fn)()) noexcept { end_hook() = fn; }

private:
  using hook_fn = void (*)();
  static int& depth() noexcept {
    thread_local int d = 0;
    return d;
  }
  static std::atomic<hook_fn>& end_hook() noexcept {
    static std::atomic<hook_fn> fn{nullptr};
    return fn;
  }
};

/// Something that writes frames to one client connection.
/// Thread-safe: every member may be called from any thread.
class frame_sink {
public:
  virtual ~frame_sink() = default;
  /// Queues one frame for writing. Never blocks.
  virtual send_result send(frame_ptr frame) = 0;
  /// Queues a frame of a recovery replay. Such frames are held in channel
  /// history anyway (the queue shares them), so they may take the write
  /// queue past its bound until it has drained once; a replay is bounded by
  /// the namespace's recovery_max.
  virtual send_result send_replay(frame_ptr frame) { return send(std::move(frame)); }
  /// Queues a frame of a lossy namespace: when the write queue is full it
  /// is dropped for this connection (counted as drop reason "lossy")
  /// instead of closing the connection as a slow consumer.
  virtual send_result send_lossy(frame_ptr frame) { return send(std::move(frame)); }
  /// Writes what is queued, then closes with `code`. Idempotent.
  virtual void close(std::uint16_t code, std::string reason) = 0;
  /// Tells the reader one received message was handled (input flow control:
  /// reading pauses while too many received messages are unhandled).
  virtual void input_done() = 0;
  /// The client opted in to merged frames (`batch=1`): in a namespace with
  /// `merge_ms` its channel messages come as JSON arrays, sent by the
  /// broker once per channel and window to every such session.
  virtual bool batched() const noexcept { return false; }
};
using sink_ptr = std::shared_ptr<frame_sink>;

/// Receives what one client connection reads.
/// Called by transport on the connection's thread, one call at a time.
/// (wsnode's handler hands everything, in order, to the connection's
/// session actor: see actors/session.hpp.)
class session_handler {
public:
  virtual ~session_handler() = default;
  /// One complete message from the client (`binary`: a binary frame). The
  /// handler calls `frame_sink::input_done` once it has handled it.
  virtual void on_message(std::string text, bool binary) = 0;
  /// The messages of one read have all been handed over (a handler may
  /// pass them on together).
  virtual void on_read_end() {}
  /// The client's input has ended after the messages handed over before:
  /// its close frame (`code` echoes its code; 1005: none given) or a
  /// protocol violation (1002, 1007, 1009). The handler answers every
  /// earlier message first, then calls `frame_sink::close(code, {})`
  /// (transport knows the reason that goes with it).
  virtual void on_input_end(std::uint16_t code) = 0;
  /// The connection is gone, with close code `code` (1006: no closing
  /// handshake) and the reason that went with it; called exactly once, last.
  virtual void on_closed(std::uint16_t code, std::string_view reason) = 0;
};

/// Who a new connection is, as established by transport before the upgrade.
struct session_identity {
  std::string user;
  std::string remote;                ///< peer address, for logs
  std::optional<std::int64_t> exp;   ///< the connection token's `exp` (seconds since the epoch)
  std::vector<std::string> channels; ///< its `channels` claim (private channels it may join)
  // From the application's connect hook (v1.2), when one is configured:
  bool from_hook = false;             ///< identity and `exp` are the hook's answer
  std::vector<std::string> subscribe; ///< server-side subscriptions
  std::string meta;                   ///< raw JSON kept with the session; "" = none
  std::uint16_t close_code = 0;       ///< the hook said disconnect: close at once with this
  std::string close_reason;
};

/// How an HTTP API call ended. The node says what happened; transport
/// alone turns it into a status code and a body (transport/http_routes.cpp).
enum class api_status : std::uint8_t {
  ok,          ///< 200
  bad_request, ///< 400: the call cannot be served as asked
  forbidden,   ///< 403: refused by the namespace's policy
  unavailable, ///< 503: not now (draining, history out of reach, no answer in time)
};

struct api_outcome {
  api_status status = api_status::ok;
  std::string msg;                  ///< why, when not ok
  std::optional<std::uint64_t> off; ///< a publish into a history channel: its offset
  std::string object;               ///< a read (history, presence): the answer, one JSON object
};
inline api_outcome api_failed(api_status s, std::string msg) {
  return {s, std::move(msg), std::nullopt, {}};
}

/// Receives an API call's outcome, exactly once, on any thread.
using api_done = std::function<void(api_outcome)>;

/// The cluster-wide calls of the server API (protocol v1.2): every live
/// node answers for its own sessions and channels; the answer says how many
/// nodes did.
enum class cluster_api : std::uint8_t {
  disconnect,
  subscribe,
  unsubscribe,
  online,
  channels,
  info
};
inline constexpr int cluster_api_count = 6;

/// What transport needs from the rest of the node. Thread-safe.
class node_port {
public:
  virtual ~node_port() = default;
  /// Creates the session for a freshly upgraded connection; returns its
  /// handler and writes the session's number to `sid` (clients see it as
  /// "NODE-NUMBER"). The handler lives on the connection's thread; `sink`
  /// outlives it.
  virtual std::unique_ptr<session_handler> open_session(const session_identity& who, sink_ptr sink,
                                                        std::uint64_t& sid) = 0;
  // ---- the HTTP API (docs/protocol.md). Each answers `done` exactly once,
  // maybe later and on another thread.

  /// Publishes `data` (raw JSON) to channel `ch`; `key` ("" = none) makes
  /// it idempotent in a history channel (the outcome then has `off`).
  virtual void api_publish(std::string ch, std::string data, std::string key, api_done done) = 0;
  /// Sends `data` (raw JSON) to every session of `user`, as a `dm` without
  /// `from`.
  virtual void api_send(std::string user, std::string data, api_done done) = 0;
  /// POST /api/history: the channel's position and messages; `limit` < 0:
  /// the default.
  virtual void api_history(std::string ch, bool has_since, std::string ep, std::uint64_t off,
                           long long limit, api_done done) = 0;
  /// POST /api/presence: a page of the channel's members; `limit` < 0: the
  /// default.
  virtual void api_presence(std::string ch, long long limit, std::string cursor, api_done done) = 0;
  /// A cluster-wide call; `body` is its body as protocol/api_bodies.hpp
  /// writes it (checked already; "" for info).
  virtual void api_cluster(cluster_api call, std::string body, api_done done) = 0;
  /// POST /api/broadcast: one publish per channel, one result each.
  virtual void api_broadcast(protocol::broadcast_body b, api_done done) = 0;
  /// True while `user` is banned (/api/disconnect with ban_ms): its
  /// upgrades are refused with 403.
  virtual bool banned(std::string_view user) = 0;
  /// The Prometheus text exposition of /metrics.
  virtual std::string metrics_text() = 0;
  /// Whether the node is ready (/readyz), and the JSON body describing it.
  virtual bool readiness(std::string& json_body) = 0;
};

} // namespace wsnode
