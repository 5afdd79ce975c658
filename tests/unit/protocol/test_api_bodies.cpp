// The bodies of the cluster-wide server API (protocol/api_bodies.hpp): every
// member read back, the defaults, each refusal naming its member, and the
// bodies a node forwards parsing back to the same fields.
#include "protocol/api_bodies.hpp"
#include "protocol/json_scan.hpp"

#include <doctest/doctest.h>

#include <string>
#include <variant>
#include <vector>

using namespace wsnode::protocol;

namespace {

template <class T>
T accepted(api_body<T> b) {
  if (const auto* why = std::get_if<std::string>(&b))
    FAIL("refused: " << *why);
  return std::get<T>(std::move(b));
}

template <class T>
std::string refused(const api_body<T>& b) {
  REQUIRE(std::holds_alternative<std::string>(b));
  return std::get<std::string>(b);
}

// The member a refusal is about: "missing KEY" -> KEY, "KEY must ..." -> KEY.
std::string subject(const std::string& why) {
  constexpr std::string_view missing = "missing ";
  if (why.starts_with(missing))
    return why.substr(missing.size());
  return why.substr(0, why.find(' '));
}

std::string dis(const std::string& body) {
  return subject(refused(parse_disconnect_body(body)));
}
std::string uch(const std::string& body) {
  return subject(refused(parse_user_channel_body(body)));
}
std::string bro(const std::string& body, std::size_t max_data = 64) {
  return subject(refused(parse_broadcast_body(body, max_data)));
}
std::string onl(const std::string& body) {
  return subject(refused(parse_online_body(body)));
}
std::string chs(const std::string& body) {
  return subject(refused(parse_channels_body(body)));
}

// A JSON list of n distinct names: ["<prefix>0","<prefix>1",...].
std::string names_list(std::size_t n, const std::string& prefix) {
  std::string out = "[";
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0)
      out += ',';
    out += '"' + prefix + std::to_string(i) + '"';
  }
  return out + "]";
}

} // namespace

TEST_CASE("api bodies: a disconnect body with every member reads back") {
  auto b = accepted(parse_disconnect_body(
      R"({"user":"ann.b@x-1","code":4001,"reason":"bye \"now\"","ban_ms":60000})"));
  CHECK(b.user == "ann.b@x-1");
  CHECK(b.code == 4001);
  CHECK(b.reason == "bye \"now\"");
  CHECK(b.ban_ms == 60000);
  auto edges = accepted(parse_disconnect_body(R"({"ban_ms":)" + std::to_string(max_ban_ms) +
                                              R"(,"code":3000,"user":"u"})"));
  CHECK(edges.code == 3000);
  CHECK(edges.ban_ms == max_ban_ms);
  CHECK(accepted(parse_disconnect_body(R"({"user":"u","code":4999})")).code == 4999);
  auto r120 =
      accepted(parse_disconnect_body(R"({"user":"u","reason":")" + std::string(120, 'r') + "\"}"));
  CHECK(r120.reason.size() == 120);
}

TEST_CASE("api bodies: a disconnect body left short takes code 4003, no reason and no ban") {
  auto b = accepted(parse_disconnect_body(R"({"user":"ann"})"));
  CHECK(b.user == "ann");
  CHECK(b.code == 4003);
  CHECK(b.reason.empty());
  CHECK(b.ban_ms == 0);
}

TEST_CASE("api bodies: a refused disconnect body says which member is wrong") {
  CHECK(dis(R"({})") == "user");
  CHECK(dis(R"({"code":4000})") == "user");
  CHECK(dis(R"({"user":"a b"})") == "user");
  CHECK(dis(R"({"user":7})") == "user");
  CHECK(dis(R"({"user":""})") == "user");
  CHECK(dis(R"({"user":")" + std::string(65, 'u') + "\"}") == "user");
  for (std::string code : {"2999", "5000", R"("x")", "-1", "4000.5", "4e3", "null"}) {
    CAPTURE(code);
    CHECK(dis(R"({"user":"ann","code":)" + code + "}") == "code");
  }
  CHECK(dis(R"({"user":"ann","ban_ms":)" + std::to_string(max_ban_ms + 1) + "}") == "ban_ms");
  CHECK(dis(R"({"user":"ann","ban_ms":-5})") == "ban_ms");
  CHECK(dis(R"({"user":"ann","ban_ms":"60000"})") == "ban_ms");
  CHECK(dis(R"({"user":"ann","reason":")" + std::string(121, 'r') + "\"}") == "reason");
  CHECK(dis(R"({"user":"ann","reason":7})") == "reason");
}

