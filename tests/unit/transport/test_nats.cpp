// The NATS backbone's pure parts: subject tokens (transport/nats_subjects),
// the node view and its barrier (transport/nats_view), and what wsnode
// writes into JetStream and reads back (transport/js_wire), on a clock the
// test moves; no server.
#include "transport/js_wire.hpp"
#include "transport/nats_subjects.hpp"
#include "transport/nats_view.hpp"

#include <doctest/doctest.h>

using namespace wsnode;
using namespace wsnode::transport;
using namespace std::chrono_literals;

namespace {
const nats::clock::time_point t0{};
}

TEST_CASE("nats subjects: every name is one token and decodes exactly") {
  for (const std::string& name :
       std::vector<std::string>{"room:1", "room:a.b", "a.b.c", "x*y>z", "alice@example.com", "a b",
                                "%41", "caf\xc3\xa9", std::string("nul\0byte", 8)}) {
    auto token = nats::encode_token(name);
    CHECK(token.find('.') == std::string::npos);
    CHECK(token.find('*') == std::string::npos);
    CHECK(token.find('>') == std::string::npos);
    CHECK(token.find(' ') == std::string::npos);
    auto back = nats::decode_token(token);
    REQUIRE(back);
    CHECK(*back == name);
  }
  CHECK(nats::encode_token("room:a.b") == "room:a%2Eb");
}

TEST_CASE("nats subjects: tokens that encode_token never writes are refused") {
  CHECK_FALSE(nats::decode_token(""));
  CHECK_FALSE(nats::decode_token("a%2"));  // cut short
  CHECK_FALSE(nats::decode_token("a%2e")); // lower-case hex: one spelling per name
  CHECK_FALSE(nats::decode_token("a%41")); // 'A' is written plain
  CHECK_FALSE(nats::decode_token("a%G1"));
  CHECK_FALSE(nats::decode_token("a.b"));
}

TEST_CASE("nats subjects: topic subjects and back") {
  auto s = nats::topic_subject("wsnode", topic_kind::channel, "room:a.b");
  CHECK(s == "wsnode.c.room:a%2Eb");
  auto t = nats::parse_topic_subject("wsnode", s);
  REQUIRE(t);
  CHECK(t->kind == topic_kind::channel);
  CHECK(t->name == "room:a.b");
  auto u =
      nats::parse_topic_subject("wsnode", nats::topic_subject("wsnode", topic_kind::user, "bob"));
  REQUIRE(u);
  CHECK(u->kind == topic_kind::user);
  CHECK_FALSE(nats::parse_topic_subject("wsnode", "other.c.room:1"));
  CHECK_FALSE(nats::parse_topic_subject("wsnode", "wsnode.x.room:1"));
  CHECK_FALSE(nats::parse_topic_subject("wsnode", "wsnode.c."));
  CHECK_FALSE(nats::parse_topic_subject("wsnode", "wsnode.hb"));
  CHECK(nats::node_subject("p", "n.1") == "p.n.n%2E1");
}

TEST_CASE("nats view: node messages and heartbeats round-trip; bad ones are refused") {
  auto wire = nats::encode_node_message('H', "n2", "room:1\nbody");
  auto nm = nats::decode_node_message(wire);
  REQUIRE(nm);
  CHECK(nm->kind == 'H');
  CHECK(nm->origin == "n2");
  CHECK(nm->body == "room:1\nbody");
  CHECK_FALSE(nats::decode_node_message(""));
  CHECK_FALSE(nats::decode_node_message(std::string("H\0", 2)));     // no origin
  CHECK_FALSE(nats::decode_node_message(std::string("H\x05n2", 4))); // shorter than it says
  auto hb_wire = nats::encode_heartbeat("n3", 42, "n1,n2");
  auto hb = nats::decode_heartbeat(hb_wire);
  REQUIRE(hb);
  CHECK(hb->origin == "n3");
  CHECK(hb->incarnation == 42);
  CHECK(hb->heard_by == "n1,n2");
  CHECK_FALSE(nats::decode_heartbeat("short"));
  auto cut = nats::encode_heartbeat("n3", 42, "");
  cut.pop_back();
  CHECK_FALSE(nats::decode_heartbeat(cut));
}

