// Small helpers shared by the codec's files: appenders for the encoders of
// server frames (codec_encode.cpp) and client frames (codec_client.cpp),
// and the count reader of the parsers. Private to protocol/.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsnode::protocol::detail {

/// Appends ,"key":VALUE with VALUE raw JSON.
inline void append_field(std::string& out, std::string_view key, std::string_view raw_value) {
  out += ",\"";
  out += key;
  out += "\":";
  out += raw_value;
}

/// Appends ,"key":"NAME" for a name that needs no escaping (channel, user, node).
inline void append_name(std::string& out, std::string_view key, std::string_view name) {
  out += ",\"";
  out += key;
  out += "\":\"";
  out += name;
  out += '"';
}

/// `head` (an object missing its end), then ,"id":ID when `id` is given, then }.
inline std::string with_optional_id(std::string_view head, std::string_view id) {
  std::string out{head};
  if (!id.empty())
    append_field(out, "id", id);
  out += '}';
  return out;
}

/// A JSON number that is a non-negative integer written plainly; nullopt
/// for anything else (a fraction, an exponent, a sign, a string).
inline std::optional<std::uint64_t> parse_count(std::string_view raw) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), v);
  if (raw.empty() || ec != std::errc{} || end != raw.data() + raw.size())
    return std::nullopt;
  return v;
}

} // namespace wsnode::protocol::detail
