// What the codec's three files share (protocol/codec_detail.hpp): the
// appenders of the encoders and the count reader of the parsers.
#include "protocol/codec_detail.hpp"

#include <doctest/doctest.h>

#include <limits>

using namespace wsnode::protocol::detail;

TEST_CASE("codec_detail: parse_count takes plain non-negative integers only") {
  CHECK(parse_count("0") == 0u);
  CHECK(parse_count("42") == 42u);
  CHECK(parse_count("18446744073709551615") == std::numeric_limits<std::uint64_t>::max());
  CHECK_FALSE(parse_count("18446744073709551616")); // too big
  CHECK_FALSE(parse_count(""));
  CHECK_FALSE(parse_count("-1"));
  CHECK_FALSE(parse_count("+1"));
  CHECK_FALSE(parse_count("1.0"));
  CHECK_FALSE(parse_count("1e3"));
  CHECK_FALSE(parse_count(" 1"));
  CHECK_FALSE(parse_count("\"1\""));
}

TEST_CASE("codec_detail: appenders") {
  std::string out = "{\"op\":\"x\"";
  append_name(out, "ch", "room:1");
  append_field(out, "data", R"({"a":[1,2]})");
  out += '}';
  CHECK(out == R"({"op":"x","ch":"room:1","data":{"a":[1,2]}})");
  CHECK(with_optional_id("{\"op\":\"ack\"", "") == R"({"op":"ack"})");
  CHECK(with_optional_id("{\"op\":\"ack\"", "7") == R"({"op":"ack","id":7})");
  CHECK(with_optional_id("{\"op\":\"ack\"", "\"a\"") == R"({"op":"ack","id":"a"})");
}
