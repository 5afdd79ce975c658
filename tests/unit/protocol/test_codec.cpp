#include "protocol/codec.hpp"
#include "protocol/json_scan.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace wsnode::protocol;

namespace {

const parse_limits limits{};

command must_parse(std::string_view text) {
  auto r = parse_command(text, limits);
  auto* c = std::get_if<command>(&r);
  if (c == nullptr) {
    FAIL_CHECK("refused: " << text << " -> " << std::get<command_error>(r).msg);
    return {};
  }
  return *c;
}

command_error must_fail(std::string_view text, const parse_limits& l = limits) {
  auto r = parse_command(text, l);
  auto* e = std::get_if<command_error>(&r);
  if (e == nullptr) {
    FAIL_CHECK("accepted: " << text);
    return {};
  }
  return *e;
}

} // namespace

TEST_CASE("every client op round-trips through encode_command/parse_command") {
  std::vector<command> cmds;
  command c;
  c.kind = op::sub;
  c.ch = "room:1";
  c.id = "1";
  cmds.push_back(c);
  c.kind = op::unsub;
  c.id = "\"two\"";
  cmds.push_back(c);
  c.kind = op::pub;
  c.data = R"({"text":"h\u00e9llo \u2713 é","n":[1,2.5e3,-0],"ok":true,"z":null})";
  c.id = "3";
  cmds.push_back(c);
  command s;
  s.kind = op::send;
  s.to = "bob@example.com";
  s.data = "\"hi\"";
  s.id = "4";
  cmds.push_back(s);
  command p;
  p.kind = op::ping;
  p.id = "5";
  cmds.push_back(p);
  command noid;
  noid.kind = op::ping;
  cmds.push_back(noid);

  for (const auto& orig : cmds) {
    auto text = encode_command(orig);
    CAPTURE(text);
    auto back = must_parse(text);
    CHECK(back.kind == orig.kind);
    CHECK(back.id == orig.id);
    CHECK(back.ch == orig.ch);
    CHECK(back.to == orig.to);
    CHECK(back.data == orig.data); // verbatim, byte for byte
  }
}

TEST_CASE("data is passed through verbatim, whatever JSON value it is") {
  for (std::string data :
       {"0", "-1.5e-7", "18446744073709551616", "true", "null", "\"\"", "[]", "{}",
        R"("\ud83d\ude00 😀")", R"({"a":{"b":[{"c":"}]"}]}})", "  [1 , 2]"}) {
    std::string text = R"({"op":"pub","ch":"c","data":)" + data + "}";
    auto cmd = must_parse(text);
    auto trimmed = data.substr(data.find_first_not_of(' '));
    CHECK(cmd.data == trimmed);
    auto frame = encode_msg(cmd.ch, "alice", cmd.data);
    auto f = parse_server_frame(frame);
    REQUIRE(f);
    CHECK(f->op == "msg");
    CHECK(f->ch == "c");
    CHECK(f->from == "alice");
    CHECK(f->data == trimmed);
  }
}

TEST_CASE("member order, whitespace and unknown members do not matter") {
  auto c =
      must_parse(" { \"data\" : [1] ,\n \"x\":{\"op\":\"no\"}, \"ch\":\"a\", \"op\":\"pub\" } ");
  CHECK(c.kind == op::pub);
  CHECK(c.ch == "a");
  CHECK(c.data == "[1]");
  CHECK(c.id.empty());
}

TEST_CASE("escaped keys and names are decoded") {
  auto c = must_parse(R"({"op":"s\u0075b","\u0063h":"room\u003a1"})");
  CHECK(c.kind == op::sub);
  CHECK(c.ch == "room:1");
}

