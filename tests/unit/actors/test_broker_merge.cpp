// broker_core's merged frames (actors/broker_merge.cpp): batch=1 sessions
// get a channel's messages as one shared array per window; the others get
// each at once; the order every session sees stays the publish order.
#include "actors/broker.hpp"
#include "protocol/codec.hpp"
#include "tests/unit/test_sink.hpp"

#include <doctest/doctest.h>

using namespace wsnode;
using namespace wsnode::actors;
using wsnode::test::recording_sink;
using namespace std::chrono_literals;

namespace {

frame_ptr msg(std::string_view ch, int n) {
  return make_frame(protocol::encode_msg(ch, "u", std::to_string(n)));
}

frame_ptr msg(std::string_view ch, std::uint64_t off, int n) {
  return make_frame(protocol::encode_msg(ch, "u", off, std::to_string(n)));
}

struct timer_call {
  std::string ch;
  std::chrono::milliseconds after;
  std::uint64_t window;
};

// One node whose "dm" namespace merges (200 ms, 3 per array), with the
// timer requests recorded instead of run.
struct fixture {
  metrics m;
  std::vector<timer_call> timers;
  broker_core b{m, std::make_shared<local_backbone>(), std::chrono::seconds(2), [] {
                  namespace_options dm;
                  dm.name = "dm";
                  dm.merge_ms = 200ms;
                  dm.merge_max = 3;
                  namespace_options live = dm;
                  live.name = "live";
                  live.history_size = 100;
                  return std::make_shared<const namespace_table>(std::vector{dm, live});
                }()};
  std::shared_ptr<recording_sink> plain = std::make_shared<recording_sink>();
  std::shared_ptr<recording_sink> merged = std::make_shared<recording_sink>();

  fixture() {
    b.set_merge_timer(
        [this](std::string_view ch, std::chrono::milliseconds after, std::uint64_t window) {
          timers.push_back({std::string{ch}, after, window});
        });
    merged->set_batched(true);
    b.join(1, "plain", plain);
    b.join(2, "merged", merged);
  }
};

std::string array_of(const std::vector<frame_ptr>& frames) {
  std::string out;
  for (const auto& f : frames)
    out += (out.empty() ? "[" : ",") + *f;
  return out + "]";
}

} // namespace

TEST_CASE("merge: plain sessions get each message at once, batched ones one array per window") {
  fixture f;
  REQUIRE(f.b.subscribe(1, "dm:1"));
  REQUIRE(f.b.subscribe(2, "dm:1"));
  auto m1 = msg("dm:1", 1);
  auto m2 = msg("dm:1", 2);
  f.b.publish("dm:1", m1);
  f.b.publish("dm:1", m2);
  CHECK(f.plain->frames() == std::vector<std::string>{*m1, *m2});
  CHECK(f.merged->frames().empty());
  REQUIRE(f.timers.size() == 1); // one timer per window, armed by its first message
  CHECK(f.timers[0].after == 200ms);
  f.b.merge_due("dm:1", f.timers[0].window);
  CHECK(f.merged->frames() == std::vector<std::string>{array_of({m1, m2})});
  // the array is built once: every batched session shares its bytes
  auto other = std::make_shared<recording_sink>();
  other->set_batched(true);
  f.b.join(3, "other", other);
  REQUIRE(f.b.subscribe(3, "dm:1"));
  auto m3 = msg("dm:1", 3);
  auto m4 = msg("dm:1", 4);
  f.b.publish("dm:1", m3);
  f.b.publish("dm:1", m4);
  f.b.merge_due("dm:1", f.timers.back().window);
  CHECK(f.merged->pointers().back() == other->pointers().back());
  CHECK(f.m.merged_frames.load() == 2);
  CHECK(f.m.merged_messages.load() == 4);
  CHECK(f.m.deliveries.load() == 4 + 2 + 2 * 2); // per message and session, as without merging
}

TEST_CASE("merge: a full window goes at once, a stale timer does nothing, one message goes alone") {
  fixture f;
  REQUIRE(f.b.subscribe(2, "dm:1"));
  std::vector<frame_ptr> ms;
  for (int i = 1; i <= 4; ++i) {
    ms.push_back(msg("dm:1", i));
    f.b.publish("dm:1", ms.back());
  }
  // merge_max = 3: the first three went as one array, the fourth waits
  CHECK(f.merged->frames() == std::vector<std::string>{array_of({ms[0], ms[1], ms[2]})});
  REQUIRE(f.timers.size() == 2);
  f.b.merge_due("dm:1", f.timers[0].window); // the first window's timer: gone already
  CHECK(f.merged->frames().size() == 1);
  f.b.merge_due("dm:1", f.timers[1].window);
  CHECK(f.merged->frames().back() == *ms[3]); // alone: not an array of one
}

