// The server API's cluster-wide calls as answers (actors/cluster_answers.hpp):
// the calls' names, each node's part, and the merge of the parts into the
// HTTP answer, with the nodes that did not answer (or answered nonsense)
// listed as missing.
#include "actors/cluster_answers.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace wsnode;
using namespace wsnode::actors;
namespace bj = boost::json;

namespace {

bj::object merged(cluster_api c, const std::vector<node_part>& parts, std::size_t limit,
                  std::vector<std::string> missing) {
  auto text = merge_parts(c, parts, limit, std::move(missing));
  boost::system::error_code ec;
  auto v = bj::parse(text, ec);
  REQUIRE_MESSAGE(!ec, text);
  REQUIRE_MESSAGE(v.is_object(), text);
  return v.as_object();
}

std::string str(const bj::value& v) {
  const auto& s = v.as_string();
  return std::string{s.data(), s.size()};
}

std::vector<std::string> strings(const bj::value& v) {
  std::vector<std::string> out;
  for (const auto& e : v.as_array())
    out.push_back(str(e));
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// "user=N" per member of the answer's "online", in order.
std::vector<std::string> online_of(const bj::object& o) {
  std::vector<std::string> out;
  for (const auto& kv : o.at("online").as_object())
    out.push_back(std::string{kv.key().data(), kv.key().size()} + "=" +
                  std::to_string(kv.value().as_int64()));
  return out;
}

// "ch=N" per entry of the answer's "channels", in order.
std::vector<std::string> page_of(const bj::object& o) {
  std::vector<std::string> out;
  for (const auto& e : o.at("channels").as_array()) {
    const auto& entry = e.as_object();
    out.push_back(str(entry.at("ch")) + "=" + std::to_string(entry.at("subscribers").as_int64()));
  }
  return out;
}

} // namespace

TEST_CASE("cluster answers: every call's name leads back to the call; other names to none") {
  for (int i = 0; i < cluster_api_count; ++i) {
    auto c = static_cast<cluster_api>(i);
    CAPTURE(i);
    auto back = cluster_api_from(to_string(c));
    REQUIRE(back.has_value());
    CHECK(*back == c);
  }
  CHECK(to_string(cluster_api::disconnect) == "disconnect");
  CHECK(to_string(cluster_api::subscribe) == "subscribe");
  CHECK(to_string(cluster_api::unsubscribe) == "unsubscribe");
  CHECK(to_string(cluster_api::online) == "online");
  CHECK(to_string(cluster_api::channels) == "channels");
  CHECK(to_string(cluster_api::info) == "info");
  for (const std::string s : {"", "broadcast", "Disconnect", "info ", "disconnec"}) {
    CAPTURE(s);
    CHECK_FALSE(cluster_api_from(s).has_value());
  }
}

TEST_CASE("cluster answers: the parts are the JSON objects the merge reads") {
  CHECK(sessions_part(3) == R"({"sessions":3})");
  CHECK(online_part({"ann", "bob"}, {2, 0}) == R"({"online":{"ann":2,"bob":0}})");
  CHECK(online_part({"ann", "bob"}, {2}) == R"({"online":{"ann":2,"bob":0}})"); // short counts
  CHECK(channels_part({{"a", 1}, {"b:1", 20}}, true) ==
        R"({"channels":[["a",1],["b:1",20]],"more":true})");
  CHECK(channels_part({}, false) == R"({"channels":[],"more":false})");
  node_info i{"n1", -1, 4, 5, 60, "1.2.0"};
  CHECK(
      info_part(i) ==
      R"({"node":"n1","connections":-1,"sessions":4,"channels":5,"uptime_s":60,"version":"1.2.0"})");
}

TEST_CASE("cluster answers: disconnect sums the sessions and lists the nodes that did not answer "
          "properly") {
  // the exact answer when every node answered
  CHECK(merge_parts(cluster_api::disconnect, {{"n1", sessions_part(2)}, {"n2", sessions_part(0)}},
                    0, {}) == R"({"ok":true,"sessions":2,"nodes":2})");
  std::vector<node_part> parts{{"n1", sessions_part(2)},
                               {"n2", sessions_part(3)},
                               {"n3", ""},
                               {"n4", "{\"sessions\":"},
                               {"n5", R"({"other":1})"},
                               {"n6", R"({"sessions":-1})"},
                               {"n7", R"({"sessions":"4"})"},
                               {"n8", "[1]"}};
  for (auto c : {cluster_api::disconnect, cluster_api::subscribe, cluster_api::unsubscribe}) {
    CAPTURE(to_string(c));
    auto o = merged(c, parts, 100, {"n9"});
    CHECK(o.at("ok").as_bool());
    CHECK(o.at("sessions").as_int64() == 5);
    CHECK(o.at("nodes").as_int64() == 2);
    CHECK(sorted(strings(o.at("missing"))) ==
          std::vector<std::string>{"n3", "n4", "n5", "n6", "n7", "n8", "n9"});
  }
  auto none = merged(cluster_api::disconnect, {}, 100, {"n1", "n2"});
  CHECK(none.at("sessions").as_int64() == 0);
  CHECK(none.at("nodes").as_int64() == 0);
  CHECK(sorted(strings(none.at("missing"))) == std::vector<std::string>{"n1", "n2"});
  auto all = merged(cluster_api::subscribe, {{"n1", sessions_part(1)}}, 100, {});
  CHECK(all.at("sessions").as_int64() == 1);
  CHECK_FALSE(all.contains("missing"));
}

TEST_CASE("cluster answers: online sums each user's sessions across the parts and keeps every "
          "user") {
  std::vector<node_part> parts{{"n1", online_part({"ann", "bob", "cid"}, {1, 0, 0})},
                               {"n2", online_part({"ann", "bob", "cid"}, {2, 3, 0})},
                               {"n3", "{}"},
                               {"n4", R"({"online":[1]})"},
                               {"n5", "nonsense"}};
  auto o = merged(cluster_api::online, parts, 100, {"n6"});
  CHECK(online_of(o) == std::vector<std::string>{"ann=3", "bob=3", "cid=0"});
  CHECK(o.at("nodes").as_int64() == 2);
  CHECK(sorted(strings(o.at("missing"))) == std::vector<std::string>{"n3", "n4", "n5", "n6"});
  auto one = merged(cluster_api::online, {{"n1", online_part({"zed", "amy"}, {0, 7})}}, 100, {});
  CHECK(online_of(one) == std::vector<std::string>{"zed=0", "amy=7"}); // the order asked
  CHECK(one.at("nodes").as_int64() == 1);
  CHECK_FALSE(one.contains("missing"));
}

TEST_CASE("cluster answers: channels merge into one sorted page with summed subscribers and a "
          "cursor only when more follow") {
  std::vector<node_part> parts{{"n1", channels_part({{"a", 1}, {"c", 2}, {"e", 1}}, false)},
                               {"n2", channels_part({{"b", 1}, {"c", 3}}, false)}};
  // more in the union than the page holds: the first `limit`, a cursor at the last
  auto cut = merged(cluster_api::channels, parts, 3, {});
  CHECK(page_of(cut) == std::vector<std::string>{"a=1", "b=1", "c=5"});
  REQUIRE(cut.contains("cursor"));
  CHECK(str(cut.at("cursor")) == "c");
  CHECK(cut.at("nodes").as_int64() == 2);
  CHECK_FALSE(cut.contains("missing"));
  // all of it fits: no cursor
  auto whole = merged(cluster_api::channels, parts, 10, {});
  CHECK(page_of(whole) == std::vector<std::string>{"a=1", "b=1", "c=5", "e=1"});
  CHECK_FALSE(whole.contains("cursor"));
  // exactly `limit` in the union and no node has more: no cursor
  auto exact = merged(cluster_api::channels, parts, 4, {});
  CHECK(page_of(exact).size() == 4);
  CHECK_FALSE(exact.contains("cursor"));
  // a node says more follow on it: a cursor even though the page is not full
  auto more = parts;
  more[1].json = channels_part({{"b", 1}, {"c", 3}}, true);
  auto told = merged(cluster_api::channels, more, 10, {});
  CHECK(page_of(told) == std::vector<std::string>{"a=1", "b=1", "c=5", "e=1"});
  REQUIRE(told.contains("cursor"));
  CHECK(str(told.at("cursor")) == "e");
  // parts that are no channels answer are missing, the rest still counts
  auto bad = parts;
  bad.push_back({"n3", R"({"channels":{"a":1}})"});
  bad.push_back({"n4", ""});
  auto m = merged(cluster_api::channels, bad, 10, {"n5"});
  CHECK(page_of(m) == std::vector<std::string>{"a=1", "b=1", "c=5", "e=1"});
  CHECK(m.at("nodes").as_int64() == 2);
  CHECK(sorted(strings(m.at("missing"))) == std::vector<std::string>{"n3", "n4", "n5"});
  // nothing anywhere
  auto empty = merged(cluster_api::channels, {{"n1", channels_part({}, false)}}, 10, {});
  CHECK(empty.at("channels").as_array().empty());
  CHECK_FALSE(empty.contains("cursor"));
}

TEST_CASE("cluster answers: info lists each node's object as given, sorted by node, and the "
          "missing") {
  node_info a{"n1", 3, 4, 5, 60, "1.2.0"};
  node_info b{"n2", 0, 0, 0, 1, "1.2.0-rc1"};
  std::vector<node_part> parts{
      {"n2", info_part(b)}, {"n1", info_part(a)}, {"n3", "{}"}, {"n0", "oops"}};
  auto o = merged(cluster_api::info, parts, 100, {"n4"});
  const auto& nodes = o.at("nodes").as_array();
  REQUIRE(nodes.size() == 2);
  CHECK(nodes[0] == bj::parse(info_part(a)));
  CHECK(nodes[1] == bj::parse(info_part(b)));
  CHECK(sorted(strings(o.at("missing"))) == std::vector<std::string>{"n0", "n3", "n4"});
  auto all = merged(cluster_api::info, {{"n1", info_part(a)}}, 100, {});
  CHECK(all.at("nodes").as_array().size() == 1);
  CHECK_FALSE(all.contains("missing"));
}
