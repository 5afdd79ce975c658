// Channel history: the ring (size, ttl, keys), rendezvous ranking, the
// merge of a recovery with live messages in broker_core, and the history
// service of three nodes over an in-memory network (take-over, fencing).
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

namespace {

// Three history services linked by an in-memory network that the test
// drives: messages queue until deliver() runs, and a node can be cut off.
struct net3 {
  struct packet {
    std::string from, to, payload;
  };
  std::shared_ptr<const namespace_table> ns;
  metrics m;
  std::map<std::string, std::unique_ptr<history_service>> nodes;
  std::deque<packet> wire;
  std::set<std::string> cut; // nodes whose traffic is lost
  std::map<std::string, std::vector<std::pair<std::string, std::uint64_t>>> committed;
  std::map<std::string, std::vector<std::tuple<std::string, std::uint64_t, std::uint64_t>>>
      announced;

  net3() {
    namespace_options room;
    room.name = "room";
    room.history_size = 100;
    ns = std::make_shared<const namespace_table>(std::vector{room});
    for (std::string id : {"n1", "n2", "n3"}) {
      history_options o;
      o.node_id = id;
      o.cluster_size = 3;
      o.timeout = 2000ms;
      o.fresh_window = 0ms; // every node has been up long enough
      history_hooks h;
      h.send = [this, id](const std::string& to, std::string payload) {
        wire.push_back({id, to, std::move(payload)});
      };
      h.committed = [this, id](const std::string&, const std::string& ep, std::uint64_t off,
                               const frame_ptr&) { committed[id].emplace_back(ep, off); };
      h.announce = [this, id](const std::string&, const std::string& ep, std::uint64_t term,
                              std::uint64_t top) {
        announced[id].push_back({ep, term, top});
      };
      nodes[id] = std::make_unique<history_service>(o, ns, m, h);
      options[id] = o;
      hooks[id] = h;
    }
    view_all();
  }
  std::map<std::string, history_options> options;
  std::map<std::string, history_hooks> hooks;
  /// `id` restarts: a new, empty service under the same id.
  void restart(const std::string& id, std::chrono::milliseconds fresh_window) {
    auto o = options[id];
    o.fresh_window = fresh_window;
    nodes[id] = std::make_unique<history_service>(o, ns, m, hooks[id]);
    view_all();
  }
  void view_all() {
    for (auto& [id, n] : nodes) {
      std::vector<std::string> live;
      for (auto& [other, x] : nodes)
        if (other != id && !cut.contains(other) && !cut.contains(id))
          live.push_back(other);
      n->on_view(live);
    }
  }
  void deliver(int rounds = 100) {
    while (rounds-- > 0 && !wire.empty()) {
      auto p = std::move(wire.front());
      wire.pop_front();
      if (cut.contains(p.from) || cut.contains(p.to))
        continue;
      nodes.at(p.to)->on_message(p.from, p.payload);
    }
  }
  void settle() {
    for (int i = 0; i < 50 && !wire.empty(); ++i)
      deliver(1000);
  }
  publish_outcome publish(const std::string& at, const std::string& ch, std::string key = {}) {
    auto out = std::make_shared<std::optional<publish_outcome>>();
    nodes.at(at)->publish(ch, "u", "1", std::move(key), [out](publish_outcome o) { *out = o; });
    settle();
    return out->value_or(publish_outcome{false, 0, "no answer"});
  }
};

// The owner, replica and third node of `ch` among n1..n3.
std::tuple<std::string, std::string, std::string> roles(const std::string& ch) {
  auto r = rank_nodes(ch, {"n1", "n2", "n3"});
  return {r[0], r[1], r[2]};
}

} // namespace

TEST_CASE("history_service: owner, replica, take-over with the same epoch, fencing") {
  net3 net;
  const std::string ch = "room:7";
  auto [owner, replica, third] = roles(ch);

  for (std::uint64_t i = 1; i <= 5; ++i) {
    auto o = net.publish(third, ch, "k" + std::to_string(i)); // forwarded to the owner
    REQUIRE(o.ok);
    CHECK(o.off == i);
  }
  CHECK(net.publish(third, ch, "k3").off == 3); // a repeated key: the first offset
  CHECK(net.committed[owner].size() == 5);
  auto ep = net.committed[owner].front().first;

  // the owner is cut off; the replica takes over with the same epoch
  net.cut.insert(owner);
  net.view_all();
  net.settle();
  auto o = net.publish(third, ch, "k6");
  REQUIRE(o.ok);
  CHECK(o.off == 6);
  REQUIRE(!net.committed[replica].empty());
  CHECK(net.committed[replica].back() == std::pair{ep, std::uint64_t{6}});
  CHECK(net.publish(replica, ch, "k2").off == 2); // keys travelled with the copy
  CHECK(net.m.history_takeovers.load() >= 1);

  // fencing: the old owner, still believing it owns the channel, can
  // never acknowledge a publish (its replica promised a newer term)
  auto stale = std::make_shared<std::optional<publish_outcome>>();
  net.nodes.at(owner)->publish(ch, "u", "1", {}, [stale](publish_outcome x) { *stale = x; });
  net.cut.erase(owner); // its messages reach the others again; its view is old
  net.settle();
  CHECK((!*stale || !(*stale)->ok));
  // and the new owner goes on from its own offsets in the same epoch
  o = net.publish(third, ch, "k7");
  REQUIRE(o.ok);
  CHECK(o.off == 7);
  for (auto& [e, off] : net.committed[owner])
    CHECK(off <= 5); // the old owner committed nothing past the take-over
}

