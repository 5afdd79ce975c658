// Channel history: the ring (size, ttl, keys), rendezvous ranking, and the
// merge of a recovery with live messages in broker_core (the service of
// three nodes: test_history_service.cpp).
#include "actors/broker.hpp"
#include "actors/history/log.hpp"
#include "actors/history/service.hpp"
#include "protocol/codec.hpp"
#include "tests/unit/test_sink.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <set>
#include <tuple>

using namespace wsnode;
using namespace wsnode::actors;
using namespace std::chrono_literals;

namespace {

frame_ptr msg(std::string_view ch, std::uint64_t off) {
  return make_frame(protocol::encode_msg(ch, "u", off, std::to_string(off)));
}

std::vector<std::uint64_t> offsets(std::string_view ch, const std::vector<frame_ptr>& frames) {
  std::vector<std::uint64_t> out;
  for (const auto& f : frames)
    out.push_back(protocol::msg_offset(*f, ch.size()));
  return out;
}

std::vector<std::uint64_t> offsets(std::string_view ch, const std::vector<std::string>& frames) {
  std::vector<std::uint64_t> out;
  for (const auto& f : frames)
    out.push_back(protocol::msg_offset(f, ch.size()));
  return out;
}

} // namespace

TEST_CASE("history_log: size and ttl trim, reads, keys") {
  using clock = history_log::clock;
  history_log::limits l;
  l.size = 5;
  l.ttl = 1000ms;
  l.key_window = 2000ms;
  history_log log{"ep1", l};
  auto t0 = clock::now();
  for (std::uint64_t i = 1; i <= 8; ++i)
    log.append(msg("c", i), i == 2 ? "k2" : "", t0 + std::chrono::milliseconds(i * 100));
  CHECK(log.top() == 8);
  CHECK(log.size() == 5);
  CHECK(log.first() == 4);

  std::vector<frame_ptr> out;
  CHECK(log.read_since(3, 100, 8, out)); // 4..8 held
  CHECK(offsets("c", out) == std::vector<std::uint64_t>{4, 5, 6, 7, 8});
  out.clear();
  CHECK_FALSE(log.read_since(2, 100, 8, out)); // 3 was trimmed
  CHECK_FALSE(log.read_since(3, 4, 8, out));   // more than max
  CHECK_FALSE(log.read_since(9, 100, 8, out)); // ahead of top
  CHECK(out.empty());
  CHECK(log.read_since(8, 100, 8, out)); // nothing missed
  CHECK(out.empty());
  CHECK(log.read_since(5, 100, 6, out)); // up to the commit point only
  CHECK(offsets("c", out) == std::vector<std::uint64_t>{6});

  out.clear();
  log.newest(2, 8, out);
  CHECK(offsets("c", out) == std::vector<std::uint64_t>{7, 8});
  out.clear();
  log.newest(2, 8, out, 4);
  CHECK(offsets("c", out) == std::vector<std::uint64_t>{5, 6});
  out.clear();
  log.newest(0, 8, out);
  CHECK(out.empty());

  CHECK(log.find_key("k2") == 2); // keys outlive the ring's trim
  log.expire(t0 + 1550ms);        // older than 1 s goes: 4 (at 400 ms) and 5 (500 ms)
  CHECK(log.first() == 6);
  CHECK(log.find_key("k2") == 2);
  log.expire(t0 + 2300ms); // key window (2 s) passed for k2 (at 200 ms)
  CHECK_FALSE(log.find_key("k2"));
  log.expire(t0 + 5000ms);
  CHECK(log.size() == 0);
  CHECK(log.top() == 8);
  CHECK(log.first() == 9);
  CHECK(log.read_since(8, 100, 8, out));
  CHECK_FALSE(log.read_since(7, 100, 8, out));
  CHECK(make_epoch().size() == 8);
  CHECK(make_epoch() != make_epoch());
}