TEST_CASE("every error code is produced by the parser or encodable") {
  CHECK(must_fail("{").code == error_code::bad_json);
  CHECK(must_fail("").code == error_code::bad_json);
  CHECK(must_fail(R"({"op":"ping"} x)").code == error_code::bad_json);
  CHECK(must_fail("{\"op\":\"ping\",\"s\":\"\xff\"}").code == error_code::bad_json); // bad UTF-8
  CHECK(must_fail(std::string(40, '[') + std::string(40, ']')).code == error_code::bad_json);
  CHECK(must_fail("[1]").code == error_code::bad_request);
  CHECK(must_fail(R"({"id":1})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":1})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"sub"})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"sub","ch":5})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"pub","ch":"a"})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"send","data":1})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"send","to":"a b","data":1})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"ping","id":{}})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"ping","op":"ping"})").code == error_code::bad_request);
  CHECK(must_fail(R"({"op":"nope","id":9})").code == error_code::unknown_op);
  CHECK(must_fail(R"({"op":"sub","ch":"bad channel","id":9})").code == error_code::bad_channel);
  CHECK(must_fail(R"({"op":"sub","ch":""})").code == error_code::bad_channel);
  parse_limits small;
  small.max_data_bytes = 8;
  CHECK(must_fail(R"({"op":"pub","ch":"a","data":"123456789"})", small).code ==
        error_code::too_large);
  CHECK(must_fail(R"({"op":"send","to":"a","data":[1,2,3,4,5]})", small).code ==
        error_code::too_large);

  // forbidden and rate_limited are decided by the session; all codes encode
  for (int i = 0; i < error_code_count; ++i) {
    auto code = static_cast<error_code>(i);
    auto frame = encode_err("7", code, "why \"quoted\"\n");
    auto f = parse_server_frame(frame);
    REQUIRE(f);
    CHECK(f->op == "err");
    CHECK(f->id == "7");
    CHECK(f->code == to_string(code));
    CHECK(error_code_from(f->code) == code);
    CHECK(f->msg == "why \"quoted\"\n");
  }
  CHECK_FALSE(error_code_from("nope").has_value());
}

TEST_CASE("error messages stay valid UTF-8 when they quote input") {
  std::string op(31, 'o');
  op += "\xe2\x9c\x93\xe2\x9c\x93"; // a 3-byte char straddles byte 32
  auto e = must_fail(R"({"op":")" + op + R"("})");
  CHECK(e.code == error_code::unknown_op);
  CHECK(json::validate(encode_err({}, e.code, e.msg)));
}

TEST_CASE("errors carry the command's id when it was readable") {
  CHECK(must_fail(R"({"op":"nope","id":9})").id == "9");
  CHECK(must_fail(R"({"op":"sub","ch":"x y","id":"abc"})").id == "\"abc\"");
  CHECK(must_fail(R"({"op":"sub","id":[1]})").id.empty());
  CHECK(must_fail(R"({"op":"sub","id":")" + std::string(70, 'x') + "\"}").id.empty());
}

TEST_CASE("server frames encode and decode") {
  auto hello = parse_server_frame(encode_hello("n1", "alice", "n1-17"));
  REQUIRE(hello);
  CHECK(hello->op == "hello");
  CHECK(hello->node == "n1");
  CHECK(hello->user == "alice");
  CHECK(hello->sid == "n1-17");
  CHECK(encode_ack("3") == R"({"op":"ack","id":3})");
  CHECK(encode_ack({}) == R"({"op":"ack"})");
  CHECK(encode_pong("\"p\"") == R"({"op":"pong","id":"p"})");
  CHECK(encode_msg("room:1", "alice", "{}") ==
        R"({"op":"msg","ch":"room:1","from":"alice","data":{}})");
  CHECK(encode_msg("room:1", "", "1") == R"({"op":"msg","ch":"room:1","data":1})");
  CHECK(encode_dm("alice", "\"x\"") == R"({"op":"dm","from":"alice","data":"x"})");
  CHECK(encode_dm("", "2") == R"({"op":"dm","data":2})");
  auto dm = parse_server_frame(encode_dm("", "2"));
  REQUIRE(dm);
  CHECK_FALSE(dm->has_from);
  CHECK_FALSE(parse_server_frame("[]"));
  CHECK_FALSE(parse_server_frame("{\"x\":1}"));
  CHECK_FALSE(parse_server_frame("{"));
}

TEST_CASE("API bodies") {
  auto r = parse_api_body(R"({"ch":"news:1","data":{"a":1}})", op::pub, limits);
  REQUIRE(std::holds_alternative<command>(r));
  CHECK(std::get<command>(r).ch == "news:1");
  CHECK(std::get<command>(r).data == R"({"a":1})");
  auto s = parse_api_body(R"({"to":"bob","data":"x"})", op::send, limits);
  REQUIRE(std::holds_alternative<command>(s));
  CHECK(std::get<command>(s).to == "bob");
  CHECK(std::get<command_error>(parse_api_body("nope", op::pub, limits)).code ==
        error_code::bad_json);
  CHECK(std::get<command_error>(parse_api_body(R"({"ch":"a b","data":1})", op::pub, limits)).code ==
        error_code::bad_channel);
  CHECK(std::get<command_error>(parse_api_body(R"({"ch":"a"})", op::pub, limits)).code ==
        error_code::bad_request);
  CHECK(std::get<command_error>(parse_api_body(R"({"data":1})", op::send, limits)).code ==
        error_code::bad_request);
}

