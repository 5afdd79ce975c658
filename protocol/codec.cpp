#include "protocol/codec.hpp"

#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace wsnode::protocol {

namespace {

constexpr std::array<std::string_view, 8> op_names{"sub",  "unsub",   "pub",     "send",
                                                   "ping", "history", "refresh", "presence"};
constexpr std::array<std::string_view, error_code_count> error_names{
    "bad_json",  "bad_request", "unknown_op",  "bad_channel",
    "forbidden", "too_large",   "rate_limited"};

// The members of a command object this codec reads, as raw JSON values.
struct members {
  std::string_view op, id, ch, to, data, key, since, limit, token, cursor;
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

// A JSON integer token >= 0 (no sign, fraction or exponent).
std::optional<std::uint64_t> parse_count(std::string_view raw) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), v);
  if (raw.empty() || ec != std::errc{} || end != raw.data() + raw.size())
    return std::nullopt;
  return v;
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

void append_field(std::string& out, std::string_view key, std::string_view raw_value) {
  out += ",\"";
  out += key;
  out += "\":";
  out += raw_value;
}

void append_name(std::string& out, std::string_view key, std::string_view name) {
  out += ",\"";
  out += key;
  out += "\":\"";
  out += name;
  out += '"';
}

std::string with_optional_id(std::string_view head, std::string_view id) {
  std::string out{head};
  if (!id.empty())
    append_field(out, "id", id);
  out += '}';
  return out;
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
    return cmd;
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

std::string encode_command(const command& c) {
  std::string out = "{\"op\":\"";
  out += to_string(c.kind);
  out += '"';
  if (c.kind != op::ping && c.kind != op::send && c.kind != op::refresh)
    append_name(out, "ch", c.ch);
  if (!c.token.empty()) {
    out += ",\"token\":";
    json::append_string(out, c.token);
  }
  if (!c.cursor.empty()) {
    out += ",\"cursor\":";
    json::append_string(out, c.cursor);
  }
  if (!c.key.empty())
    append_name(out, "key", c.key);
  if (c.since) {
    out += ",\"since\":{\"ep\":";
    json::append_string(out, c.since->ep);
    out += ",\"off\":" + std::to_string(c.since->off) + "}";
  }
  if (c.limit)
    out += ",\"limit\":" + std::to_string(*c.limit);
  if (c.kind == op::send)
    append_name(out, "to", c.to);
  if (c.kind == op::pub || c.kind == op::send)
    append_field(out, "data", c.data.empty() ? std::string_view{"null"} : c.data);
  if (!c.id.empty())
    append_field(out, "id", c.id);
  out += '}';
  return out;
}

std::string encode_hello(std::string_view node, std::string_view user, std::string_view sid) {
  std::string out = "{\"op\":\"hello\"";
  append_name(out, "node", node);
  append_name(out, "user", user);
  append_name(out, "sid", sid);
  out += '}';
  return out;
}

std::string encode_ack(std::string_view id) {
  return with_optional_id("{\"op\":\"ack\"", id);
}

std::string encode_pong(std::string_view id) {
  return with_optional_id("{\"op\":\"pong\"", id);
}

std::string encode_err(std::string_view id, error_code code, std::string_view msg) {
  std::string out = "{\"op\":\"err\"";
  if (!id.empty())
    append_field(out, "id", id);
  append_name(out, "code", to_string(code));
  out += ",\"msg\":";
  json::append_string(out, msg);
  out += '}';
  return out;
}

std::string encode_msg(std::string_view ch, std::string_view from, std::string_view data) {
  std::string out;
  out.reserve(40 + ch.size() + from.size() + data.size());
  out += "{\"op\":\"msg\"";
  append_name(out, "ch", ch);
  if (!from.empty())
    append_name(out, "from", from);
  append_field(out, "data", data);
  out += '}';
  return out;
}

std::string encode_msg(std::string_view ch, std::string_view from, std::uint64_t off,
                       std::string_view data) {
  std::string out;
  out.reserve(56 + ch.size() + from.size() + data.size());
  out += "{\"op\":\"msg\"";
  append_name(out, "ch", ch);
  if (!from.empty())
    append_name(out, "from", from);
  out += ",\"off\":";
  out += std::to_string(off);
  append_field(out, "data", data);
  out += '}';
  return out;
}

namespace {
// Where the members after "ch" start in a msg frame of a channel of `ch_size`
// bytes: {"op":"msg","ch":"NAME" is 19 bytes plus the name.
constexpr std::size_t msg_tail(std::size_t ch_size) noexcept {
  return 19 + ch_size;
}
} // namespace

std::uint64_t msg_offset(std::string_view frame, std::size_t ch_size) noexcept {
  constexpr std::string_view tag = ",\"off\":";
  auto tail = msg_tail(ch_size);
  if (frame.size() <= tail)
    return 0;
  auto pos = frame.find(tag, tail); // before data: from holds no quote
  if (pos == std::string_view::npos)
    return 0;
  std::uint64_t v = 0;
  auto* b = frame.data() + pos + tag.size();
  std::from_chars(b, frame.data() + frame.size(), v);
  return v;
}

std::string encode_sub_ack(std::string_view id, std::string_view ep, std::uint64_t off,
                           std::optional<bool> recovered) {
  std::string out = "{\"op\":\"ack\"";
  if (!id.empty())
    append_field(out, "id", id);
  out += ",\"ep\":";
  json::append_string(out, ep);
  out += ",\"off\":" + std::to_string(off);
  if (recovered)
    out += *recovered ? ",\"recovered\":true" : ",\"recovered\":false";
  out += '}';
  return out;
}

std::string encode_pub_ack(std::string_view id, std::uint64_t off) {
  std::string out = "{\"op\":\"ack\"";
  if (!id.empty())
    append_field(out, "id", id);
  out += ",\"off\":" + std::to_string(off) + "}";
  return out;
}

std::string encode_resync(std::string_view ch) {
  std::string out = "{\"op\":\"resync\"";
  append_name(out, "ch", ch);
  out += '}';
  return out;
}

std::string encode_history(std::string_view id, std::string_view ch, std::string_view ep,
                           std::uint64_t off, const std::vector<frame_view>& frames, bool api) {
  std::size_t n = 64 + ch.size();
  for (auto f : frames)
    n += f.size();
  std::string out;
  out.reserve(n);
  out += '{';
  if (!api) {
    out += "\"op\":\"history\"";
    if (!id.empty())
      append_field(out, "id", id);
    out += ',';
  }
  out += "\"ch\":\"";
  out += ch;
  out += "\",\"ep\":";
  json::append_string(out, ep);
  out += ",\"off\":" + std::to_string(off) + ",\"pubs\":[";
  auto tail = msg_tail(ch.size());
  bool first = true;
  for (auto f : frames) {
    if (f.size() <= tail + 1)
      continue;
    if (!first)
      out += ',';
    first = false;
    out += '{';
    out += f.substr(tail + 1); // "from":..,"off":..,"data":..}
  }
  out += "]}";
  return out;
}

std::string encode_history(std::string_view id, std::string_view ch, std::string_view ep,
                           std::uint64_t off,
                           const std::vector<std::shared_ptr<const std::string>>& frames,
                           bool api) {
  std::vector<frame_view> views;
  views.reserve(frames.size());
  for (const auto& f : frames)
    views.emplace_back(*f);
  return encode_history(id, ch, ep, off, views, api);
}

std::string encode_dm(std::string_view from, std::string_view data) {
  std::string out;
  out.reserve(32 + from.size() + data.size());
  out += "{\"op\":\"dm\"";
  if (!from.empty())
    append_name(out, "from", from);
  append_field(out, "data", data);
  out += '}';
  return out;
}

std::optional<server_frame> parse_server_frame(std::string_view text) {
  if (!json::validate(text))
    return std::nullopt;
  server_frame f;
  bool has_op = false;
  bool ok = json::for_each_member(text, [&](std::string_view key, std::string_view value) {
    auto str = [&](std::string& dst) {
      if (auto s = json::decode_string(value))
        dst = std::move(*s);
    };
    if (key == "op") {
      str(f.op);
      has_op = !f.op.empty();
    } else if (key == "id") {
      f.id = value;
    } else if (key == "data") {
      f.data = value;
    } else if (key == "code") {
      str(f.code);
    } else if (key == "msg") {
      str(f.msg);
    } else if (key == "ch") {
      str(f.ch);
    } else if (key == "from") {
      str(f.from);
      f.has_from = true;
    } else if (key == "node") {
      str(f.node);
    } else if (key == "user") {
      str(f.user);
    } else if (key == "sid") {
      str(f.sid);
    } else if (key == "ep") {
      str(f.ep);
    } else if (key == "off") {
      if (auto n = parse_count(value)) {
        f.off = *n;
        f.has_off = true;
      }
    } else if (key == "recovered") {
      f.recovered = value == "true";
    }
    return true;
  });
  if (!ok || !has_op)
    return std::nullopt;
  return f;
}

} // namespace wsnode::protocol
