#include "protocol/hook_codec.hpp"

#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <charconv>

namespace wsnode::protocol {

namespace {

constexpr std::array<std::string_view, hook_kind_count> kind_names{"connect", "refresh",
                                                                   "subscribe", "publish", "rpc"};
constexpr std::array<std::string_view, hook_failure_count> failure_names{
    "none", "timeout", "unreachable", "status", "malformed", "too_large"};

/// The most server-side channels one connect answer may name.
constexpr std::size_t max_connect_channels = 1024;
/// The longest `msg` or `reason` passed on (a close reason must fit in a
/// control frame: 123 bytes; a msg goes in an err frame).
constexpr std::size_t max_msg_bytes = 1024;
constexpr std::size_t max_reason_bytes = 120;

hook_answer malformed(std::string why) {
  return hook_failed(hook_failure::malformed, "malformed answer: " + std::move(why));
}

bool is_error_code(std::string_view c) {
  return !c.empty() && c.size() <= 32 &&
         std::all_of(c.begin(), c.end(), [](char x) { return (x >= 'a' && x <= 'z') || x == '_'; });
}

std::optional<std::int64_t> as_integer(std::string_view raw) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), v);
  if (raw.empty() || ec != std::errc{} || end != raw.data() + raw.size())
    return std::nullopt;
  return v;
}

// Cuts `s` to at most `n` bytes at a UTF-8 boundary (it goes into frames
// that must stay valid UTF-8).
std::string cut_utf8(std::string s, std::size_t n) {
  if (s.size() <= n)
    return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
    --n;
  s.resize(n);
  return s;
}

bool is_object(std::string_view raw) {
  return !raw.empty() && raw.front() == '{';
}

// The members of `result` for hook `k`.
std::optional<hook_answer> read_result(hook_kind k, std::string_view result, hook_answer& a) {
  std::optional<hook_answer> bad;
  bool has_user = false;
  json::for_each_member(result, [&](std::string_view key, std::string_view value) {
    if (k == hook_kind::connect && key == "user") {
      auto u = json::decode_string(value);
      if (!u || !valid_user(*u))
        bad = malformed("result.user must be a string of 1-64 chars of [A-Za-z0-9_.@-]");
      else
        a.user = std::move(*u), has_user = true;
    } else if ((k == hook_kind::connect || k == hook_kind::refresh) && key == "expire_at") {
      auto v = as_integer(value);
      if (!v || *v < 0)
        bad = malformed("result.expire_at must be unix seconds (an integer)");
      else
        a.expire_at = *v;
    } else if (k == hook_kind::connect && key == "channels") {
      std::size_t n = 0;
      bool is_array = json::for_each_element(value, [&](std::string_view e) {
        auto ch = json::decode_string(e);
        if (!ch || !valid_channel(*ch)) {
          bad = malformed("result.channels must be channel names (1-128 chars of [A-Za-z0-9_.:-])");
          return false;
        }
        if (++n > max_connect_channels) {
          bad = malformed("result.channels names more than 1024 channels");
          return false;
        }
        a.channels.push_back(std::move(*ch));
        return true;
      });
      if (!is_array)
        bad = malformed("result.channels must be an array");
    } else if ((k == hook_kind::connect || k == hook_kind::refresh) && key == "meta") {
      a.meta = std::string{value};
    } else if ((k == hook_kind::publish || k == hook_kind::rpc) && key == "data") {
      a.data = std::string{value};
    }
    return !bad; // other members are ignored (forward compatibility)
  });
  if (bad)
    return bad;
  if (k == hook_kind::connect && !has_user)
    return malformed("result.user is missing");
  if (k == hook_kind::refresh && !a.expire_at)
    return malformed("result.expire_at is missing");
  return std::nullopt;
}

std::optional<hook_answer> read_error(std::string_view raw, hook_answer& a) {
  std::optional<hook_answer> bad;
  json::for_each_member(raw, [&](std::string_view key, std::string_view value) {
    if (key == "code") {
      auto c = json::decode_string(value);
      if (!c || !is_error_code(*c))
        bad = malformed("error.code must be a string of 1-32 chars of [a-z_]");
      else
        a.code = std::move(*c);
    } else if (key == "msg") {
      auto m = json::decode_string(value);
      if (!m)
        bad = malformed("error.msg must be a string");
      else
        a.msg = cut_utf8(std::move(*m), max_msg_bytes);
    }
    return !bad;
  });
  if (bad)
    return bad;
  if (a.code.empty())
    return malformed("error.code is missing");
  return std::nullopt;
}

std::optional<hook_answer> read_disconnect(std::string_view raw, hook_answer& a) {
  std::optional<hook_answer> bad;
  json::for_each_member(raw, [&](std::string_view key, std::string_view value) {
    if (key == "code") {
      auto c = as_integer(value);
      if (!c || *c < 3000 || *c > 4999)
        bad = malformed("disconnect.code must be an integer 3000-4999");
      else
        a.close_code = static_cast<std::uint16_t>(*c);
    } else if (key == "reason") {
      auto r = json::decode_string(value);
      if (!r)
        bad = malformed("disconnect.reason must be a string");
      else
        a.reason = cut_utf8(std::move(*r), max_reason_bytes);
    }
    return !bad;
  });
  if (bad)
    return bad;
  if (a.close_code == 0)
    return malformed("disconnect.code is missing");
  return std::nullopt;
}

} // namespace

