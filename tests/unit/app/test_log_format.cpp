// [log] format = "json": every line one JSON object, whatever the message holds.
#include "app/log_format.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <doctest/doctest.h>

#include <string>
#include <string_view>

using namespace wsnode;

namespace {

std::string format_line(std::string_view text, spdlog::level::level_enum level) {
  json_log_formatter f;
  spdlog::details::log_msg msg{"wsnode", level, spdlog::string_view_t{text.data(), text.size()}};
  spdlog::memory_buf_t buf;
  f.format(msg, buf);
  return std::string{buf.data(), buf.size()};
}

std::string str(const boost::json::value& v) {
  const auto& s = v.as_string();
  return {s.data(), s.size()};
}

} // namespace

TEST_CASE("json log lines: one object a line, the message escaped") {
  const std::string text = "close reason=\"bye\" path=C:\\tmp\nnext\tline \x01 \x1f ü 日本 end";
  auto line = format_line(text, spdlog::level::warn);
  CAPTURE(line);
  REQUIRE_FALSE(line.empty());
  CHECK(line.find('\n') == line.size() - 1); // one line, ended
  auto v = boost::json::parse(line);
  REQUIRE(v.is_object());
  const auto& o = v.as_object();
  CHECK(o.size() == 4);
  CHECK(str(o.at("msg")) == text);
  CHECK(str(o.at("level")) == "warning");
  CHECK(str(o.at("logger")) == "wsnode");
  auto stamp = str(o.at("time"));
  CHECK(stamp.size() == 24); // 2026-11-25T15:54:08.701Z
  CHECK(stamp[10] == 'T');
  CHECK(stamp[19] == '.');
  CHECK(stamp.back() == 'Z');
  // spdlog clones the formatter for each sink
  auto clone = json_log_formatter{}.clone();
  spdlog::memory_buf_t buf;
  clone->format(spdlog::details::log_msg{"wsnode", spdlog::level::info, "plain"}, buf);
  CHECK(str(boost::json::parse(std::string{buf.data(), buf.size()}).as_object().at("msg")) ==
        "plain");
}

TEST_CASE("json log lines: invalid UTF-8 becomes U+FFFD, so the line still parses") {
  // a stray continuation byte, an overlong '/', a sequence cut short at the end
  auto line = format_line("a \x80 b \xc0\xaf c \xe6\x97", spdlog::level::info);
  CAPTURE(line);
  auto v = boost::json::parse(line);
  CHECK(str(v.as_object().at("msg")) ==
        "a \xef\xbf\xbd b \xef\xbf\xbd\xef\xbf\xbd c \xef\xbf\xbd\xef\xbf\xbd");
}