TEST_CASE("nats view: a sub waits for every live peer's barrier answer") {
  nats::node_view v{"n1", 1000ms};
  nats::clock::time_point next;
  auto r = v.step(t0, 1, next);
  REQUIRE(r.heartbeat_body); // at once after start
  // alone: confirmed at once, no barrier
  v.subscribed("p.c.a", t0 + 1s, t0);
  r = v.step(t0, 1, next);
  CHECK(r.ready == std::vector<std::string>{"p.c.a"});
  CHECK(r.barrier_peers.empty());
  // n2 and n3 hear us: a barrier goes to both, done when both answered
  v.heard({"n2", 7, "n1"}, t0);
  v.heard({"n3", 8, "n1"}, t0);
  r = v.step(t0, 1, next);
  REQUIRE(r.view);
  CHECK(*r.view == std::vector<std::string>{"n2", "n3"});
  CHECK(r.heartbeat_body); // a peer came: tell it at once that we hear it
  v.subscribed("p.c.b", t0 + 1s, t0);
  r = v.step(t0 + 1ms, 1, next);
  CHECK(r.barrier_body == "p.c.b");
  CHECK(r.barrier_peers == std::vector<std::string>{"n2", "n3"});
  CHECK(r.ready.empty());
  v.answered("n2", "p.c.b", t0 + 2ms);
  CHECK(v.step(t0 + 2ms, 1, next).ready.empty());
  v.answered("n3", "p.c.b", t0 + 3ms);
  CHECK(v.step(t0 + 3ms, 1, next).ready == std::vector<std::string>{"p.c.b"});
}

TEST_CASE("nats view: a gone peer is not waited for; the deadline ends every wait") {
  nats::node_view v{"n1", 1000ms};
  nats::clock::time_point next;
  v.heard({"n2", 7, "n1"}, t0);
  v.heard({"n3", 8, "n1"}, t0);
  v.step(t0, 1, next);
  v.subscribed("p.c.a", t0 + 1s, t0);
  v.step(t0, 1, next);
  v.answered("n2", "p.c.a", t0 + 1ms);
  CHECK(v.gone("n3", t0 + 2ms)); // "no responders" for its subject
  auto r = v.step(t0 + 2ms, 1, next);
  CHECK(r.ready == std::vector<std::string>{"p.c.a"});
  CHECK(r.timed_out == 0);
  REQUIRE(r.view);
  CHECK(*r.view == std::vector<std::string>{"n2"});
  v.subscribed("p.c.b", t0 + 1s, t0 + 3ms);
  v.step(t0 + 3ms, 1, next);
  CHECK(next <= t0 + 1s);
  r = v.step(t0 + 1s, 1, next);
  CHECK(r.ready == std::vector<std::string>{"p.c.b"});
  CHECK(r.timed_out == 1);
}

TEST_CASE("nats view: losing the connection empties the view at once") {
  nats::node_view v{"n1", 1000ms};
  nats::clock::time_point next;
  v.heard({"n2", 7, "n1"}, t0);
  v.step(t0, 1, next);
  v.link_lost(t0 + 10ms);
  auto r = v.step(t0 + 10ms, 1, next);
  REQUIRE(r.view);
  CHECK(r.view->empty());
  CHECK(r.heartbeat_body);
  v.heard({"n2", 7, "n1"}, t0 + 20ms); // back
  r = v.step(t0 + 20ms, 1, next);
  REQUIRE(r.view);
  CHECK(*r.view == std::vector<std::string>{"n2"});
}

