// Server frames, each encoded once and shared by every receiver (acks,
// errors, msg/dm deliveries, history answers). Client frames: codec_client.cpp.
#include "protocol/codec.hpp"

#include "protocol/codec_detail.hpp"
#include "protocol/json_scan.hpp"

#include <charconv>

namespace wsnode::protocol {

using detail::append_field;
using detail::append_name;
using detail::with_optional_id;

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
  return encode_err(id, to_string(code), msg);
}

std::string encode_err(std::string_view id, std::string_view code, std::string_view msg) {
  std::string out = "{\"op\":\"err\"";
  if (!id.empty())
    append_field(out, "id", id);
  append_name(out, "code", code);
  out += ",\"msg\":";
  json::append_string(out, msg);
  out += '}';
  return out;
}

std::string encode_rpc_reply(std::string_view id, std::string_view data) {
  std::string out = "{\"op\":\"rpc\"";
  if (!id.empty())
    append_field(out, "id", id);
  append_field(out, "data", data.empty() ? std::string_view{"null"} : data);
  out += '}';
  return out;
}

std::string encode_subscribed(std::string_view ch, std::string_view ep, std::uint64_t off) {
  std::string out = "{\"op\":\"subscribed\"";
  append_name(out, "ch", ch);
  if (!ep.empty()) {
    out += ",\"ep\":";
    json::append_string(out, ep);
    out += ",\"off\":" + std::to_string(off);
  }
  out += '}';
  return out;
}

std::string encode_unsubscribed(std::string_view ch) {
  std::string out = "{\"op\":\"unsubscribed\"";
  append_name(out, "ch", ch);
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

} // namespace wsnode::protocol
