// Client frames and API bodies into typed commands: strict JSON, size
// limits, names, one error code per refusal. Encoding: codec_encode.cpp.
#include "protocol/codec.hpp"

#include "protocol/codec_detail.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace wsnode::protocol {

using detail::parse_count;

namespace {

constexpr std::array<std::string_view, 9> op_names{"sub",     "unsub",   "pub",      "send", "ping",
                                                   "history", "refresh", "presence", "rpc"};
constexpr std::array<std::string_view, error_code_count> error_names{
    "bad_json",  "bad_request", "unknown_op",   "bad_channel",
    "forbidden", "too_large",   "rate_limited", "unavailable"};

// The members of a command object this codec reads, as raw JSON values.
struct members {
  std::string_view op, id, ch, to, data, key, since, limit, token, cursor, method;
  std::string_view duplicate; // name of a known key given twice, if any
};

// Returns the slot of `f` for key `key` (decoded), or nullptr.
std::string_view* slot(members& f, std::string_view key) {
  if (key == "op")
    return &f.op;
  if (key == "id")
    return &f.id;
  if (key == "ch")
    return &f.ch;
  if (key == "to")
    return &f.to;
  if (key == "data")
    return &f.data;
  if (key == "key")
    return &f.key;
  if (key == "since")
    return &f.since;
  if (key == "limit")
    return &f.limit;
  if (key == "token")
    return &f.token;
  if (key == "cursor")
    return &f.cursor;
  if (key == "method")
    return &f.method;
  return nullptr;
}

// Scans a validated object; false when the top level is not an object.
bool scan(std::string_view doc, members& f) {
  return json::for_each_member(doc, [&](std::string_view key, std::string_view value) {
    std::string_view* s = nullptr;
    if (key.find('\\') == std::string_view::npos) {
      s = slot(f, key);
    } else if (auto decoded = json::decode_string(std::string{'"'} + std::string{key} + '"')) {
      s = slot(f, *decoded);
    }
    if (s == nullptr)
      return true; // unknown members are ignored (forward compatibility)
    if (!s->empty() && f.duplicate.empty())
      f.duplicate = key;
    *s = value;
    return true;
  });
}

bool is_number_token(std::string_view v) {
  return !v.empty() && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'));
}

command_error fail(error_code code, std::string msg, std::string_view id = {}) {
  return command_error{code, std::move(msg), id};
}

bool valid_method(std::string_view m) {
  return !m.empty() && m.size() <= max_method_length && std::all_of(m.begin(), m.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '/' || c == '-';
  });
}

// Reads a required string member `name`; sets `err` and returns nullopt on failure.
std::optional<std::string> required_string(std::string_view raw, std::string_view name,
                                           std::string_view id, command_error& err) {
  if (raw.empty()) {
    err = fail(error_code::bad_request, "missing " + std::string{name}, id);
    return std::nullopt;
  }
  auto s = json::decode_string(raw);
  if (!s)
    err = fail(error_code::bad_request, std::string{name} + " must be a string", id);
  return s;
}

parse_result check_channel(std::string_view raw, std::string_view id, command& cmd) {
  command_error err;
  auto ch = required_string(raw, "ch", id, err);
  if (!ch)
    return err;
  if (!valid_channel(*ch))
    return fail(error_code::bad_channel, "channel names are 1-128 chars of [A-Za-z0-9_.:-]", id);
  cmd.ch = std::move(*ch);
  return cmd;
}

parse_result check_user(std::string_view raw, std::string_view id, command& cmd) {
  command_error err;
  auto to = required_string(raw, "to", id, err);
  if (!to)
    return err;
  if (!valid_user(*to))
    return fail(error_code::bad_request, "user ids are 1-64 chars of [A-Za-z0-9_.@-]", id);
  cmd.to = std::move(*to);
  return cmd;
}

parse_result check_data(std::string_view raw, std::string_view id, const parse_limits& limits,
                        command& cmd) {
  if (raw.empty())
    return fail(error_code::bad_request, "missing data", id);
  if (raw.size() > limits.max_data_bytes)
    return fail(error_code::too_large,
                "data is larger than " + std::to_string(limits.max_data_bytes) + " bytes", id);
  cmd.data = raw;
  return cmd;
}

// The optional members of v1.1: key (pub), since (sub, history), limit
// (history, presence), token (sub, history, presence, refresh), cursor
// (presence).
std::optional<command_error> check_extras(const members& f, command& cmd) {
  if (!f.token.empty() && cmd.kind != op::pub && cmd.kind != op::unsub) {
    auto t = json::decode_string(f.token);
    if (!t || t->empty() || t->size() > max_token_length)
      return fail(error_code::bad_request, "token must be a string of 1-4096 bytes", f.id);
    cmd.token = std::move(*t);
  }
  if (!f.cursor.empty() && cmd.kind == op::presence) {
    auto c = json::decode_string(f.cursor);
    if (!c || c->size() > max_cursor_length)
      return fail(error_code::bad_request, "cursor must be a string from a presence reply", f.id);
    cmd.cursor = std::move(*c);
  }
  if (!f.key.empty() && cmd.kind == op::pub) {
    auto k = json::decode_string(f.key);
    if (!k || k->empty() || k->size() > max_key_length)
      return fail(error_code::bad_request, "key must be a string of 1-64 bytes", f.id);
    cmd.key = std::move(*k);
  }
  if (!f.since.empty() && (cmd.kind == op::sub || cmd.kind == op::history)) {
    position p;
    bool has_ep = false;
    bool has_off = false;
    bool ok = json::for_each_member(f.since, [&](std::string_view key, std::string_view value) {
      if (key == "ep") {
        auto e = json::decode_string(value);
        has_ep = e && e->size() <= max_epoch_length;
        if (has_ep)
          p.ep = std::move(*e);
      } else if (key == "off") {
        auto n = parse_count(value);
        has_off = n.has_value();
        if (has_off)
          p.off = *n;
      }
      return true;
    });
    if (!ok || !has_ep || !has_off)
      return fail(error_code::bad_request, "since must be {\"ep\":STRING,\"off\":INTEGER >= 0}",
                  f.id);
    cmd.since = std::move(p);
  }
  if (!f.limit.empty() && (cmd.kind == op::history || cmd.kind == op::presence)) {
    auto n = parse_count(f.limit);
    if (!n)
      return fail(error_code::bad_request, "limit must be an integer >= 0", f.id);
    cmd.limit = static_cast<std::size_t>(std::min<std::uint64_t>(*n, 1u << 30));
  }
  return std::nullopt;
}