TEST_CASE("js wire: publish answers") {
  using kind = js::pub_ack::kind;
  CHECK(js::parse_ack(true, 0, "").what == kind::timeout);
  CHECK(js::parse_ack(false, 503, "").what == kind::timeout); // no stream leader yet
  auto ok = js::parse_ack(false, 0, R"({"stream":"S","seq":12})");
  CHECK(ok.what == kind::ok);
  CHECK(ok.seq == 12);
  auto dup = js::parse_ack(false, 0, R"({"stream":"S","seq":9,"duplicate":true})");
  CHECK(dup.what == kind::duplicate);
  CHECK(dup.seq == 9);
  auto wrong = js::parse_ack(
      false, 0,
      R"({"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 8"}})");
  CHECK(wrong.what == kind::wrong_last);
  CHECK(wrong.error == "wrong last sequence: 8");
  CHECK(js::parse_ack(false, 0, R"({"error":{"code":500,"err_code":10008}})").what == kind::error);
  CHECK(js::parse_ack(false, 0, "not json").what == kind::error);
  CHECK(js::parse_ack(false, 0, R"({"stream":"S"})").what == kind::error);
  CHECK(js::parse_ack(false, 0, R"({"seq":-1})").what != kind::ok);
  CHECK(js::stream_created(R"({"type":"x","config":{"name":"S"}})"));
  CHECK_FALSE(js::stream_created(R"({"error":{"err_code":10058}})"));
  CHECK(js::stream_differs(R"({"error":{"code":400,"err_code":10058}})"));
  CHECK_FALSE(js::stream_differs(R"({"config":{}})"));
}

TEST_CASE("js wire: one fence per offset of an epoch") {
  CHECK(js::offset_fence("room:1", "k3x9ab2q", 7) == "room:1|k3x9ab2q|7");
  CHECK(js::offset_fence("room:1", "k3x9ab2q", 7) != js::offset_fence("room:1", "k3x9ab2q", 8));
  CHECK(js::offset_fence("room:1", "k3x9ab2q", 7) != js::offset_fence("room:1", "other000", 7));
}

TEST_CASE("js wire: links walk back 16 messages at a time") {
  CHECK(js::next_links(5, "") == "5");
  CHECK(js::next_links(6, "5,4") == "6,5,4");
  std::string links = "1";
  for (std::uint64_t s = 2; s <= 40; ++s)
    links = js::next_links(s, links);
  auto seqs = js::split_links(links, 100);
  REQUIRE(seqs.size() == js::prev_links);
  CHECK(seqs.front() == 40);
  CHECK(seqs.back() == 25);
  CHECK(js::split_links(links, 3) == std::vector<std::uint64_t>{40, 39, 38});
  // a list not written by wsnode ends the walk where it stops making sense
  CHECK(js::split_links("9,x,7", 10) == std::vector<std::uint64_t>{9});
  CHECK(js::split_links("0,5", 10).empty());
  CHECK(js::split_links("", 10).empty());
}

TEST_CASE("js wire: a batch record packs and unpacks exactly, or not at all") {
  std::vector<js::record_item> items{{"alice", R"({"a": [1, 2]})"}, {"", "\"x\""}, {"b.o@b", "3"}};
  auto body = js::pack_record(items);
  CHECK(body == R"([["alice",{"a": [1, 2]}],["","x"],["b.o@b",3]])");
  auto back = js::unpack_record(body, 3);
  REQUIRE(back);
  REQUIRE(back->size() == 3);
  CHECK((*back)[0].from == "alice");
  CHECK((*back)[0].data == R"({"a": [1, 2]})"); // the client's exact bytes
  CHECK((*back)[1].from.empty());
  CHECK((*back)[1].data == "\"x\"");
  CHECK((*back)[2].data == "3");
  CHECK_FALSE(js::unpack_record(body, 2));                     // not the count the header says
  CHECK_FALSE(js::unpack_record(body, 1));                     // a single message is not a record
  CHECK_FALSE(js::unpack_record("[[\"a\",1]", 2));             // not JSON
  CHECK_FALSE(js::unpack_record(R"([["a b",1],["c",2]])", 2)); // not a user id
  CHECK_FALSE(js::unpack_record(R"([["a",1,2],["c",2]])", 2));
  CHECK_FALSE(js::unpack_record(R"([1,2])", 2));
}
