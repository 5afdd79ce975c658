// Client protocol v1: JSON text frames <-> typed commands and frames.
//
// Parsing never allocates for `data`: a command keeps views into the frame
// text, so the caller must keep that text alive while it uses the command.
// Encoding builds each outgoing frame once; names are validated before they
// get here, so they need no escaping.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace wsnode::protocol {

/// Client -> server operations.
enum class op : std::uint8_t { sub, unsub, pub, send, ping };

/// Error codes of `{"op":"err"}` frames.
enum class error_code : std::uint8_t {
  bad_json,
  bad_request,
  unknown_op,
  bad_channel,
  forbidden,
  too_large,
  rate_limited,
};
inline constexpr int error_code_count = 7;

/// Returns the wire name of `o` ("sub", ...).
std::string_view to_string(op o) noexcept;
/// Returns the wire name of `c` ("bad_json", ...).
std::string_view to_string(error_code c) noexcept;
/// Returns the code named `s`, or nullopt.
std::optional<error_code> error_code_from(std::string_view s) noexcept;

/// Longest `id` accepted, in bytes of its JSON text.
inline constexpr std::size_t max_id_length = 64;

/// One validated client command. `id` and `data` are raw JSON views into the
/// frame text (empty when absent); `ch`/`to` are decoded, validated names.
struct command {
  op kind = op::ping;
  std::string_view id;
  std::string ch;
  std::string to;
  std::string_view data;
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
/// `{"op":"msg","ch":..,"from":..,"data":DATA}`; `from` omitted when empty.
std::string encode_msg(std::string_view ch, std::string_view from, std::string_view data);
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
};

/// Parses one server frame; nullopt when it is not a JSON object with a
/// string `op`.
std::optional<server_frame> parse_server_frame(std::string_view text);

} // namespace wsnode::protocol
