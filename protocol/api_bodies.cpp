#include "protocol/api_bodies.hpp"

#include "protocol/codec_detail.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <initializer_list>
#include <unordered_set>

namespace wsnode::protocol {

using detail::parse_count;

namespace {

constexpr std::size_t max_reason_bytes = 120; // a close reason fits in a control frame
constexpr std::size_t max_key_bytes = 64;

// The members of a body, raw; refuses a repeated or unknown member by name.
class body_members {
public:
  body_members(std::string_view body, std::initializer_list<std::string_view> known) {
    if (!json::validate(body)) {
      error_ = "body must be one JSON object";
      return;
    }
    bool object = json::for_each_member(body, [&](std::string_view key, std::string_view value) {
      auto k = json::decode_string("\"" + std::string{key} + "\"");
      std::string name = k ? *k : std::string{key};
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        error_ = "unknown key " + quoted(name);
        return false;
      }
      for (const auto& [n, v] : values_)
        if (n == name) {
          error_ = "key " + quoted(name) + " given twice";
          return false;
        }
      values_.emplace_back(std::move(name), value);
      return true;
    });
    if (!object)
      error_ = "body must be one JSON object";
  }
  const std::string& error() const noexcept { return error_; }
  /// The raw value of `key`; empty when absent.
  std::string_view operator[](std::string_view key) const {
    for (const auto& [n, v] : values_)
      if (n == key)
        return v;
    return {};
  }
  // At most 64 bytes of `s`, cut at a UTF-8 boundary (the message goes
  // into a JSON answer), quoted.
  static std::string quoted(std::string_view s) {
    std::size_t n = std::min<std::size_t>(s.size(), 64);
    while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
      --n;
    std::string out;
    json::append_string(out, s.substr(0, n));
    return out;
  }

private:
  std::vector<std::pair<std::string, std::string_view>> values_;
  std::string error_;
};

// A required name member (`valid` decides which, `rule` says it); false
// and `err` set when it is not one.
bool read_name(std::string_view raw, std::string_view key, bool (*valid)(std::string_view) noexcept,
               std::string_view rule, std::string& out, std::string& err) {
  if (raw.empty()) {
    err = "missing " + std::string{key};
    return false;
  }
  auto s = json::decode_string(raw);
  if (!s || !valid(*s)) {
    err = std::string{key} + " must be " + std::string{rule};
    return false;
  }
  out = std::move(*s);
  return true;
}

constexpr std::string_view user_rule = "a user id: 1-64 chars of [A-Za-z0-9_.@-]";
constexpr std::string_view channel_rule = "a channel name: 1-128 chars of [A-Za-z0-9_.:-]";

// A list of 1..max_api_names names (`valid` decides which), no repeats.
template <class Valid>
bool read_names(std::string_view raw, std::string_view key, std::string_view what, Valid valid,
                std::vector<std::string>& out, std::string& err) {
  auto bad = [&] {
    err = std::string{key} + " must be a list of 1-" + std::to_string(max_api_names) + " " +
          std::string{what} + ", each once";
    return false;
  };
  if (raw.empty()) {
    err = "missing " + std::string{key};
    return false;
  }
  bool ok = true;
  std::unordered_set<std::string> seen;
  bool array = json::for_each_element(raw, [&](std::string_view e) {
    auto s = json::decode_string(e);
    if (!s || !valid(*s) || out.size() >= max_api_names || !seen.insert(*s).second) {
      ok = false;
      return false;
    }
    out.push_back(std::move(*s));
    return true;
  });
  if (!array || !ok || out.empty())
    return bad();
  return true;
}

// An optional string of at most `max` bytes; false (err set) when not one.
bool read_string(const body_members& m, std::string_view key, std::size_t min, std::size_t max,
                 std::string& out, std::string& err) {
  auto raw = m[key];
  if (raw.empty())
    return true;
  auto s = json::decode_string(raw);
  if (!s || s->size() < min || s->size() > max) {
    err = std::string{key} + " must be a string of " + std::to_string(min) + "-" +
          std::to_string(max) + " bytes";
    return false;
  }
  out = std::move(*s);
  return true;
}

} // namespace

