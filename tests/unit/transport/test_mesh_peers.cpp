// The mesh's peer liveness and subscription confirmation, without sockets
// (transport/mesh_peers.hpp), on a clock the test moves.
#include "transport/mesh_peers.hpp"

#include <doctest/doctest.h>

using namespace wsnode::transport::mesh;
using namespace std::chrono_literals;

namespace {
const clock::time_point t0{};
}

TEST_CASE("peer_table: up, silent after 3 heartbeats, back, restarted") {
  peer_table p{1000ms};
  using change = peer_table::change;
  CHECK(p.heard("n2", 7, t0) == change::up);
  CHECK(p.heard("n2", 7, t0 + 500ms) == change::none);
  CHECK(p.alive("n2", t0 + 3500ms));
  CHECK_FALSE(p.alive("n2", t0 + 3501ms));
  CHECK_FALSE(p.alive("n9", t0));
  CHECK(p.heard("n2", 7, t0 + 4000ms) == change::back);
  CHECK(p.heard("n2", 8, t0 + 4100ms) == change::restarted);
  CHECK(p.heard("n3", 1, t0 + 4100ms) == change::up);
  CHECK(p.live(t0 + 4200ms) == std::vector<std::string>{"n2", "n3"});
}

TEST_CASE("peer_table: a lost connection is death now, until the peer is heard again") {
  peer_table p{1000ms};
  using change = peer_table::change;
  p.heard("n2", 7, t0);
  p.heard("n3", 1, t0);
  CHECK(p.view_change(t0));
  CHECK(p.lost("n2", t0 + 10ms)); // was alive
  CHECK_FALSE(p.alive("n2", t0 + 10ms));
  CHECK_FALSE(p.lost("n2", t0 + 20ms)); // dead already
  CHECK_FALSE(p.lost("n9", t0 + 20ms)); // never heard of
  auto v = p.view_change(t0 + 20ms);
  REQUIRE(v);
  CHECK(*v == std::vector<std::string>{"n3"});
  // a subscription stops waiting for the dead peer's confirmation at once
  confirmations c;
  CHECK_FALSE(c.add("c:x|", t0 + 5s, p, t0 + 20ms)); // n3 must confirm
  CHECK(c.confirm("c:x|", "n3", p, t0 + 30ms));
  // reconnected: the same process is back, a new one restarted
  CHECK(p.heard("n2", 7, t0 + 500ms) == change::back);
  CHECK(p.alive("n2", t0 + 500ms));
  p.lost("n2", t0 + 600ms);
  CHECK(p.heard("n2", 8, t0 + 900ms) == change::restarted);
  CHECK(p.alive("n2", t0 + 900ms));
}

TEST_CASE("peer_table: a peer that does not hear this node is not alive (one-way loss)") {
  peer_table p{1000ms};
  p.heard("n2", 1, t0);
  p.heard("n3", 1, t0);
  CHECK(p.alive("n2", t0)); // until its heartbeat says otherwise
  CHECK_FALSE(p.hears("n2", "n1,n3", "n1"));
  CHECK(p.alive("n2", t0));
  CHECK(p.hears("n2", "n3", "n1")); // n2 stopped hearing n1
  CHECK_FALSE(p.alive("n2", t0 + 10ms));
  CHECK(p.live(t0 + 10ms) == std::vector<std::string>{"n3"});
  // n1 still hears n2: its own heartbeat lists n2, or n2 could never learn it is heard
  CHECK(p.heard_list(t0 + 10ms) == "n2,n3");
  CHECK(p.hears("n2", "n3,n1", "n1")); // healed
  CHECK(p.alive("n2", t0 + 20ms));
  CHECK(p.hears("n2", "n11,n1x", "n1")); // whole ids only: n1 is not among them
  CHECK_FALSE(p.alive("n2", t0 + 20ms));
  CHECK_FALSE(p.hears("n2", "", "n1")); // hears nobody: no change
  CHECK_FALSE(p.alive("n2", t0 + 20ms));
  CHECK_FALSE(p.hears("n9", "n1", "n1")); // never heard of
  p.lost("n3", t0 + 30ms);
  CHECK(p.heard_list(t0 + 30ms) == "n2"); // not heard: its connection reset
}

TEST_CASE("confirmations: a pending subscription completes when its missing peer is lost") {
  peer_table p{1000ms};
  p.heard("n2", 1, t0);
  p.heard("n3", 1, t0);
  confirmations c;
  CHECK_FALSE(c.add("c:x|", t0 + 5s, p, t0));
  CHECK_FALSE(c.confirm("c:x|", "n3", p, t0 + 1ms));
  CHECK(c.expire(p, t0 + 2ms, true).empty()); // n2 alive and silent: still waiting
  p.lost("n2", t0 + 3ms);
  auto done = c.expire(p, t0 + 3ms, true);
  REQUIRE(done.size() == 1);
  CHECK(done[0].topic == "c:x|");
  CHECK_FALSE(done[0].timed_out);
}

