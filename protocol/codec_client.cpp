// The client's side of the codec: commands as a client sends them and
// server frames as a client reads them. wsbench, the tests and the fuzzers
// use it; the server does not.
#include "protocol/codec.hpp"

#include "protocol/codec_detail.hpp"
#include "protocol/json_scan.hpp"

namespace wsnode::protocol {

using detail::append_field;
using detail::append_name;
using detail::parse_count;

std::string encode_command(const command& c) {
  std::string out = "{\"op\":\"";
  out += to_string(c.kind);
  out += '"';
  if (c.kind != op::ping && c.kind != op::send && c.kind != op::refresh && c.kind != op::rpc)
    append_name(out, "ch", c.ch);
  if (c.kind == op::rpc)
    append_name(out, "method", c.method);
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
  else if (!c.data.empty()) // a sub's or an rpc's optional data
    append_field(out, "data", c.data);
  if (!c.id.empty())
    append_field(out, "id", c.id);
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