TEST_CASE("merge: an array never grows past the largest frame a client takes") {
  fixture f;
  f.b.set_max_merged_bytes(100);
  REQUIRE(f.b.subscribe(2, "dm:1"));
  auto big = [](int n) {
    return make_frame(
        protocol::encode_msg("dm:1", "u", "\"" + std::string(40, 'x') + std::to_string(n) + "\""));
  };
  auto a = big(1);
  auto b = big(2);
  f.b.publish("dm:1", a);
  f.b.publish("dm:1", b); // two would pass 100 bytes: the first goes alone
  CHECK(f.merged->frames() == std::vector<std::string>{*a});
  f.b.merge_due("dm:1", f.timers.back().window);
  CHECK(f.merged->frames().back() == *b);
}

TEST_CASE("merge: events and new subscribers flush the window first, so the order holds") {
  fixture f;
  REQUIRE(f.b.subscribe(2, "dm:1"));
  auto m1 = msg("dm:1", 1);
  f.b.publish("dm:1", m1);
  // a presence event comes alone, after the message before it
  auto join = make_frame(R"({"op":"join","ch":"dm:1","user":"x"})");
  f.b.deliver_local(topic_kind::channel, "dm:1", join);
  CHECK(f.merged->frames() == std::vector<std::string>{*m1, *join});
  // a batched newcomer does not get what was published before it subscribed
  auto m2 = msg("dm:1", 2);
  f.b.publish("dm:1", m2);
  auto late = std::make_shared<recording_sink>();
  late->set_batched(true);
  f.b.join(3, "late", late);
  REQUIRE(f.b.subscribe(3, "dm:1"));
  CHECK(f.merged->frames().back() == *m2);
  CHECK(late->frames().empty());
  // remote messages merge the same way
  auto m3 = msg("dm:1", 3);
  auto m4 = msg("dm:1", 4);
  f.b.deliver_local(topic_kind::channel, "dm:1", m3);
  f.b.deliver_local(topic_kind::channel, "dm:1", m4);
  f.b.merge_due("dm:1", f.timers.back().window);
  CHECK(late->frames() == std::vector<std::string>{array_of({m3, m4})});
  // a namespace without merge_ms: batch=1 changes nothing
  REQUIRE(f.b.subscribe(2, "room:1"));
  auto r = msg("room:1", 1);
  f.b.publish("room:1", r);
  CHECK(f.merged->frames().back() == *r);
}

TEST_CASE(
    "merge: history channels keep offsets; a recovered session joins the arrays once caught up") {
  fixture f;
  const std::string ch = "live:1";
  REQUIRE(f.b.subscribe_held(2, ch));
  f.b.set_position(2, ch, "ep1", 0);
  f.b.release(2, ch);
  std::vector<frame_ptr> ms;
  for (std::uint64_t off = 1; off <= 2; ++off) {
    ms.push_back(msg(ch, off, static_cast<int>(off)));
    f.b.deliver_ordered(ch, "ep1", off, ms.back(), false);
  }
  // caught up at once (nothing was published before): both wait for their array
  CHECK(f.merged->frames().empty());
  f.b.merge_due(ch, f.timers.back().window);
  CHECK(f.merged->frames() == std::vector<std::string>{array_of({ms[0], ms[1]})});
  // a second session recovers while a window is open: it gets each
  // message once, alone while held, then from the arrays
  auto second = std::make_shared<recording_sink>();
  second->set_batched(true);
  f.b.join(3, "second", second);
  REQUIRE(f.b.subscribe_held(3, ch));
  auto m3 = msg(ch, 3, 3);
  f.b.deliver_ordered(ch, "ep1", 3, m3, false); // held for the second
  f.b.set_position(3, ch, "ep1", 2);
  f.b.release(3, ch); // hands 3 over alone and is caught up: the window goes first
  CHECK(second->frames() == std::vector<std::string>{*m3});
  CHECK(f.merged->frames().back() == *m3);
  auto m4 = msg(ch, 4, 4);
  auto m5 = msg(ch, 5, 5);
  f.b.deliver_ordered(ch, "ep1", 4, m4, false);
  f.b.deliver_ordered(ch, "ep1", 5, m5, false);
  f.b.merge_due(ch, f.timers.back().window);
  CHECK(second->frames() == std::vector<std::string>{*m3, array_of({m4, m5})});
  CHECK(f.merged->frames().back() == array_of({m4, m5}));
}

TEST_CASE("merge: a reload that stops merging sends the open window before the next message") {
  fixture f;
  REQUIRE(f.b.subscribe(2, "dm:1"));
  auto m1 = msg("dm:1", 1);
  auto m2 = msg("dm:1", 2);
  f.b.publish("dm:1", m1);
  f.b.publish("dm:1", m2);
  CHECK(f.merged->frames().empty());
  namespace_options dm;
  dm.name = "dm"; // merge_ms = 0: no merging from now on
  f.b.set_namespaces(std::make_shared<const namespace_table>(std::vector{dm}));
  CHECK(f.merged->frames() == std::vector<std::string>{array_of({m1, m2})});
  auto m3 = msg("dm:1", 3);
  f.b.publish("dm:1", m3);
  CHECK(f.merged->frames() == std::vector<std::string>{array_of({m1, m2}), *m3});
  // the old window's timer finds nothing to send
  f.b.merge_due("dm:1", f.timers.at(0).window);
  CHECK(f.merged->frames().size() == 2);
  CHECK(f.b.namespaces()->of_channel("dm:1").merge_ms.count() == 0);
}