api_body<disconnect_body> parse_disconnect_body(std::string_view body) {
  body_members m{body, {"user", "code", "reason", "ban_ms"}};
  if (!m.error().empty())
    return m.error();
  disconnect_body b;
  std::string err;
  if (!read_name(m["user"], "user", valid_user, user_rule, b.user, err) ||
      !read_string(m, "reason", 0, max_reason_bytes, b.reason, err))
    return err;
  if (auto raw = m["code"]; !raw.empty()) {
    auto n = parse_count(raw);
    if (!n || *n < 3000 || *n > 4999)
      return std::string{"code must be an integer in 3000-4999"};
    b.code = static_cast<std::uint16_t>(*n);
  }
  if (auto raw = m["ban_ms"]; !raw.empty()) {
    auto n = parse_count(raw);
    if (!n || *n > max_ban_ms)
      return "ban_ms must be an integer in 0-" + std::to_string(max_ban_ms);
    b.ban_ms = *n;
  }
  return b;
}

api_body<user_channel_body> parse_user_channel_body(std::string_view body) {
  body_members m{body, {"user", "ch"}};
  if (!m.error().empty())
    return m.error();
  user_channel_body b;
  std::string err;
  if (!read_name(m["user"], "user", valid_user, user_rule, b.user, err) ||
      !read_name(m["ch"], "ch", valid_channel, channel_rule, b.ch, err))
    return err;
  return b;
}

api_body<broadcast_body> parse_broadcast_body(std::string_view body, std::size_t max_data_bytes) {
  body_members m{body, {"channels", "data", "key"}};
  if (!m.error().empty())
    return m.error();
  broadcast_body b;
  std::string err;
  if (!read_names(m["channels"], "channels", "channel names", valid_channel, b.channels, err) ||
      !read_string(m, "key", 1, max_key_bytes, b.key, err))
    return err;
  auto data = m["data"];
  if (data.empty())
    return std::string{"missing data"};
  if (data.size() > max_data_bytes)
    return "data is larger than " + std::to_string(max_data_bytes) + " bytes";
  b.data = data;
  return b;
}

api_body<online_body> parse_online_body(std::string_view body) {
  body_members m{body, {"users"}};
  if (!m.error().empty())
    return m.error();
  online_body b;
  std::string err;
  if (!read_names(m["users"], "users", "user ids", valid_user, b.users, err))
    return err;
  return b;
}

api_body<channels_body> parse_channels_body(std::string_view body) {
  body_members m{body, {"prefix", "limit", "cursor"}};
  if (!m.error().empty())
    return m.error();
  channels_body b;
  std::string err;
  if (!read_string(m, "prefix", 0, 128, b.prefix, err) ||
      !read_string(m, "cursor", 0, 128, b.cursor, err))
    return err;
  if (auto raw = m["limit"]; !raw.empty()) {
    auto n = parse_count(raw);
    if (!n || *n < 1 || *n > max_channels_page)
      return "limit must be an integer in 1-" + std::to_string(max_channels_page);
    b.limit = static_cast<std::size_t>(*n);
  }
  return b;
}

namespace {

void append_member(std::string& out, std::string_view key, std::string_view value) {
  out += out.size() > 1 ? ",\"" : "\"";
  out += key;
  out += "\":";
  json::append_string(out, value);
}

void append_list(std::string& out, std::string_view key, const std::vector<std::string>& names) {
  out += out.size() > 1 ? ",\"" : "\"";
  out += key;
  out += "\":[";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0)
      out += ',';
    json::append_string(out, names[i]);
  }
  out += ']';
}

} // namespace

std::string encode_body(const disconnect_body& b) {
  std::string out = "{";
  append_member(out, "user", b.user);
  append_member(out, "reason", b.reason);
  out += ",\"code\":" + std::to_string(b.code) + ",\"ban_ms\":" + std::to_string(b.ban_ms) + "}";
  return out;
}

std::string encode_body(const user_channel_body& b) {
  std::string out = "{";
  append_member(out, "user", b.user);
  append_member(out, "ch", b.ch);
  return out + "}";
}

std::string encode_body(const online_body& b) {
  std::string out = "{";
  append_list(out, "users", b.users);
  return out + "}";
}

std::string encode_body(const channels_body& b) {
  std::string out = "{";
  append_member(out, "prefix", b.prefix);
  append_member(out, "cursor", b.cursor);
  out += ",\"limit\":" + std::to_string(b.limit) + "}";
  return out;
}

} // namespace wsnode::protocol