TEST_CASE("history_service: a restarted node's empty promise does not make a majority") {
  net3 net;
  const std::string ch = "room:8";
  auto [owner, replica, third] = roles(ch);
  (void)third;
  for (std::uint64_t i = 1; i <= 5; ++i)
    REQUIRE(net.publish(owner, ch).off == i);
  auto ep = net.committed[owner].front().first;
  // the owner restarts empty while its replica is out of reach: with the
  // third node (no copy) it would be a "majority without a copy" and start
  // a new epoch at offset 1, or worse; it must wait for the copy instead
  net.restart(owner, 60000ms);
  net.cut.insert(replica);
  auto o = net.publish(owner, ch);
  CHECK_FALSE(o.ok);                           // no answer yet: it waits for the owner to be ready
  CHECK(net.m.history_new_epochs.load() == 1); // only the channel's first epoch
  net.cut.erase(replica);
  for (auto& [id, n] : net.nodes) // the acquisition is retried after its timeout
    n->tick(std::chrono::steady_clock::now() + 1500ms);
  net.settle();
  // the waiting publish got 6 in the same epoch, the next one 7
  REQUIRE(!net.committed[owner].empty());
  CHECK(net.committed[owner].back() == std::pair{ep, std::uint64_t{6}});
  o = net.publish(owner, ch);
  REQUIRE(o.ok);
  CHECK(o.off == 7);
  CHECK(net.m.history_new_epochs.load() == 1);
}

TEST_CASE("history_service: a single node owns everything, a restart means a new epoch") {
  namespace_options room;
  room.name = "room";
  room.history_size = 10;
  room.recovery_max = 5;
  auto ns = std::make_shared<const namespace_table>(std::vector{room});
  metrics m;
  std::vector<std::uint64_t> committed;
  history_hooks h;
  h.send = [](const std::string&, std::string) { FAIL("a single node sends nothing"); };
  h.committed = [&](const std::string&, const std::string&, std::uint64_t off, const frame_ptr&) {
    committed.push_back(off);
  };
  history_service svc{history_options{}, ns, m, h};
  for (int i = 0; i < 12; ++i)
    svc.publish("room:a", "u", "1", {}, [](publish_outcome o) { CHECK(o.ok); });
  CHECK(committed.size() == 12);
  read_outcome got;
  read_request r;
  r.since_ep = "?";
  svc.read("room:a", r, [&](read_outcome o) { got = std::move(o); });
  CHECK(got.ok);
  CHECK(got.off == 12);
  CHECK(got.recovered == false);
  r.since_ep = got.ep;
  r.since_off = 8;
  svc.read("room:a", r, [&](read_outcome o) { got = std::move(o); });
  CHECK(got.recovered == true);
  CHECK(got.frames.size() == 4);
  r.since_off = 6; // 6 missed > recovery_max 5
  svc.read("room:a", r, [&](read_outcome o) { got = std::move(o); });
  CHECK(got.recovered == false);
  CHECK(got.frames.empty());
  history_service restarted{history_options{}, ns, m, h};
  restarted.read("room:a", {}, [&](read_outcome o) {
    CHECK(o.ep != got.ep);
    CHECK(o.off == 0);
  });
}

TEST_CASE("history_service: the owner announces a channel's top for a while after each write") {
  net3 net;
  const std::string ch = "room:9";
  auto [owner, replica, third] = roles(ch);
  auto now = std::chrono::steady_clock::now();
  for (auto& [id, n] : net.nodes)
    n->tick(now);
  CHECK(net.announced.empty()); // nothing written yet
  for (int i = 0; i < 3; ++i)
    REQUIRE(net.publish(third, ch).ok);
  for (auto& [id, n] : net.nodes)
    n->tick(std::chrono::steady_clock::now());
  REQUIRE(net.announced[owner].size() == 1);
  auto [ep, term, top] = net.announced[owner].front();
  CHECK(ep == net.committed[owner].front().first);
  CHECK(term >= 1);
  CHECK(top == 3);
  CHECK(net.announced[replica].empty()); // only the owner vouches for the top
  CHECK(net.announced[third].empty());
  // quiet for longer than tail_window (2 s): no more announcements
  for (auto& [id, n] : net.nodes)
    n->tick(std::chrono::steady_clock::now() + 2500ms);
  CHECK(net.announced[owner].size() == 1);
  // a take-over announces the new owner's top (the old one may not have fanned it out)
  net.cut.insert(owner);
  net.view_all();
  net.settle();
  REQUIRE(net.publish(third, ch).ok);
  for (auto& [id, n] : net.nodes)
    n->tick(std::chrono::steady_clock::now());
  REQUIRE(!net.announced[replica].empty());
  CHECK(std::get<1>(net.announced[replica].back()) > term);
  CHECK(std::get<2>(net.announced[replica].back()) == 4);
}