TEST_CASE("peer_table: the view is reported when it changes, once") {
  peer_table p{1000ms};
  CHECK_FALSE(p.view_change(t0)); // empty, as before
  p.heard("n3", 1, t0);
  p.heard("n2", 1, t0);
  auto v = p.view_change(t0);
  REQUIRE(v);
  CHECK(*v == std::vector<std::string>{"n2", "n3"});
  CHECK_FALSE(p.view_change(t0 + 1s));
  p.heard("n3", 1, t0 + 3s); // n2 goes silent, n3 stays
  v = p.view_change(t0 + 3500ms);
  REQUIRE(v);
  CHECK(*v == std::vector<std::string>{"n3"});
  int silent = 0;
  p.visit(t0 + 3500ms, [&](const std::string& id, bool alive, clock::duration age, bool was) {
    if (!alive && was)
      ++silent;
    if (id == "n2")
      CHECK(age == 3500ms);
  });
  CHECK(silent == 0); // never reported alive before this first visit
  p.visit(t0 + 3500ms, [&](const std::string&, bool alive, clock::duration, bool was) {
    if (!alive && was)
      ++silent;
  });
  CHECK(silent == 0);
}

TEST_CASE("confirmations: live when every live peer confirmed, not before") {
  peer_table p{1000ms};
  p.heard("n2", 1, t0);
  p.heard("n3", 1, t0);
  confirmations c;
  CHECK_FALSE(c.add("c:room:1|", t0 + 1s, p, t0));
  CHECK_FALSE(c.confirm("c:room:1|", "n2", p, t0));
  CHECK_FALSE(c.confirm("c:room:1|", "n2", p, t0)); // twice counts once
  CHECK_FALSE(c.confirm("c:other|", "n3", p, t0));  // not waiting: nothing
  CHECK(c.confirm("c:room:1|", "n3", p, t0));
  CHECK(c.empty());
  CHECK(c.earliest_deadline() == clock::time_point::max());
}

TEST_CASE("confirmations: no live peer means live at once") {
  peer_table p{1000ms};
  confirmations c;
  CHECK(c.add("u:alice|", t0 + 1s, p, t0));
  p.heard("n2", 1, t0);
  CHECK(c.add("u:alice|", t0 + 1s, p, t0 + 5s)); // n2 silent by then
  CHECK(c.empty());
}

TEST_CASE("confirmations: a deadline passes, a silent peer stops being waited for") {
  peer_table p{1000ms};
  p.heard("n2", 1, t0);
  p.heard("n3", 1, t0);
  confirmations c;
  CHECK_FALSE(c.add("c:a|", t0 + 1s, p, t0));
  CHECK_FALSE(c.add("c:b|", t0 + 10s, p, t0));
  CHECK(c.earliest_deadline() == t0 + 1s);
  CHECK(c.expire(p, t0 + 999ms, true).empty());
  auto done = c.expire(p, t0 + 1s, false);
  REQUIRE(done.size() == 1);
  CHECK(done[0].topic == "c:a|");
  CHECK(done[0].timed_out);
  CHECK(c.earliest_deadline() == t0 + 10s);
  // n3 confirms b; n2 goes silent (3 intervals): a recheck finds b complete
  CHECK_FALSE(c.confirm("c:b|", "n3", p, t0 + 1s));
  p.heard("n3", 1, t0 + 3s);
  CHECK(c.expire(p, t0 + 3500ms, false).empty()); // no recheck: still waiting
  done = c.expire(p, t0 + 3500ms, true);
  REQUIRE(done.size() == 1);
  CHECK(done[0].topic == "c:b|");
  CHECK_FALSE(done[0].timed_out);
  CHECK(c.empty());
}

TEST_CASE("confirmations: removed, or added again, a topic keeps only its latest wait") {
  peer_table p{1000ms};
  p.heard("n2", 1, t0);
  confirmations c;
  CHECK_FALSE(c.add("c:a|", t0 + 1s, p, t0));
  c.remove("c:a|");
  CHECK(c.expire(p, t0 + 2s, true).empty());
  CHECK_FALSE(c.add("c:a|", t0 + 1s, p, t0));
  CHECK_FALSE(c.add("c:a|", t0 + 5s, p, t0 + 500ms)); // subscribed again: a new wait
  CHECK(c.expire(p, t0 + 1s, false).empty());         // the old deadline is not its own
  auto done = c.expire(p, t0 + 5s, false);
  REQUIRE(done.size() == 1);
  CHECK(done[0].timed_out);
}

TEST_CASE("interest_table: a topic wanted again goes on with its sequence") {
  interest_table t{10min};
  CHECK_FALSE(t.next_seq("c:a|")); // nobody wants it: not sent
  t.want("c:a|");
  CHECK(t.next_seq("c:a|") == 1u);
  CHECK(t.next_seq("c:a|") == 2u);
  // the peer's connection broke: the old one leaves, the new one comes back
  t.unwant("c:a|", t0 + 1s);
  CHECK_FALSE(t.next_seq("c:a|")); // dropped meanwhile (the receiver sees a gap)
  t.want("c:a|");
  CHECK(t.next_seq("c:a|") == 3u); // not 1: the receiver would drop 1, 2 as old
  // or the new connection's subscription comes first, then the old one's leave
  t.want("c:a|");
  CHECK(t.next_seq("c:a|") == 4u);
  // unwanted for longer than `keep`: forgotten, and it starts over
  t.unwant("c:a|", t0 + 2s);
  t.want("c:b|");
  t.forget(t0 + 2s + 11min);
  CHECK(t.size() == 1); // c:b stays: it is wanted
  t.want("c:a|");
  CHECK(t.next_seq("c:a|") == 1u); // a new baseline at the receiver (seq_tracker)
}