std::string_view to_string(hook_kind k) noexcept {
  return kind_names[static_cast<std::size_t>(k)];
}

std::string_view to_string(hook_failure f) noexcept {
  return failure_names[static_cast<std::size_t>(f)];
}

hook_answer hook_failed(hook_failure f, std::string why) {
  hook_answer a;
  a.what = hook_answer::kind::failed;
  a.failure = f;
  a.why = std::move(why);
  return a;
}

hook_answer parse_hook_answer(hook_kind k, std::string_view body) {
  if (!json::validate(body))
    return malformed("not JSON");
  std::string_view result, error, disconnect;
  int found = 0;
  bool is_obj = json::for_each_member(body, [&](std::string_view key, std::string_view value) {
    if (key == "result")
      result = value, ++found;
    else if (key == "error")
      error = value, ++found;
    else if (key == "disconnect")
      disconnect = value, ++found;
    return true;
  });
  if (!is_obj)
    return malformed("expected a JSON object");
  bool may_disconnect = k == hook_kind::connect || k == hook_kind::refresh;
  if (found != 1)
    return malformed(may_disconnect ? "expected exactly one of result, error, disconnect"
                                    : "expected exactly one of result, error");
  hook_answer a;
  if (!result.empty()) {
    if (!is_object(result))
      return malformed("result must be an object");
    a.what = hook_answer::kind::result;
    if (auto bad = read_result(k, result, a))
      return std::move(*bad);
  } else if (!error.empty()) {
    if (!is_object(error))
      return malformed("error must be an object");
    a.what = hook_answer::kind::error;
    if (auto bad = read_error(error, a))
      return std::move(*bad);
  } else {
    if (!may_disconnect)
      return malformed("disconnect is only an answer to connect and refresh");
    if (!is_object(disconnect))
      return malformed("disconnect must be an object");
    a.what = hook_answer::kind::disconnect;
    if (auto bad = read_disconnect(disconnect, a))
      return std::move(*bad);
  }
  return a;
}

std::string encode_connect_hook(std::string_view node, std::string_view remote,
                                const std::vector<std::pair<std::string, std::string>>& headers,
                                std::string_view query, const std::optional<std::string>& token) {
  std::string out = "{\"hook\":\"connect\",\"node\":";
  json::append_string(out, node);
  out += ",\"remote\":";
  json::append_string(out, remote);
  out += ",\"headers\":{";
  bool first = true;
  for (const auto& [name, value] : headers) {
    if (!first)
      out += ',';
    first = false;
    json::append_string(out, name);
    out += ':';
    json::append_string(out, value);
  }
  out += "},\"query\":";
  json::append_string(out, query);
  if (token) {
    out += ",\"token\":";
    json::append_string(out, *token);
  }
  out += '}';
  return out;
}

std::string encode_session_hook(hook_kind k, const hook_session& s, std::string_view target,
                                std::string_view data, std::string_view key) {
  std::string out = "{\"hook\":\"";
  out += to_string(k);
  out += "\",\"node\":";
  json::append_string(out, s.node);
  out += ",\"sid\":";
  json::append_string(out, s.sid);
  out += ",\"user\":";
  json::append_string(out, s.user);
  out += ",\"meta\":";
  out += s.meta.empty() ? std::string_view{"null"} : s.meta;
  if (k == hook_kind::subscribe || k == hook_kind::publish) {
    out += ",\"ch\":";
    json::append_string(out, target);
  } else if (k == hook_kind::rpc) {
    out += ",\"method\":";
    json::append_string(out, target);
  }
  if (k != hook_kind::refresh) {
    out += ",\"data\":";
    out += data.empty() ? std::string_view{"null"} : data;
  }
  if (k == hook_kind::publish && !key.empty()) {
    out += ",\"key\":";
    json::append_string(out, key);
  }
  out += '}';
  return out;
}

std::string encode_event(std::string_view id, std::string_view type, std::int64_t time_ms,
                         std::string_view fields) {
  std::string out = "{\"id\":";
  json::append_string(out, id);
  out += ",\"type\":";
  json::append_string(out, type);
  out += ",\"time\":" + std::to_string(time_ms);
  if (!fields.empty()) {
    out += ',';
    out += fields;
  }
  out += '}';
  return out;
}

std::string encode_event_batch(std::string_view node, const std::vector<std::string>& events) {
  std::string out = "{\"node\":";
  json::append_string(out, node);
  out += ",\"events\":[";
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (i > 0)
      out += ',';
    out += events[i];
  }
  out += "]}";
  return out;
}

std::string sign_body(std::string_view secret, std::string_view body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "sha256=";
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 15];
  }
  return out;
}

} // namespace wsnode::protocol
