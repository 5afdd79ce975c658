// The application's hooks (protocol v1.2): the JSON bodies wsnode POSTs to
// the application and the answers it reads back (docs/protocol.md "v1.2:
// hooks"). No I/O: transport/hook_client does the HTTP, the session actor
// and the upgrade decide with what this returns. Answers come from another
// program, so every field is checked here; the fuzzer drives the parser.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsnode::protocol {

enum class hook_kind : std::uint8_t { connect, refresh, subscribe, publish, rpc };
inline constexpr int hook_kind_count = 5;

/// The hook's wire name ("connect", ...), also its metrics label.
std::string_view to_string(hook_kind k) noexcept;

/// Why a hook call failed (label `result` of wsnode_hook_calls_total with
/// ok, error and disconnect).
enum class hook_failure : std::uint8_t {
  none,
  timeout,     ///< no answer within [hooks] timeout_ms of being asked
  unreachable, ///< connection refused, reset or closed before an answer
  status,      ///< an HTTP status other than 200
  malformed,   ///< not the JSON the hook's answer must be
  too_large,   ///< an answer longer than [hooks] max_answer_bytes
};
inline constexpr int hook_failure_count = 6;
std::string_view to_string(hook_failure f) noexcept;

/// One hook's answer, checked. `result` and its fields are only set for
/// kind::result; raw JSON values are kept exactly as the application wrote
/// them.
struct hook_answer {
  enum class kind : std::uint8_t { result, error, disconnect, failed } what = kind::failed;
  hook_failure failure = hook_failure::none;
  std::string why; ///< failed: what went wrong, for the client and the log
  // error
  std::string code; ///< `[a-z_]{1,32}`
  std::string msg;
  // disconnect
  std::uint16_t close_code = 0; ///< 3000-4999
  std::string reason;
  // result
  std::string user;                     ///< connect: required
  std::optional<std::int64_t> expire_at; ///< connect: optional; refresh: required
  std::vector<std::string> channels;    ///< connect: server-side subscriptions
  std::optional<std::string> meta;      ///< connect, refresh: raw JSON
  std::optional<std::string> data;      ///< publish, rpc: raw JSON

  bool ok() const noexcept { return what == kind::result; }
};

/// A failed call.
hook_answer hook_failed(hook_failure f, std::string why);

/// Checks the body of a 200 answer to hook `k`. A body that is not one JSON
/// object with exactly one of `result`, `error` or (connect and refresh
/// only) `disconnect`, or whose fields have the wrong type or value, is a
/// failure (`malformed`) saying which field.
hook_answer parse_hook_answer(hook_kind k, std::string_view body);

/// Who a session's hook call is about.
struct hook_session {
  std::string_view node;
  std::string_view sid;
  std::string_view user;
  std::string_view meta; ///< raw JSON; empty: null
};

/// The body of a connect call: `headers` are the forwarded request headers
/// (name as configured, value), `query` the upgrade's raw query string,
/// `token` its ?token= when given.
std::string encode_connect_hook(std::string_view node, std::string_view remote,
                                const std::vector<std::pair<std::string, std::string>>& headers,
                                std::string_view query, const std::optional<std::string>& token);

/// The body of a refresh, subscribe, publish or rpc call. `target` is the
/// channel (subscribe, publish) or the method (rpc); `data` raw JSON, empty:
/// null; `key` a publish's idempotency key (omitted when empty), so that
/// the application can tell a client's retry from a new message.
std::string encode_session_hook(hook_kind k, const hook_session& s, std::string_view target,
                                std::string_view data, std::string_view key = {});

/// One event of a webhook batch: `{"id":ID,"type":TYPE,"time":MS,FIELDS}`
/// (`fields`: members as JSON text without braces, may be empty).
std::string encode_event(std::string_view id, std::string_view type, std::int64_t time_ms,
                         std::string_view fields);

/// A webhook call's body: `{"node":NODE,"events":[EVENTS]}` (`events`:
/// encoded events).
std::string encode_event_batch(std::string_view node, const std::vector<std::string>& events);

/// The X-Wsnode-Signature header's value for `body`: "sha256=" and the
/// HMAC-SHA256 of the body with `secret`, in lower-case hex.
std::string sign_body(std::string_view secret, std::string_view body);

} // namespace wsnode::protocol