// Validates the JSON and scans it; on failure returns the error.
std::optional<command_error> prepare(std::string_view text, members& f, bool want_id) {
  if (!json::validate(text))
    return fail(error_code::bad_json, "invalid JSON");
  if (!scan(text, f))
    return fail(error_code::bad_request, "expected a JSON object");
  if (want_id && !f.id.empty()) {
    bool is_string = f.id.front() == '"';
    if ((!is_string && !is_number_token(f.id)) || f.id.size() > max_id_length) {
      f.id = {};
      return fail(error_code::bad_request, "id must be a number or a string of at most 64 bytes");
    }
  }
  if (!f.duplicate.empty())
    return fail(error_code::bad_request, "duplicate key " + std::string{f.duplicate}, f.id);
  return std::nullopt;
}

} // namespace

std::string_view to_string(op o) noexcept {
  return op_names[static_cast<std::size_t>(o)];
}

std::string_view to_string(error_code c) noexcept {
  return error_names[static_cast<std::size_t>(c)];
}

std::optional<error_code> error_code_from(std::string_view s) noexcept {
  for (std::size_t i = 0; i < error_names.size(); ++i)
    if (error_names[i] == s)
      return static_cast<error_code>(i);
  return std::nullopt;
}

parse_result parse_command(std::string_view text, const parse_limits& limits) {
  members f;
  if (auto err = prepare(text, f, true))
    return *err;
  if (f.op.empty())
    return fail(error_code::bad_request, "missing op", f.id);
  auto name = json::decode_string(f.op);
  if (!name)
    return fail(error_code::bad_request, "op must be a string", f.id);
  command cmd;
  cmd.id = f.id;
  std::size_t i = 0;
  while (i < op_names.size() && op_names[i] != *name)
    ++i;
  if (i == op_names.size()) {
    // show at most 32 bytes, cut at a UTF-8 boundary (frames must stay valid UTF-8)
    std::size_t cut = std::min<std::size_t>(name->size(), 32);
    while (cut < name->size() && cut > 0 &&
           (static_cast<unsigned char>((*name)[cut]) & 0xC0) == 0x80)
      --cut;
    std::string shown = name->substr(0, cut);
    std::string msg = "unknown op ";
    json::append_string(msg, shown);
    return fail(error_code::unknown_op, std::move(msg), f.id);
  }
  cmd.kind = static_cast<op>(i);
  switch (cmd.kind) {
  case op::sub:
  case op::unsub:
  case op::history:
  case op::presence: {
    auto r = check_channel(f.ch, f.id, cmd);
    if (std::holds_alternative<command_error>(r))
      return r;
    if (auto err = check_extras(f, cmd))
      return *err;
    if (cmd.kind == op::sub && !f.data.empty()) // passed to the subscribe hook
      return check_data(f.data, f.id, limits, cmd);
    return cmd;
  }
  case op::rpc: {
    command_error err;
    auto m = required_string(f.method, "method", f.id, err);
    if (!m)
      return err;
    if (!valid_method(*m))
      return fail(error_code::bad_request, "method must be 1-64 chars of [A-Za-z0-9_.:/-]", f.id);
    cmd.method = std::move(*m);
    if (f.data.empty())
      return cmd;
    return check_data(f.data, f.id, limits, cmd);
  }
  case op::pub: {
    auto r = check_channel(f.ch, f.id, cmd);
    if (std::holds_alternative<command_error>(r))
      return r;
    if (auto err = check_extras(f, cmd))
      return *err;
    return check_data(f.data, f.id, limits, cmd);
  }
  case op::send: {
    auto r = check_user(f.to, f.id, cmd);
    if (std::holds_alternative<command_error>(r))
      return r;
    return check_data(f.data, f.id, limits, cmd);
  }
  case op::refresh:
    if (auto err = check_extras(f, cmd))
      return *err;
    if (cmd.token.empty())
      return fail(error_code::bad_request, "refresh needs a token", f.id);
    return cmd;
  case op::ping:
    return cmd;
  }
  return cmd;
}

parse_result parse_api_body(std::string_view body, op kind, const parse_limits& limits) {
  members f;
  if (auto err = prepare(body, f, false))
    return *err;
  command cmd;
  cmd.kind = kind;
  auto r = kind == op::pub ? check_channel(f.ch, {}, cmd) : check_user(f.to, {}, cmd);
  if (std::holds_alternative<command_error>(r))
    return r;
  if (auto err = check_extras(f, cmd))
    return *err;
  return check_data(f.data, {}, limits, cmd);
}

parse_result parse_history_body(std::string_view body, op kind) {
  members f;
  if (auto err = prepare(body, f, false))
    return *err;
  command cmd;
  cmd.kind = kind;
  auto r = check_channel(f.ch, {}, cmd);
  if (std::holds_alternative<command_error>(r))
    return r;
  if (auto err = check_extras(f, cmd))
    return *err;
  return cmd;
}

} // namespace wsnode::protocol
