// Client protocol v1: JSON text frames <-> typed commands and frames.
//
// Parsing never allocates for `data`: a command keeps views into the frame
// text, so the caller must keep that text alive while it uses the command.
// Encoding builds each outgoing frame once; names are validated before they
// get here, so they need no escaping.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wsnode::protocol {

/// An encoded frame as the history reply reads it.
using frame_view = std::string_view;

/// Client -> server operations.
enum class op : std::uint8_t { sub, unsub, pub, send, ping, history, refresh, presence, rpc };

/// Error codes of `{"op":"err"}` frames.
enum class error_code : std::uint8_t {
  bad_json,
  bad_request,
  unknown_op,
  bad_channel,
  forbidden,
  too_large,
  rate_limited,
  unavailable, ///< v1.2: the application's hook failed (or cannot be reached)
};
inline constexpr int error_code_count = 8;

/// Returns the wire name of `o` ("sub", ...).
std::string_view to_string(op o) noexcept;
/// Returns the wire name of `c` ("bad_json", ...).
std::string_view to_string(error_code c) noexcept;
/// Returns the code named `s`, or nullopt.
std::optional<error_code> error_code_from(std::string_view s) noexcept;

/// Longest `id` accepted, in bytes of its JSON text.
inline constexpr std::size_t max_id_length = 64;
/// Longest idempotency `key` of a publish, in bytes.
inline constexpr std::size_t max_key_length = 64;
/// Longest epoch accepted in a `since`.
inline constexpr std::size_t max_epoch_length = 32;
/// Longest token accepted in a command (`sub`, `refresh`).
inline constexpr std::size_t max_token_length = 4096;
/// Longest presence `cursor`.
inline constexpr std::size_t max_cursor_length = 128;
/// Longest rpc `method`.
inline constexpr std::size_t max_method_length = 64;

/// A stream position (protocol v1.1): epoch and offset.
struct position {
  std::string ep;
  std::uint64_t off = 0;
};

/// One validated client command. `id` and `data` are raw JSON views into the
/// frame text (empty when absent); `ch`/`to` are decoded, validated names.
struct command {
  op kind = op::ping;
  std::string_view id;
  std::string ch;
  std::string to;
  std::string_view data;            ///< pub, send, rpc; sub: optional (for the subscribe hook)
  std::string key;                  ///< pub: idempotency key ("" = none)
  std::optional<position> since;    ///< sub, history: recover from here
  std::optional<std::size_t> limit; ///< history: most messages; presence: most users
  std::string token;                ///< sub: subscription token; refresh: connection token
  std::string cursor;               ///< presence: where the next page starts
  std::string method;               ///< rpc: the application's method name
};

/// Why a frame was refused; `id` is the command's id when it was readable.
struct command_error {
  error_code code = error_code::bad_request;
  std::string msg;
  std::string_view id;
};

using parse_result = std::variant<command, command_error>;

/// Limits applied while parsing.
struct parse_limits {
  /// Largest `data` (bytes of its JSON text) of a pub/send; larger is too_large.
  std::size_t max_data_bytes = 32768;
};

/// Parses one client frame (protocol v1).
parse_result parse_command(std::string_view text, const parse_limits& limits);

/// Parses the body of POST /api/publish (`kind == op::pub`, {"ch","data"})
/// or POST /api/send (`kind == op::send`, {"to","data"}).
parse_result parse_api_body(std::string_view body, op kind, const parse_limits& limits);

/// Parses the body of POST /api/history ({"ch","limit","since"}), or with
/// `kind == op::presence` of POST /api/presence ({"ch","limit","cursor"}).
parse_result parse_history_body(std::string_view body, op kind = op::history);

/// Encodes a client command (for clients, tools and tests).
std::string encode_command(const command& c);

// ---------------------------------------------------------------- server -> client

