// broker_core's ordered delivery of history channels (actors/broker_history.cpp):
// gaps filled from the owner, the owner's tail announcements, and resync
// only when the owner cannot vouch for what was missed.
#include "actors/broker.hpp"
#include "protocol/codec.hpp"
#include "tests/unit/test_sink.hpp"

#include <doctest/doctest.h>

using namespace wsnode;
using namespace wsnode::actors;
using wsnode::test::recording_sink;

namespace {

const std::string ch = "room:1";

frame_ptr msg(std::uint64_t off) {
  return make_frame(protocol::encode_msg(ch, "u", off, "{\"n\":" + std::to_string(off) + "}"));
}

struct fill_call {
  std::string ch;
  std::string ep;
  std::uint64_t after;
};

// A node with one live subscriber of `ch` at position (ep, pos), and a
// filler that records what the broker asks the owner for.
struct fixture {
  metrics m;
  broker_core b{m, std::make_shared<local_backbone>()};
  std::shared_ptr<recording_sink> s = std::make_shared<recording_sink>();
  std::vector<fill_call> fills;

  explicit fixture(std::uint64_t pos = 0) {
    b.join(1, "alice", s);
    b.set_filler([this](const std::string& c, const std::string& ep, std::uint64_t after) {
      fills.push_back({c, ep, after});
    });
    REQUIRE(b.subscribe_held(1, ch));
    b.set_position(1, ch, "ep1", pos);
    b.release(1, ch);
  }

  // the offsets the subscriber received, resync as 0
  std::vector<std::uint64_t> offsets() const {
    std::vector<std::uint64_t> out;
    for (const auto& f : s->frames())
      out.push_back(f == protocol::encode_resync(ch) ? 0 : protocol::msg_offset(f, ch.size()));
    return out;
  }
};

} // namespace

TEST_CASE("ordered delivery: a gap waits for the owner's fill, then everything goes out in order") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  f.b.deliver_ordered(ch, "ep1", 3, msg(3), false); // 2 was lost between nodes
  f.b.deliver_ordered(ch, "ep1", 4, msg(4), false);
  CHECK(f.offsets() == std::vector<std::uint64_t>{1});
  REQUIRE(f.fills.size() == 1); // one fill for the gap, not one per message
  CHECK(f.fills[0].ep == "ep1");
  CHECK(f.fills[0].after == 1);
  f.b.fill_done(ch, "ep1", 1, true, {msg(2), msg(3), msg(4)});
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 2, 3, 4}); // once each
  f.b.deliver_ordered(ch, "ep1", 5, msg(5), false);
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  CHECK(f.m.history_filled.load() ==
        3); // the fill carried 2-4; the 3 and 4 that waited are dropped
  CHECK(f.m.resyncs.load() == 0);
}

TEST_CASE("ordered delivery: the owner's announced top reveals a missing tail") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  // 2 and 3 never arrive, and nothing is published after them
  f.b.note_top(ch, "ep1", 5, 1); // nothing missing
  CHECK(f.fills.empty());
  f.b.note_top(ch, "ep1", 5, 3);
  REQUIRE(f.fills.size() == 1);
  CHECK(f.fills[0].after == 1);
  f.b.note_top(ch, "ep1", 5, 3); // a repeat while the fill is under way
  CHECK(f.fills.size() == 1);
  f.b.fill_done(ch, "ep1", 1, true, {msg(2), msg(3)});
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 2, 3});
  f.b.note_top(ch, "ep1", 5, 3); // caught up
  CHECK(f.fills.size() == 1);
}

TEST_CASE("ordered delivery: an owner that cannot vouch for the gap makes the subscriber resync") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  f.b.deliver_ordered(ch, "ep1", 3, msg(3), false);
  REQUIRE(f.fills.size() == 1);
  f.b.fill_done(ch, "ep1", 1, false, {}); // e.g. no longer held, or the owner is unreachable
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 0});
  CHECK(f.m.resyncs.load() == 1);
  CHECK(f.m.history_fill_failures.load() == 1);
  CHECK(f.b.subscriber_count(ch) == 0); // told once, then unsubscribed: no storm
  f.b.deliver_ordered(ch, "ep1", 4, msg(4), false);
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 0});
}

TEST_CASE("ordered delivery: a fill with a hole in it is not trusted") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  f.b.deliver_ordered(ch, "ep1", 4, msg(4), false);
  f.b.fill_done(ch, "ep1", 1, true, {msg(3)}); // 2 is missing from the answer
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 0});
}

TEST_CASE("ordered delivery: a fill that makes no progress resyncs instead of asking forever") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  f.b.deliver_ordered(ch, "ep1", 5, msg(5), false);
  f.b.fill_done(ch, "ep1", 1, true, {}); // the owner's commit is behind what arrived
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 0});
  CHECK(f.fills.size() == 1);
}

TEST_CASE("ordered delivery: a partial fill asks again from where it got to") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  f.b.deliver_ordered(ch, "ep1", 5, msg(5), false);
  f.b.fill_done(ch, "ep1", 1, true, {msg(2), msg(3)});
  REQUIRE(f.fills.size() == 2);
  CHECK(f.fills[1].after == 3);
  f.b.fill_done(ch, "ep1", 3, true, {msg(4), msg(5)});
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
}

TEST_CASE("ordered delivery: announcements of a replaced owner are ignored; a new epoch resyncs") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  f.b.note_top(ch, "ep1", 7, 1);
  f.b.note_top(ch, "ep0", 6, 40); // an old owner's stale epoch under an older term
  CHECK(f.offsets() == std::vector<std::uint64_t>{1});
  CHECK(f.fills.empty());
  f.b.note_top(ch, "ep2", 8, 3); // the history started again under a newer term
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 0});
}

TEST_CASE("ordered delivery: a late answer to a fill of an ended stream is dropped") {
  fixture f{0};
  f.b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  f.b.deliver_ordered(ch, "ep1", 3, msg(3), false);
  f.b.deliver_ordered(ch, "ep2", 1, msg(1), false); // new epoch: resync
  f.b.fill_done(ch, "ep1", 1, true, {msg(2), msg(3)});
  CHECK(f.offsets() == std::vector<std::uint64_t>{1, 0});
}

TEST_CASE("ordered delivery: without a filler (a single node) a gap resyncs at once") {
  metrics m;
  broker_core b{m, std::make_shared<local_backbone>()};
  auto s = std::make_shared<recording_sink>();
  b.join(1, "alice", s);
  REQUIRE(b.subscribe_held(1, ch));
  b.set_position(1, ch, "ep1", 0);
  b.release(1, ch);
  b.deliver_ordered(ch, "ep1", 1, msg(1), false);
  b.deliver_ordered(ch, "ep1", 3, msg(3), false);
  CHECK(m.resyncs.load() == 1);
}

TEST_CASE("ordered delivery: the announcement's wire form") {
  auto wire = broker_core::encode_top("k3x9ab2q", 12, 345);
  CHECK(wire == "k3x9ab2q|#12:345");
  std::string_view ep;
  frame_ptr inner;
  REQUIRE(broker_core::split_ordered(wire, ep, inner));
  CHECK(ep == "k3x9ab2q");
  std::uint64_t term = 0;
  std::uint64_t top = 0;
  REQUIRE(broker_core::split_top(*inner, term, top));
  CHECK(term == 12);
  CHECK(top == 345);
  for (std::string_view bad : {"#", "#1", "#:1", "#1:", "#a:1", "#1:2x", "{\"op\":\"msg\"}", ""})
    CHECK_FALSE(broker_core::split_top(bad, term, top));
}
