#include "protocol/codec.hpp"
#include "protocol/hook_codec.hpp"
#include "protocol/json_scan.hpp"

#include <doctest/doctest.h>

using namespace wsnode::protocol;

namespace {

std::string why(hook_kind k, std::string_view body) {
  auto a = parse_hook_answer(k, body);
  REQUIRE(a.what == hook_answer::kind::failed);
  CHECK(a.failure == hook_failure::malformed);
  return a.why;
}

} // namespace

TEST_CASE("hook answers: a connect result with every field") {
  auto a = parse_hook_answer(
      hook_kind::connect,
      R"({"result":{"user":"ann","expire_at":1900000000,"channels":["news","room:1"],"meta":{"plan": "pro"},"extra":1}})");
  REQUIRE(a.ok());
  CHECK(a.user == "ann");
  CHECK(a.expire_at == 1900000000);
  CHECK(a.channels == std::vector<std::string>{"news", "room:1"});
  CHECK(a.meta == R"({"plan": "pro"})"); // kept exactly as written
  auto plain = parse_hook_answer(hook_kind::connect, R"({"result":{"user":"bob"}})");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain.expire_at);
  CHECK_FALSE(plain.meta);
}

TEST_CASE("hook answers: error, disconnect, publish and rpc data") {
  auto e = parse_hook_answer(hook_kind::publish, R"({"error":{"code":"banned_word","msg":"no"}})");
  REQUIRE(e.what == hook_answer::kind::error);
  CHECK(e.code == "banned_word");
  CHECK(e.msg == "no");
  auto d = parse_hook_answer(hook_kind::connect, R"({"disconnect":{"code":4003,"reason":"bye"}})");
  REQUIRE(d.what == hook_answer::kind::disconnect);
  CHECK(d.close_code == 4003);
  CHECK(d.reason == "bye");
  auto p = parse_hook_answer(hook_kind::publish, R"({"result":{"data":[1, "x"]}})");
  REQUIRE(p.ok());
  CHECK(p.data == R"([1, "x"])");
  auto allow = parse_hook_answer(hook_kind::publish, R"({"result":{}})");
  REQUIRE(allow.ok());
  CHECK_FALSE(allow.data);
  auto r = parse_hook_answer(hook_kind::refresh, R"({"result":{"expire_at":5,"meta":null}})");
  REQUIRE(r.ok());
  CHECK(r.expire_at == 5);
  CHECK(r.meta == "null");
}

TEST_CASE("hook answers: malformed ones say what is wrong") {
  CHECK(why(hook_kind::publish, "not json") == "malformed answer: not JSON");
  CHECK(why(hook_kind::publish, "[1]") == "malformed answer: expected a JSON object");
  CHECK(why(hook_kind::publish, "{}") == "malformed answer: expected exactly one of result, error");
  CHECK(why(hook_kind::publish, R"({"result":{},"error":{"code":"x"}})").find("exactly one") !=
        std::string::npos);
  CHECK(why(hook_kind::publish, R"({"result":[]})") ==
        "malformed answer: result must be an object");
  CHECK(why(hook_kind::connect, R"({"result":{}})") == "malformed answer: result.user is missing");
  CHECK(why(hook_kind::connect, R"({"result":{"user":7}})").find("result.user") !=
        std::string::npos);
  CHECK(why(hook_kind::connect, R"({"result":{"user":"a b"}})").find("result.user") !=
        std::string::npos);
  CHECK(why(hook_kind::connect, R"({"result":{"user":"a","expire_at":1.5}})").find("expire_at") !=
        std::string::npos);
  CHECK(why(hook_kind::connect, R"({"result":{"user":"a","channels":"news"}})").find("channels") !=
        std::string::npos);
  CHECK(why(hook_kind::connect, R"({"result":{"user":"a","channels":["bad ch"]}})")
            .find("channels") != std::string::npos);
  CHECK(why(hook_kind::refresh, R"({"result":{}})") ==
        "malformed answer: result.expire_at is missing");
  CHECK(why(hook_kind::publish, R"({"error":{"code":"Forbidden"}})").find("error.code") !=
        std::string::npos);
  CHECK(why(hook_kind::publish, R"({"error":{"msg":"x"}})") ==
        "malformed answer: error.code is missing");
  CHECK(why(hook_kind::publish, R"({"disconnect":{"code":4003}})").find("only an answer") !=
        std::string::npos);
  CHECK(why(hook_kind::connect, R"({"disconnect":{"code":1000}})").find("3000-4999") !=
        std::string::npos);
}