TEST_CASE("rank_nodes: the owner of a channel moves only when its owner leaves") {
  std::vector<std::string> all{"n1", "n2", "n3", "n4"};
  std::map<std::string, int> owners;
  int moved = 0;
  for (int i = 0; i < 400; ++i) {
    auto ch = "room:" + std::to_string(i);
    auto r = rank_nodes(ch, all);
    CHECK(r == rank_nodes(ch, {"n4", "n3", "n2", "n1"})); // order of input does not matter
    ++owners[r[0]];
    // n3 leaves: a channel it did not own keeps its owner, one it owned goes to its replica
    auto without = rank_nodes(ch, {"n1", "n2", "n4"});
    if (r[0] == "n3") {
      CHECK(without[0] == r[1]);
      ++moved;
    } else {
      CHECK(without[0] == r[0]);
    }
  }
  for (const auto& [n, count] : owners)
    CHECK(count > 50); // spread over every node
  CHECK(moved > 50);
  CHECK(majority(1) == 1);
  CHECK(majority(3) == 2);
  CHECK(majority(4) == 3);
}

TEST_CASE("broker_core: a recovery's replay, then live messages, no gap and no repeat") {
  metrics m;
  broker_core core{m, std::make_shared<local_backbone>()};
  auto sink = std::make_shared<test::recording_sink>();
  const std::string ch = "room:1";
  REQUIRE(core.join(1, "alice", sink));
  // live messages 1..3 arrive before its position (10) is known: held
  bool ready = false;
  REQUIRE(core.subscribe_held(1, ch, [&] { ready = true; }));
  CHECK(ready);
  for (std::uint64_t i = 8; i <= 12; ++i)
    core.deliver_ordered(ch, "e1", i, msg(ch, i), false);
  CHECK(sink->frames().empty());
  core.set_position(1, ch, "e1", 10); // the session replays up to 10 itself
  core.deliver_ordered(ch, "e1", 13, msg(ch, 13), false);
  core.deliver_ordered(ch, "e1", 12, msg(ch, 12), false); // a repeat
  CHECK(sink->frames().empty());
  core.release(1, ch);
  CHECK(offsets(ch, sink->frames()) == std::vector<std::uint64_t>{11, 12, 13});
  core.deliver_ordered(ch, "e1", 14, msg(ch, 14), false);
  core.deliver_ordered(ch, "e1", 14, msg(ch, 14), false);
  CHECK(offsets(ch, sink->frames()) == std::vector<std::uint64_t>{11, 12, 13, 14});

  // a second subscriber whose position is ahead of what arrived here
  auto sink2 = std::make_shared<test::recording_sink>();
  REQUIRE(core.join(2, "bob", sink2));
  REQUIRE(core.subscribe_held(2, ch));
  core.set_position(2, ch, "e1", 16);
  core.release(2, ch);
  for (std::uint64_t i = 15; i <= 17; ++i)
    core.deliver_ordered(ch, "e1", i, msg(ch, i), false);
  CHECK(offsets(ch, sink2->frames()) == std::vector<std::uint64_t>{17});
  CHECK(offsets(ch, sink->frames()) == std::vector<std::uint64_t>{11, 12, 13, 14, 15, 16, 17});

  // a gap ends every subscription here with resync
  core.deliver_ordered(ch, "e1", 19, msg(ch, 19), false);
  CHECK(sink->frames().back() == protocol::encode_resync(ch));
  CHECK(sink2->frames().back() == protocol::encode_resync(ch));
  CHECK(core.subscriber_count(ch) == 0);
  CHECK(m.resyncs.load() == 2);

  // a new epoch after a position shows as one: resync, never a silent skip
  REQUIRE(core.subscribe_held(1, ch));
  core.set_position(1, ch, "e1", 19);
  core.release(1, ch);
  auto before = sink->frames().size();
  core.deliver_ordered(ch, "e2", 1, msg(ch, 1), false);
  CHECK(sink->frames().size() == before + 1);
  CHECK(sink->frames().back() == protocol::encode_resync(ch));
}