/// `{"op":"hello","node":..,"user":..,"sid":..}`
std::string encode_hello(std::string_view node, std::string_view user, std::string_view sid);
/// `{"op":"ack"}` or `{"op":"ack","id":ID}` (id: raw JSON, may be empty).
std::string encode_ack(std::string_view id);
/// `{"op":"pong"}` or `{"op":"pong","id":ID}`.
std::string encode_pong(std::string_view id);
/// `{"op":"err","id":ID,"code":..,"msg":..}` (id omitted when empty).
std::string encode_err(std::string_view id, error_code code, std::string_view msg);
/// The same with a code of the application's (a hook's `error`: `[a-z_]{1,32}`).
std::string encode_err(std::string_view id, std::string_view code, std::string_view msg);
/// `{"op":"rpc","id":ID,"data":DATA}` (v1.2: an rpc's answer).
std::string encode_rpc_reply(std::string_view id, std::string_view data);
/// `{"op":"subscribed","ch":..[,"ep":..,"off":..]}` (v1.2: a subscription the
/// server made for the session; `ep` empty: a channel without history).
std::string encode_subscribed(std::string_view ch, std::string_view ep, std::uint64_t off);
/// {"op":"unsubscribed","ch":...}: the application took the session out of
/// `ch` (server API); no `id`, so a client tells it from its own acks.
std::string encode_unsubscribed(std::string_view ch);
/// `{"op":"msg","ch":..,"from":..,"data":DATA}`; `from` omitted when empty.
std::string encode_msg(std::string_view ch, std::string_view from, std::string_view data);
/// `{"op":"msg","ch":..,"from":..,"off":OFF,"data":DATA}` (a history channel).
std::string encode_msg(std::string_view ch, std::string_view from, std::uint64_t off,
                       std::string_view data);
/// True for a frame made by encode_msg (a `msg`), false for any other
/// server frame (join, leave, resync, ...).
inline bool is_msg_frame(std::string_view frame) noexcept {
  return frame.starts_with(R"({"op":"msg",)");
}
/// The `off` of a msg frame made by encode_msg for channel `ch` (0: none).
std::uint64_t msg_offset(std::string_view frame, std::size_t ch_size) noexcept;
/// `{"op":"ack","id":ID,"ep":..,"off":..[,"recovered":..]}` (sub of a history channel).
std::string encode_sub_ack(std::string_view id, std::string_view ep, std::uint64_t off,
                           std::optional<bool> recovered);
/// `{"op":"ack","id":ID,"off":..}` (pub into a history channel).
std::string encode_pub_ack(std::string_view id, std::uint64_t off);
/// `{"op":"resync","ch":..}`.
std::string encode_resync(std::string_view ch);
/// The history reply: `{"op":"history","id":ID,"ch":..,"ep":..,"off":..,"pubs":[..]}`,
/// or without op/id (`api`, for POST /api/history). `frames` are msg frames
/// of `ch` made by encode_msg with an offset.
std::string encode_history(std::string_view id, std::string_view ch, std::string_view ep,
                           std::uint64_t off, const std::vector<frame_view>& frames, bool api);
/// The same for frames held as shared buffers (the history ring's).
std::string encode_history(std::string_view id, std::string_view ch, std::string_view ep,
                           std::uint64_t off,
                           const std::vector<std::shared_ptr<const std::string>>& frames, bool api);
/// `{"op":"ack","id":ID,"exp":EXP}`: a `refresh` taken (`exp` omitted when
/// the new token has none).
std::string encode_refresh_ack(std::string_view id, std::optional<std::int64_t> exp);
/// The presence reply: `{"op":"presence","id":ID,"ch":..,"count":N,"users":[..]}`
/// with `"cursor"` when more users follow; without op/id for the API.
std::string encode_presence(std::string_view id, std::string_view ch, std::size_t count,
                            const std::vector<std::string_view>& users, std::string_view cursor,
                            bool api);
/// `{"op":"join","ch":..,"user":..}` / `{"op":"leave",...}`.
std::string encode_join(std::string_view ch, std::string_view user);
std::string encode_leave(std::string_view ch, std::string_view user);
/// `{"op":"dm","from":..,"data":DATA}`; `from` omitted when empty.
std::string encode_dm(std::string_view from, std::string_view data);

/// A decoded server frame (for clients, tools and tests). Views point into
/// the frame text.
struct server_frame {
  std::string op;
  std::string_view id;
  std::string code;
  std::string msg;
  std::string ch;
  std::string from;
  std::string node;
  std::string user;
  std::string sid;
  std::string_view data;
  bool has_from = false;
  std::string ep;
  std::uint64_t off = 0;
  bool has_off = false;
  std::optional<bool> recovered;
};

/// Parses one server frame; nullopt when it is not a JSON object with a
/// string `op`.
std::optional<server_frame> parse_server_frame(std::string_view text);

} // namespace wsnode::protocol
