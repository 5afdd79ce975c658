#include "app/log_format.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <ctime>
#include <iterator>
#include <string_view>

namespace wsnode {

namespace {

void append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

// The length of the well-formed UTF-8 sequence that starts at s[i] with a
// byte >= 0x80 (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF); 0 when it is not one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  std::size_t n = 0;
  unsigned char lo = 0x80; // the range of the second byte
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() - i < n || byte(i + 1) < lo || byte(i + 1) > hi)
    return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF)
      return 0;
  return n;
}

// Appends `s` as the inside of a JSON string.
void append_escaped(spdlog::memory_buf_t& dest, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      std::size_t n = utf8_length(s, i);
      if (n == 0) {
        append(dest, "\\ufffd");
        ++i;
      } else {
        append(dest, s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
    case '"':
      append(dest, "\\\"");
      break;
    case '\\':
      append(dest, "\\\\");
      break;
    case '\n':
      append(dest, "\\n");
      break;
    case '\r':
      append(dest, "\\r");
      break;
    case '\t':
      append(dest, "\\t");
      break;
    default:
      if (c < 0x20) {
        append(dest, "\\u00");
        dest.push_back(hex[c >> 4]);
        dest.push_back(hex[c & 0xF]);
      } else {
        dest.push_back(static_cast<char>(c));
      }
    }
    ++i;
  }
}

std::string_view view(spdlog::string_view_t s) {
  return {s.data(), s.size()};
}

} // namespace

void json_log_formatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  const auto secs = std::chrono::floor<std::chrono::seconds>(msg.time);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time - secs).count();
  const std::time_t t = spdlog::log_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  fmt::format_to(std::back_inserter(dest),
                 "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ms);
  append_escaped(dest, view(spdlog::level::to_string_view(msg.level)));
  append(dest, "\",\"logger\":\"");
  append_escaped(dest, view(msg.logger_name));
  append(dest, "\",\"msg\":\"");
  append_escaped(dest, view(msg.payload));
  append(dest, "\"}\n");
}

std::unique_ptr<spdlog::formatter> json_log_formatter::clone() const {
  return std::make_unique<json_log_formatter>();
}

} // namespace wsnode