TEST_CASE("api bodies: a subscribe body reads back its user and channel, and names what is wrong") {
  auto b = accepted(parse_user_channel_body(R"({"ch":"room:1","user":"ann"})"));
  CHECK(b.user == "ann");
  CHECK(b.ch == "room:1");
  CHECK(uch(R"({"ch":"room:1"})") == "user");
  CHECK(uch(R"({"user":"a b","ch":"room:1"})") == "user");
  CHECK(uch(R"({"user":"ann"})") == "ch");
  CHECK(uch(R"({"user":"ann","ch":"bad ch"})") == "ch");
  CHECK(uch(R"({"user":"ann","ch":""})") == "ch");
  CHECK(uch(R"({"user":"ann","ch":["room:1"]})") == "ch");
  CHECK(uch(R"({"user":"ann","ch":")" + std::string(129, 'c') + "\"}") == "ch");
  CHECK(accepted(parse_user_channel_body(R"({"user":"ann","ch":")" + std::string(128, 'c') + "\"}"))
            .ch.size() == 128);
}

TEST_CASE("api bodies: a broadcast body keeps data byte for byte") {
  auto b = accepted(parse_broadcast_body(
      R"({"channels":["news","room:1"],"data": {"a": 1.50} ,"key":"k-1"})", 4096));
  CHECK(b.channels == std::vector<std::string>{"news", "room:1"});
  CHECK(b.data == R"({"a": 1.50})");
  CHECK(b.key == "k-1");
  auto plain = accepted(parse_broadcast_body(R"({"data":"hi \u00e9","channels":["x"]})", 4096));
  CHECK(plain.data == R"("hi \u00e9")"); // not decoded
  CHECK(plain.key.empty());
  CHECK(accepted(parse_broadcast_body(R"({"channels":["x"],"data":null})", 4096)).data == "null");
  auto k64 = accepted(parse_broadcast_body(
      R"({"channels":["x"],"data":1,"key":")" + std::string(64, 'k') + "\"}", 4096));
  CHECK(k64.key.size() == 64);
  auto many = accepted(parse_broadcast_body(
      R"({"channels":)" + names_list(max_api_names, "c") + R"(,"data":1})", 4096));
  CHECK(many.channels.size() == max_api_names);
  CHECK(many.channels.back() == "c999");
}

TEST_CASE("api bodies: data of exactly max_data_bytes passes and one byte more is refused") {
  // the raw value counts, quotes included: "12345678" is 10 bytes
  auto b = accepted(parse_broadcast_body(R"({"channels":["x"],"data":"12345678"})", 10));
  CHECK(b.data == R"("12345678")");
  CHECK(bro(R"({"channels":["x"],"data":"123456789"})", 10) == "data");
}

TEST_CASE("api bodies: a refused broadcast body says which member is wrong") {
  CHECK(bro(R"({"data":1})") == "channels");
  CHECK(bro(R"({"channels":[],"data":1})") == "channels");
  CHECK(bro(R"({"channels":"news","data":1})") == "channels");
  CHECK(bro(R"({"channels":{"a":1},"data":1})") == "channels");
  CHECK(bro(R"({"channels":["news",7],"data":1})") == "channels");
  CHECK(bro(R"({"channels":["news","bad ch"],"data":1})") == "channels");
  CHECK(bro(R"({"channels":["news","room:1","news"],"data":1})") == "channels");
  CHECK(bro(R"({"channels":)" + names_list(max_api_names + 1, "c") + R"(,"data":1})", 4096) ==
        "channels");
  CHECK(bro(R"({"channels":["news"]})") == "data");
  CHECK(bro(R"({"channels":["news"],"data":1,"key":""})") == "key");
  CHECK(bro(R"({"channels":["news"],"data":1,"key":")" + std::string(65, 'k') + "\"}") == "key");
  CHECK(bro(R"({"channels":["news"],"data":1,"key":5})") == "key");
}

TEST_CASE("api bodies: an online body reads back its users and names what is wrong") {
  auto b = accepted(parse_online_body(R"({"users":["ann","bob.c@d"]})"));
  CHECK(b.users == std::vector<std::string>{"ann", "bob.c@d"});
  auto many = accepted(parse_online_body(R"({"users":)" + names_list(max_api_names, "u") + "}"));
  CHECK(many.users.size() == max_api_names);
  CHECK(onl(R"({})") == "users");
  CHECK(onl(R"({"users":[]})") == "users");
  CHECK(onl(R"({"users":"ann"})") == "users");
  CHECK(onl(R"({"users":["ann","a b"]})") == "users");
  CHECK(onl(R"({"users":["ann","bob","ann"]})") == "users");
  CHECK(onl(R"({"users":)" + names_list(max_api_names + 1, "u") + "}") == "users");
}

