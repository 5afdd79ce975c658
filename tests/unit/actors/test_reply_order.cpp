// A session's replies in command order (actors/reply_order.hpp), without
// an actor: a recording sink shows what reached the connection.
#include "actors/reply_order.hpp"
#include "tests/unit/test_sink.hpp"

#include <doctest/doctest.h>

using namespace wsnode;
using namespace wsnode::actors;
using wsnode::test::recording_sink;

TEST_CASE("reply_order: nothing held, a reply goes out at once") {
  auto sink = std::make_shared<recording_sink>();
  reply_order o;
  std::vector<std::string> released;
  CHECK(o.empty());
  o.reply(*sink, make_frame("a"));
  CHECK(sink->frames() == std::vector<std::string>{"a"});
  o.flush(*sink, released); // nothing held: nothing happens
  CHECK(sink->frames().size() == 1);
  CHECK(o.slot(0) == nullptr);
}

TEST_CASE("reply_order: replies wait behind a held one and follow it in order") {
  auto sink = std::make_shared<recording_sink>();
  reply_order o;
  std::vector<std::string> released;
  auto s1 = o.hold("1", "room:1");
  o.reply(*sink, make_frame("pong 2"));
  auto s3 = o.hold("3", "room:3");
  o.reply(*sink, make_frame("pong 4"));
  CHECK(sink->frames().empty());
  CHECK_FALSE(o.empty());
  REQUIRE(o.slot(s1) != nullptr);
  CHECK(o.slot(s1)->id == "1");
  CHECK(o.slot(s3)->ch == "room:3");

  // the second held reply is answered first: nothing may pass the first
  o.slot(s3)->frame = make_frame("ack 3");
  o.slot(s3)->ready = true;
  o.flush(*sink, released);
  CHECK(sink->frames().empty());

  // the first is answered: it, the pong behind it, the ack 3 and pong 4 go
  auto* r1 = o.slot(s1);
  r1->frame = make_frame("ack 1");
  r1->more = {make_frame("msg 41"), make_frame("msg 42")};
  r1->release = true;
  r1->ready = true;
  o.flush(*sink, released);
  CHECK(sink->frames() ==
        std::vector<std::string>{"ack 1", "msg 41", "msg 42", "pong 2", "ack 3", "pong 4"});
  CHECK(released == std::vector<std::string>{"room:1"});
  CHECK(o.empty());
  CHECK(o.slot(s1) == nullptr); // sent: its slot is gone
}

TEST_CASE("reply_order: slots keep their numbers while the front is sent") {
  auto sink = std::make_shared<recording_sink>();
  reply_order o;
  std::vector<std::string> released;
  auto s0 = o.hold("a", {});
  auto s1 = o.hold("b", {});
  o.slot(s0)->frame = make_frame("A");
  o.slot(s0)->ready = true;
  o.flush(*sink, released);
  CHECK(sink->frames() == std::vector<std::string>{"A"});
  CHECK(o.slot(s0) == nullptr);
  REQUIRE(o.slot(s1) != nullptr);
  CHECK(o.slot(s1)->id == "b");
  auto s2 = o.hold("c", {});
  CHECK(s2 == s1 + 1);
  CHECK(o.slot(s2 + 1) == nullptr);
  o.slot(s1)->frame = make_frame("B");
  o.slot(s1)->ready = true;
  o.slot(s2)->frame = make_frame("C");
  o.slot(s2)->ready = true;
  o.flush(*sink, released);
  CHECK(sink->frames() == std::vector<std::string>{"A", "B", "C"});
  CHECK(released.empty());
  CHECK(o.empty());
}