TEST_CASE("json::validate and append_string") {
  CHECK(json::validate(" {\"a\":[1,2,{\"b\":null}]} "));
  CHECK(json::validate("\"x\""));
  CHECK_FALSE(json::validate("{\"a\":1,}"));
  CHECK_FALSE(json::validate("{} {}"));
  CHECK_FALSE(json::validate("// c\n{}"));
  CHECK_FALSE(json::validate("\"\xc3\""));
  std::string out;
  json::append_string(out, std::string("a\"\\\x01\t", 5));
  CHECK(out == "\"a\\\"\\\\\\u0001\\t\"");
  CHECK(json::decode_string(out) == std::string("a\"\\\x01\t", 5));
  CHECK_FALSE(json::decode_string("1").has_value());
}

TEST_CASE("protocol v1.1: since, key, limit, history; positions in frames") {
  using namespace wsnode::protocol;
  parse_limits lim;
  auto r =
      parse_command(R"({"op":"sub","ch":"room:1","id":1,"since":{"ep":"k3x9","off":40}})", lim);
  auto& c = std::get<command>(r);
  REQUIRE(c.since);
  CHECK(c.since->ep == "k3x9");
  CHECK(c.since->off == 40);
  auto p = std::get<command>(parse_command(R"({"op":"pub","ch":"a","data":1,"key":"c-17"})", lim));
  CHECK(p.key == "c-17");
  auto h = std::get<command>(parse_command(R"({"op":"history","ch":"a","limit":5})", lim));
  CHECK(h.kind == op::history);
  CHECK(h.limit == 5u);
  for (auto bad :
       {R"({"op":"sub","ch":"a","since":{"ep":"x"}})",
        R"({"op":"sub","ch":"a","since":{"ep":1,"off":2}})",
        R"({"op":"sub","ch":"a","since":{"ep":"x","off":-1}})",
        R"({"op":"sub","ch":"a","since":{"ep":"x","off":1.5}})",
        R"({"op":"sub","ch":"a","since":5})", R"({"op":"pub","ch":"a","data":1,"key":""})",
        R"({"op":"pub","ch":"a","data":1,"key":7})", R"({"op":"history","ch":"a","limit":"3"})",
        R"({"op":"history"})"}) {
    auto e = parse_command(bad, lim);
    REQUIRE_MESSAGE(std::holds_alternative<command_error>(e), bad);
    CHECK(std::get<command_error>(e).code == error_code::bad_request);
  }
  auto api = std::get<command>(parse_history_body(R"({"ch":"a","since":{"ep":"e","off":3}})"));
  CHECK(api.since->off == 3);
  CHECK(std::holds_alternative<command_error>(parse_history_body(R"({"limit":1})")));

  auto m = encode_msg("room:1", "alice", 42, R"({"text":"hi"})");
  CHECK(m == R"({"op":"msg","ch":"room:1","from":"alice","off":42,"data":{"text":"hi"}})");
  CHECK(msg_offset(m, 6) == 42);
  CHECK(msg_offset(encode_msg("room:1", "", 7, "1"), 6) == 7);
  CHECK(msg_offset(encode_msg("room:1", "", "1"), 6) == 0);
  CHECK(encode_sub_ack("1", "k3x9", 42, true) ==
        R"({"op":"ack","id":1,"ep":"k3x9","off":42,"recovered":true})");
  CHECK(encode_sub_ack({}, "e", 0, std::nullopt) == R"({"op":"ack","ep":"e","off":0})");
  CHECK(encode_pub_ack("3", 43) == R"({"op":"ack","id":3,"off":43})");
  CHECK(encode_resync("room:1") == R"({"op":"resync","ch":"room:1"})");
  std::vector<frame_view> frames{m};
  CHECK(
      encode_history("9", "room:1", "k3x9", 42, frames, false) ==
      R"({"op":"history","id":9,"ch":"room:1","ep":"k3x9","off":42,"pubs":[{"from":"alice","off":42,"data":{"text":"hi"}}]})");
  CHECK(encode_history({}, "room:1", "e", 0, std::vector<frame_view>{}, true) ==
        R"({"ch":"room:1","ep":"e","off":0,"pubs":[]})");
  auto f = parse_server_frame(R"({"op":"ack","ep":"e","off":3,"recovered":false})");
  REQUIRE(f);
  CHECK(f->ep == "e");
  CHECK(f->off == 3);
  CHECK(f->recovered == false);
}