TEST_CASE("api bodies: a channels body reads back, defaults to the first 100, and names what is "
          "wrong") {
  auto b = accepted(parse_channels_body(R"({"prefix":"room:","limit":50,"cursor":"room:7"})"));
  CHECK(b.prefix == "room:");
  CHECK(b.limit == 50);
  CHECK(b.cursor == "room:7");
  auto d = accepted(parse_channels_body("{}"));
  CHECK(d.prefix.empty());
  CHECK(d.limit == 100);
  CHECK(d.cursor.empty());
  CHECK(accepted(parse_channels_body(R"({"limit":1})")).limit == 1);
  CHECK(accepted(parse_channels_body(R"({"limit":1000})")).limit == max_channels_page);
  for (std::string limit : {"0", "1001", R"("5")", "1.5", "-1", "null"}) {
    CAPTURE(limit);
    CHECK(chs(R"({"limit":)" + limit + "}") == "limit");
  }
  CHECK(chs(R"({"prefix":")" + std::string(129, 'p') + "\"}") == "prefix");
  CHECK(chs(R"({"cursor":7})") == "cursor");
}

TEST_CASE("api bodies: an unknown member, a repeated one, or no JSON object is refused by name") {
  auto unknown = refused(parse_disconnect_body(R"({"user":"ann","colour":"red"})"));
  CHECK(unknown.find("colour") != std::string::npos);
  CHECK(refused(parse_user_channel_body(R"({"user":"ann","ch":"x","chan":1})")).find("chan") !=
        std::string::npos);
  CHECK(refused(parse_broadcast_body(R"({"channels":["x"],"data":1,"ttl":5})", 64)).find("ttl") !=
        std::string::npos);
  CHECK(refused(parse_online_body(R"({"users":["a"],"user":"a"})")).find("\"user\"") !=
        std::string::npos);
  CHECK(refused(parse_channels_body(R"({"page":2})")).find("page") != std::string::npos);
  auto twice = refused(parse_disconnect_body(R"({"user":"ann","user":"bob"})"));
  CHECK(twice.find("user") != std::string::npos);
  CHECK(twice.find("twice") != std::string::npos);
  CHECK(refused(parse_channels_body(R"({"limit":5,"limit":5})")).find("limit") !=
        std::string::npos);
  // an escaped member name is the member it spells
  CHECK(accepted(parse_disconnect_body(R"({"us\u0065r":"ann"})")).user == "ann");
  CHECK(refused(parse_disconnect_body(R"({"user":"ann","us\u0065r":"bob"})")).find("twice") !=
        std::string::npos);
  for (std::string body :
       {"", "not json", "{", R"({"user":"ann"} x)", "[1]", R"("user")", "null", "4003"}) {
    CAPTURE(body);
    CHECK(dis(body) == "body");
    CHECK(onl(body) == "body");
    CHECK(chs(body) == "body");
  }
}

TEST_CASE("api bodies: an encoded body parses back to the same fields") {
  disconnect_body d;
  d.user = "ann.b@x";
  d.code = 4100;
  d.reason = "say \"bye\"\n\\ \xc3\xa9";
  d.ban_ms = max_ban_ms;
  CHECK(json::validate(encode_body(d)));
  auto d2 = accepted(parse_disconnect_body(encode_body(d)));
  CHECK(d2.user == d.user);
  CHECK(d2.code == d.code);
  CHECK(d2.reason == d.reason);
  CHECK(d2.ban_ms == d.ban_ms);
  disconnect_body plain;
  plain.user = "bob";
  auto d3 = accepted(parse_disconnect_body(encode_body(plain)));
  CHECK(d3.user == "bob");
  CHECK(d3.code == 4003);
  CHECK(d3.reason.empty());
  CHECK(d3.ban_ms == 0);

  user_channel_body u{"ann", "room:1.a-b_c"};
  auto u2 = accepted(parse_user_channel_body(encode_body(u)));
  CHECK(u2.user == u.user);
  CHECK(u2.ch == u.ch);

  online_body o{{"ann", "bob.c@d", "x"}};
  CHECK(accepted(parse_online_body(encode_body(o))).users == o.users);

  channels_body c;
  c.prefix = "room:";
  c.limit = 7;
  c.cursor = "room:3";
  auto c2 = accepted(parse_channels_body(encode_body(c)));
  CHECK(c2.prefix == c.prefix);
  CHECK(c2.limit == c.limit);
  CHECK(c2.cursor == c.cursor);
  auto c3 = accepted(parse_channels_body(encode_body(channels_body{})));
  CHECK(c3.prefix.empty());
  CHECK(c3.limit == 100);
  CHECK(c3.cursor.empty());
}
