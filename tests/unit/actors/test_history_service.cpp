// The history service of three nodes over an in-memory network the test
// drives: take-over, fencing of writes and reads, no flapping in a bridge,
// one-way loss, tail announcements, and terms that survive a restart.
#include "actors/history/service.hpp"
#include "actors/history/term_store.hpp"
#include "actors/history/wire.hpp"
#include "protocol/codec.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <tuple>

using namespace wsnode;
using namespace wsnode::actors;
using namespace std::chrono_literals;

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
  std::set<std::string> cut;                             // nodes whose traffic is lost
  std::set<std::pair<std::string, std::string>> blocked; // (from, to): one-way loss
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
  void restart(const std::string& id, std::chrono::milliseconds fresh_window,
               std::uint64_t term_floor = 0) {
    auto o = options[id];
    o.fresh_window = fresh_window;
    o.term_floor = term_floor;
    nodes[id] = std::make_unique<history_service>(o, ns, m, hooks[id]);
    view_all();
  }
  void view_all() {
    for (auto& [id, n] : nodes) {
      std::vector<std::string> live;
      for (auto& [other, x] : nodes)
        if (other != id && !cut.contains(other) && !cut.contains(id) &&
            !blocked.contains({other, id}))
          live.push_back(other);
      n->on_view(live);
    }
  }
  void deliver(int rounds = 100) {
    while (rounds-- > 0 && !wire.empty()) {
      auto p = std::move(wire.front());
      wire.pop_front();
      if (cut.contains(p.from) || cut.contains(p.to) || blocked.contains({p.from, p.to}))
        continue;
      nodes.at(p.to)->on_message(p.from, p.payload);
    }
  }
  void settle() {
    for (int i = 0; i < 50 && !wire.empty(); ++i)
      deliver(1000);
  }
  std::optional<read_outcome> read(const std::string& at, const std::string& ch) {
    auto out = std::make_shared<std::optional<read_outcome>>();
    nodes.at(at)->read(ch, {}, [out](read_outcome o) { *out = std::move(o); });
    settle();
    return *out;
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

TEST_CASE("history_service: an owner that was replaced never answers a read (reads are fenced)") {
  net3 net;
  const std::string ch = "room:10";
  auto [owner, replica, third] = roles(ch);
  for (int i = 0; i < 3; ++i)
    REQUIRE(net.publish(owner, ch).ok);
  auto r = net.read(owner, ch);
  REQUIRE(r);
  CHECK(r->ok);
  CHECK(r->off == 3); // a read confirmed by a majority
  // the owner's traffic is lost both ways; the others see it gone and take
  // the channel over, while the owner's own view stays as it was
  net.blocked = {{owner, replica}, {replica, owner}, {owner, third}, {third, owner}};
  for (auto& [id, n] : net.nodes)
    if (id != owner)
      n->on_view({id == replica ? third : replica});
  REQUIRE(net.publish(third, ch).ok);
  REQUIRE(net.publish(third, ch).ok);
  // its messages flow again; it still thinks it owns the channel and must
  // not answer with its old position (3): the confirmation round tells it
  net.blocked.clear();
  r = net.read(owner, ch);
  CHECK((!r || !r->ok || r->off == 5));
  CHECK(net.m.history_handovers.load() >= 1); // it learnt it was replaced
  auto fresh = net.read(third, ch);
  REQUIRE(fresh);
  CHECK(fresh->ok);
  CHECK(fresh->off == 5);
}

TEST_CASE("history_service: in a bridge the channel does not flap between the two sides") {
  net3 net;
  const std::string ch = "room:11";
  auto [owner, replica, third] = roles(ch);
  REQUIRE(net.publish(owner, ch).ok);
  // the owner and its first replica cannot hear each other; the third hears both
  net.blocked = {{owner, replica}, {replica, owner}};
  net.view_all();
  net.settle();
  for (int round = 0; round < 5; ++round) {
    // the replica, which thinks the owner dead, tries to take the channel
    auto o = net.publish(replica, ch);
    CHECK_FALSE(o.ok); // the third refuses it a newer term while the owner is active
    for (auto& [id, n] : net.nodes)
      n->tick(std::chrono::steady_clock::now() + 1100ms); // its acquisition times out, retries
    net.settle();
    REQUIRE(net.publish(third, ch).ok); // the owner goes on through the third
  }
  CHECK(net.m.history_handovers.load() == 0);
  CHECK(net.m.history_takeovers.load() == 0);
}

TEST_CASE("history_service: a node restarted with its term floor never promises an old term") {
  net3 net;
  const std::string ch = "room:13";
  auto [owner, replica, third] = roles(ch);
  REQUIRE(net.publish(owner, ch).ok);
  // the third promised the owner's term; it restarts with what its state
  // file says (the floor), and an old term is refused, a newer one is not
  net.restart(third, 0ms, 5000);
  net.settle();
  auto* node = net.nodes.at(third).get();
  std::vector<std::string> replies;
  node->on_message(owner, wire::payload(ch, boost::json::object{{"t", "prom"}, {"term", 1}}));
  node->on_message(owner, wire::payload(ch, boost::json::object{{"t", "prom"}, {"term", 5000}}));
  node->on_message(owner, wire::payload(ch, boost::json::object{{"t", "prom"}, {"term", 5001}}));
  for (auto& p : net.wire)
    if (p.from == third)
      replies.push_back(p.payload);
  REQUIRE(replies.size() == 3);
  auto ok_of = [&](const std::string& payload) {
    auto parsed = wire::parse(payload);
    REQUIRE(parsed);
    return wire::flag(parsed->second, "ok");
  };
  CHECK_FALSE(ok_of(replies[0]));
  CHECK_FALSE(ok_of(replies[1]));
  CHECK(ok_of(replies[2]));
}

TEST_CASE("term_store: a reserved term survives a restart; a bad file stops the node") {
  auto dir = std::filesystem::temp_directory_path() /
             ("wsnode-terms-" + std::to_string(std::random_device{}()));
  std::filesystem::remove_all(dir);
  CHECK(term_store::floor_of_dir(dir.string()) == 0); // made, empty
  auto path = (dir / "history-terms-0").string();
  {
    term_store t{path};
    CHECK(t.floor() == 0);
    CHECK(t.reserve(7));
    CHECK(t.reserve(8)); // inside the block: no write
  }
  term_store again{path};
  CHECK(again.floor() >= 8); // covers every term promised before
  CHECK(again.floor() == 7 + term_store::block);
  CHECK(term_store::floor_of_dir(dir.string()) == again.floor());
  term_store other{(dir / "history-terms-1").string(), again.floor()};
  CHECK(other.floor() == again.floor()); // another shard starts above it too
  {
    std::ofstream bad{path};
    bad << "not a term\n";
  }
  CHECK_THROWS_AS(term_store{path}, std::runtime_error);
  CHECK_THROWS_AS(term_store::floor_of_dir(dir.string()), std::runtime_error);
  term_store memory_only{""};
  CHECK(memory_only.reserve(1u << 30));
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "history_service: a node that saw nobody gives up its acquisition once it sees the owner") {
  net3 net;
  const std::string ch = "room:14";
  auto [owner, replica, third] = roles(ch);
  REQUIRE(net.publish(third, ch).ok);
  // the third restarts and, before it hears anyone, gets a publish: alone,
  // it ranks first and starts acquiring (it cannot finish: no majority)
  net.restart(third, 0ms);
  net.nodes.at(third)->on_view({});
  auto out = std::make_shared<std::optional<publish_outcome>>();
  net.nodes.at(third)->publish(ch, "u", "1", "k2", [out](publish_outcome o) { *out = o; });
  net.settle();
  CHECK_FALSE(*out);
  // it hears the others: the publish goes to the owner at once, not after
  // the acquisition fails or the owner's hold runs out
  net.nodes.at(third)->on_view({owner, replica});
  net.settle();
  REQUIRE(*out);
  CHECK((*out)->ok);
  CHECK((*out)->off == 2);
  CHECK(net.m.history_handovers.load() == 0);
}