TEST_CASE("hook answers: a long reason is cut at a UTF-8 boundary to fit a close frame") {
  std::string reason(200, 'a');
  reason[119] = '\xc3'; // é starting at byte 119 must not be split
  reason[120] = '\xa9';
  auto a = parse_hook_answer(hook_kind::connect,
                             R"({"disconnect":{"code":4000,"reason":")" + reason + "\"}}");
  REQUIRE(a.what == hook_answer::kind::disconnect);
  CHECK(a.reason.size() == 119);
}

TEST_CASE("hook requests: bodies are JSON with every field") {
  auto c = encode_connect_hook("n1", "127.0.0.1:5", {{"Cookie", "a=\"1\""}}, "x=1&y=2",
                               std::string{"tok"});
  CHECK(
      c ==
      R"({"hook":"connect","node":"n1","remote":"127.0.0.1:5","headers":{"Cookie":"a=\"1\""},"query":"x=1&y=2","token":"tok"})");
  CHECK(json::validate(c));
  auto p =
      encode_session_hook(hook_kind::publish, {"n1", "n1-4", "ann", ""}, "chat:1", R"({"t":1})");
  CHECK(
      p ==
      R"({"hook":"publish","node":"n1","sid":"n1-4","user":"ann","meta":null,"ch":"chat:1","data":{"t":1}})");
  CHECK(
      encode_session_hook(hook_kind::publish, {"n1", "n1-4", "ann", ""}, "c", "1", "k1") ==
      R"({"hook":"publish","node":"n1","sid":"n1-4","user":"ann","meta":null,"ch":"c","data":1,"key":"k1"})");
  auto r = encode_session_hook(hook_kind::rpc, {"n1", "n1-4", "ann", "[1]"}, "get", "");
  CHECK(
      r ==
      R"({"hook":"rpc","node":"n1","sid":"n1-4","user":"ann","meta":[1],"method":"get","data":null})");
  auto f = encode_session_hook(hook_kind::refresh, {"n1", "n1-4", "ann", ""}, {}, {});
  CHECK(f == R"({"hook":"refresh","node":"n1","sid":"n1-4","user":"ann","meta":null})");
}

TEST_CASE("the rpc op and the v1.2 frames") {
  parse_limits limits;
  auto r = parse_command(R"({"op":"rpc","method":"get_profile","data":{"id":7},"id":9})", limits);
  auto& c = std::get<command>(r);
  CHECK(c.kind == op::rpc);
  CHECK(c.method == "get_profile");
  CHECK(c.data == R"({"id":7})");
  CHECK(std::get<command>(parse_command(encode_command(c), limits)).method == "get_profile");
  auto no_method = parse_command(R"({"op":"rpc","id":1})", limits);
  CHECK(std::get<command_error>(no_method).code == error_code::bad_request);
  auto bad_method = parse_command(R"({"op":"rpc","method":"a b","id":1})", limits);
  CHECK(std::get<command_error>(bad_method).code == error_code::bad_request);
  auto sub = parse_command(R"({"op":"sub","ch":"chat:1","data":{"pw":1}})", limits);
  CHECK(std::get<command>(sub).data == R"({"pw":1})");
  CHECK(encode_rpc_reply("9", R"({"name":"Ann"})") ==
        R"({"op":"rpc","id":9,"data":{"name":"Ann"}})");
  CHECK(encode_rpc_reply("9", "") == R"({"op":"rpc","id":9,"data":null})");
  CHECK(encode_subscribed("news", "", 0) == R"({"op":"subscribed","ch":"news"})");
  CHECK(encode_subscribed("c:1", "e1", 4) == R"({"op":"subscribed","ch":"c:1","ep":"e1","off":4})");
  CHECK(encode_err("1", "banned", "no") == R"({"op":"err","id":1,"code":"banned","msg":"no"})");
  CHECK(to_string(error_code::unavailable) == "unavailable");
}

TEST_CASE("webhook bodies and their signature") {
  auto e = encode_event("n1-5-1", "connect", 1700000000123, R"("sid":"n1-1","user":"ann")");
  CHECK(e == R"({"id":"n1-5-1","type":"connect","time":1700000000123,"sid":"n1-1","user":"ann"})");
  auto b = encode_event_batch("n1", {e, e});
  CHECK(json::validate(b));
  CHECK(b.starts_with(R"({"node":"n1","events":[{"id")"));
  // RFC 4231, test case 2
  CHECK(sign_body("Jefe", "what do ya want for nothing?") ==
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
