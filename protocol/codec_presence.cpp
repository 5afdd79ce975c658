// Encoders of protocol v1.1's presence and token frames (docs/protocol.md
// "Presence", "Private channels and tokens"). Channel names, user ids and
// cursors are validated before they get here, so they need no escaping.
#include "protocol/codec.hpp"

namespace wsnode::protocol {

namespace {

void open_reply(std::string& out, std::string_view op, std::string_view id, bool api) {
  if (api) {
    out += '{';
    return;
  }
  out += "{\"op\":\"";
  out += op;
  out += '"';
  if (!id.empty()) {
    out += ",\"id\":";
    out += id;
  }
  out += ',';
}

std::string event(std::string_view op, std::string_view ch, std::string_view user) {
  std::string out;
  out.reserve(32 + ch.size() + user.size());
  out += "{\"op\":\"";
  out += op;
  out += "\",\"ch\":\"";
  out += ch;
  out += "\",\"user\":\"";
  out += user;
  out += "\"}";
  return out;
}

} // namespace

std::string encode_refresh_ack(std::string_view id, std::optional<std::int64_t> exp) {
  std::string out = "{\"op\":\"ack\"";
  if (!id.empty()) {
    out += ",\"id\":";
    out += id;
  }
  if (exp)
    out += ",\"exp\":" + std::to_string(*exp);
  out += '}';
  return out;
}

std::string encode_presence(std::string_view id, std::string_view ch, std::size_t count,
                            const std::vector<std::string_view>& users, std::string_view cursor,
                            bool api) {
  std::string out;
  std::size_t size = 64 + ch.size() + cursor.size();
  for (auto u : users)
    size += u.size() + 3;
  out.reserve(size);
  open_reply(out, "presence", id, api);
  out += "\"ch\":\"";
  out += ch;
  out += "\",\"count\":" + std::to_string(count) + ",\"users\":[";
  bool first = true;
  for (auto u : users) {
    if (!first)
      out += ',';
    first = false;
    out += '"';
    out += u;
    out += '"';
  }
  out += ']';
  if (!cursor.empty()) {
    out += ",\"cursor\":\"";
    out += cursor;
    out += '"';
  }
  out += '}';
  return out;
}

std::string encode_join(std::string_view ch, std::string_view user) {
  return event("join", ch, user);
}

std::string encode_leave(std::string_view ch, std::string_view user) {
  return event("leave", ch, user);
}

} // namespace wsnode::protocol
