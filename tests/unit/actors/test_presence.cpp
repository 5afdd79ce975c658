// Presence tables of three nodes over an in-memory network (no actors, no
// sockets), the session policy functions, and the v1.1 codec of presence,
// refresh and subscription tokens.
#include "actors/presence.hpp"
#include "actors/session_policy.hpp"
#include "protocol/codec.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace wsnode;
using namespace wsnode::actors;

namespace {

std::shared_ptr<const namespace_table> presence_namespaces() {
  namespace_options room;
  room.name = "room";
  room.presence = true;
  room.join_leave = true;
  namespace_options quiet;
  quiet.name = "quiet";
  quiet.presence = true;
  namespace_options live;
  live.name = "live";
  live.presence = live.presence_count = true;
  return std::make_shared<const namespace_table>(std::vector<namespace_options>{room, quiet, live});
}

// Three nodes; messages queue until deliver(); a node can drop messages.
struct net3 {
  struct msg {
    std::string from, to, payload;
  };
  std::vector<std::string> ids{"a", "b", "c"};
  std::map<std::string, metrics> m;
  std::map<std::string, std::unique_ptr<presence_table>> t;
  std::map<std::string, std::vector<std::string>> events; // node -> "join room:1 u"
  std::deque<msg> queue;
  std::map<std::string, bool> lose; // messages to this node are lost

  net3() {
    auto ns = presence_namespaces();
    for (const auto& id : ids) {
      presence_hooks h;
      h.send = [this, id](const std::string& to, std::string p) {
        queue.push_back({id, to, std::move(p)});
      };
      h.deliver = [this, id](const std::string&, const frame_ptr& f) { events[id].push_back(*f); };
      t[id] = std::make_unique<presence_table>(id, ns, m[id], std::move(h),
                                               std::chrono::milliseconds(100));
    }
    for (const auto& id : ids) {
      std::vector<std::string> others;
      for (const auto& o : ids)
        if (o != id)
          others.push_back(o);
      t[id]->on_view(others);
    }
    deliver();
  }
  void deliver() {
    for (int i = 0; i < 100000 && !queue.empty(); ++i) {
      auto x = std::move(queue.front());
      queue.pop_front();
      if (!lose[x.to] && t.count(x.to))
        t[x.to]->on_message(x.from, x.payload);
    }
  }
};

} // namespace

TEST_CASE("presence: members of every node, once each; events on first and last") {
  net3 n;
  n.t["a"]->add("room:1", 1, "alice");
  n.t["a"]->add("room:1", 2, "alice"); // a second session: no news
  n.t["b"]->add("room:1", 3, "bob");
  n.t["c"]->add("room:1", 4, "alice"); // alice on a second node: no news
  n.deliver();
  for (const auto& id : n.ids)
    CHECK(n.t[id]->count("room:1") == 2);
  // b: bob at once (local), alice when a's delta arrives (c's adds nothing)
  CHECK(n.events["b"] == std::vector<std::string>{protocol::encode_join("room:1", "bob"),
                                                  protocol::encode_join("room:1", "alice")});
  CHECK(n.t["c"]->page({}, "room:1", 10, {}, true, 65536) ==
        R"({"ch":"room:1","count":2,"users":["alice","bob"]})");
  n.events.clear();
  n.t["a"]->leave(1);
  n.t["a"]->leave(2); // alice is still on c
  n.deliver();
  CHECK(n.events["b"].empty());
  n.t["c"]->remove("room:1", 4);
  n.deliver();
  CHECK(n.events["b"] == std::vector<std::string>{protocol::encode_leave("room:1", "alice")});
  CHECK(n.t["a"]->count("room:1") == 1);
  // without join_leave no events, still counted
  n.t["a"]->add("quiet:1", 9, "zed");
  n.deliver();
  CHECK(n.t["b"]->count("quiet:1") == 1);
  CHECK(n.events["b"].size() == 1);
}

TEST_CASE("presence: pages follow the cursor and stay within the frame size") {
  net3 n;
  for (int i = 0; i < 25; ++i)
    n.t["a"]->add("room:p", static_cast<std::uint64_t>(i + 1), "user" + std::to_string(100 + i));
  auto p1 = n.t["a"]->page("7", "room:p", 10, {}, false, 65536);
  CHECK(p1.find(R"("cursor":"user109")") != std::string::npos);
  auto p3 = n.t["a"]->page("7", "room:p", 10, "user119", false, 65536);
  CHECK(p3.find("user124") != std::string::npos);
  CHECK(p3.find("cursor") == std::string::npos);
  CHECK(n.t["a"]->page("7", "room:p", 0, {}, false, 65536) ==
        R"({"op":"presence","id":7,"ch":"room:p","count":25,"users":[]})");
  // a small frame limit cuts the page and says where to go on
  auto small = n.t["a"]->page("7", "room:p", 1000, {}, false, 256 + 6 + 3 * 10);
  CHECK(small.size() <= 256 + 6 + 3 * 10 + 64);
  CHECK(small.find("cursor") != std::string::npos);
  CHECK(n.t["a"]->page({}, "room:none", 10, {}, true, 65536) ==
        R"({"ch":"room:none","count":0,"users":[]})");
}

TEST_CASE("presence: a dead node's members leave; a restarted one is synced again") {
  net3 n;
  n.t["c"]->add("room:1", 1, "carol");
  n.t["c"]->add("room:1", 2, "dave");
  n.t["b"]->add("room:1", 3, "bob");
  n.deliver();
  CHECK(n.t["a"]->count("room:1") == 3);
  n.events.clear();
  n.t["a"]->on_view({"b"}); // c is gone
  CHECK(n.t["a"]->count("room:1") == 1);
  CHECK(n.events["a"].size() == 2);
  // c comes back (it restarted empty, then its users returned)
  n.t.erase("c");
  presence_hooks h;
  h.send = [&n](const std::string& to, std::string p) {
    n.queue.push_back({"c", to, std::move(p)});
  };
  n.t["c"] = std::make_unique<presence_table>("c", presence_namespaces(), n.m["c"], std::move(h));
  n.t["c"]->on_view({"a", "b"});
  n.t["a"]->on_view({"b", "c"});
  n.t["b"]->on_restart("c");
  n.deliver();
  CHECK(n.t["c"]->count("room:1") == 1); // bob, from b's snapshot
  CHECK(n.t["b"]->count("room:1") == 1); // carol and dave left with c's restart
  n.t["c"]->add("room:1", 5, "carol");
  n.deliver();
  CHECK(n.t["a"]->count("room:1") == 2);
  CHECK(n.t["b"]->count("room:1") == 2);
}

TEST_CASE("presence: a lost delta is healed by the digests") {
  net3 n;
  n.lose["b"] = true;
  n.t["a"]->add("room:1", 1, "alice");
  n.t["a"]->add("room:1", 2, "ann");
  n.deliver();
  n.lose["b"] = false;
  CHECK(n.t["b"]->count("room:1") == 0);
  CHECK(n.t["c"]->count("room:1") == 2);
  n.t["a"]->tick(); // digests: b's copy differs, it asks a for a snapshot
  n.deliver();
  CHECK(n.t["b"]->count("room:1") == 2);
  CHECK(n.m["b"].presence_resyncs == 1);
  // a lost leave: b holds ann after a forgot her; a's digest (1 member) heals it
  n.lose["b"] = true;
  n.t["a"]->leave(2);
  n.deliver();
  n.lose["b"] = false;
  CHECK(n.t["b"]->count("room:1") == 2);
  // (b asks a peer at most once per digest interval: let it pass)
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  n.t["a"]->tick(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  n.deliver();
  CHECK(n.t["b"]->count("room:1") == 1);
  // a lost last leave: a sends no more digests for the channel; b's copy of
  // a's members goes silent and b asks again
  n.lose["b"] = true;
  n.t["a"]->leave(1);
  n.deliver();
  n.lose["b"] = false;
  CHECK(n.t["b"]->count("room:1") == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  n.t["b"]->tick(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  n.deliver();
  CHECK(n.t["b"]->count("room:1") == 0);
  // garbage is counted, never trusted
  n.t["b"]->on_message("a", "room:1\nP{not json");
  n.t["b"]->on_message("a", "room:1\nP{\"t\":\"j\",\"u\":\"bad user!\"}");
  n.t["b"]->on_message("a", "chat:1\nP{\"t\":\"j\",\"u\":\"x\"}"); // no presence there
  CHECK(n.m["b"].presence_bad_messages == 3);
  CHECK(n.t["b"]->count("chat:1") == 0);
}

TEST_CASE("policy: private channels, publish rules, refresh verdicts") {
  protocol::token_verifier v{{"s3cret", {}, {}, {}}};
  namespace_options priv;
  priv.subscribe = subscribe_rule::token;
  namespace_options open;
  session_grants none;
  session_grants listed{{"private:1"}};
  using namespace std::chrono_literals;
  CHECK_FALSE(may_join(open, "x:1", {}, "alice", none, nullptr));
  CHECK(may_join(priv, "private:1", {}, "alice", none, &v)->reason == refusal_reason::no_grant);
  CHECK_FALSE(may_join(priv, "private:1", {}, "alice", listed, &v));
  auto tok = [](std::string user, std::string ch, std::chrono::seconds ttl) {
    return protocol::sign_token(user, "s3cret", ttl, {{}, std::move(ch)});
  };
  CHECK_FALSE(may_join(priv, "private:1", tok("alice", "private:1", 60s), "alice", none, &v));
  CHECK(may_join(priv, "private:1", tok("bob", "private:1", 60s), "alice", none, &v)->reason ==
        refusal_reason::bad_sub_token);
  CHECK(may_join(priv, "private:1", tok("alice", "private:2", 60s), "alice", none, &v));
  CHECK(may_join(priv, "private:1", tok("alice", "private:1", -60s), "alice", none, &v));
  CHECK(may_join(priv, "private:1", tok("alice", "private:1", 60s), "alice", none, nullptr));
  namespace_options subs;
  subs.publish = publish_rule::subscribers;
  namespace_options server;
  server.publish = publish_rule::server;
  CHECK_FALSE(may_publish(subs, true));
  CHECK(may_publish(subs, false)->reason == refusal_reason::not_subscriber);
  CHECK(may_publish(server, true)->reason == refusal_reason::publish_server);
  auto ok = check_refresh(protocol::sign_token("alice", "s3cret", 60s), "alice", &v);
  CHECK(ok.what == refresh_verdict::kind::ok);
  CHECK(ok.exp.has_value());
  CHECK(check_refresh(protocol::sign_token("bob", "s3cret", 60s), "alice", &v).what ==
        refresh_verdict::kind::other_user);
  CHECK(check_refresh("a.b.c", "alice", &v).what == refresh_verdict::kind::bad_token);
  CHECK(check_refresh("a.b.c", "alice", nullptr).what == refresh_verdict::kind::no_auth);
}

TEST_CASE("codec: presence, refresh and subscription tokens") {
  protocol::parse_limits lim;
  auto p = protocol::parse_command(
      R"({"op":"presence","ch":"room:1","limit":5,"cursor":"bob","id":1})", lim);
  auto& cmd = std::get<protocol::command>(p);
  CHECK(cmd.kind == protocol::op::presence);
  CHECK(cmd.limit == 5u);
  CHECK(cmd.cursor == "bob");
  auto r = protocol::parse_command(R"({"op":"refresh","token":"a.b.c","id":2})", lim);
  CHECK(std::get<protocol::command>(r).token == "a.b.c");
  auto missing = protocol::parse_command(R"({"op":"refresh","id":3})", lim);
  CHECK(std::get<protocol::command_error>(missing).code == protocol::error_code::bad_request);
  auto s = protocol::parse_command(R"({"op":"sub","ch":"private:1","token":"t.o.k"})", lim);
  CHECK(std::get<protocol::command>(s).token == "t.o.k");
  auto bad = protocol::parse_command(R"({"op":"sub","ch":"private:1","token":7})", lim);
  CHECK(std::holds_alternative<protocol::command_error>(bad));
  auto nocursor = protocol::parse_command(R"({"op":"presence","ch":"room:1","cursor":1})", lim);
  CHECK(std::holds_alternative<protocol::command_error>(nocursor));
  CHECK(protocol::encode_refresh_ack("2", 1767225600) == R"({"op":"ack","id":2,"exp":1767225600})");
  CHECK(protocol::encode_refresh_ack({}, std::nullopt) == R"({"op":"ack"})");
  auto api = protocol::parse_history_body(R"({"ch":"room:1","limit":0,"cursor":"x"})",
                                          protocol::op::presence);
  CHECK(std::get<protocol::command>(api).limit == 0u);
  CHECK(std::get<protocol::command>(api).cursor == "x");
  // round trip through encode_command
  protocol::command c;
  c.kind = protocol::op::refresh;
  c.token = "x.y.z";
  CHECK(protocol::encode_command(c) == R"({"op":"refresh","token":"x.y.z"})");
}

TEST_CASE("presence = count: cluster-wide session counts, O(nodes) per room, no members") {
  net3 n;
  using clock = presence_table::clock;
  auto t0 = clock::now();
  auto tick_all = [&](clock::time_point at) {
    for (const auto& id : n.ids)
      if (n.t.count(id))
        n.t[id]->tick(at);
    n.deliver();
  };
  n.t["a"]->add("live:1", 1, "alice");
  n.t["a"]->add("live:1", 2, "alice"); // sessions, not users: 2
  n.t["b"]->add("live:1", 3, "bob");
  CHECK(n.t["a"]->count("live:1") == 2); // local at once
  CHECK(n.t["c"]->count("live:1") == 0); // the others at the next exchange
  tick_all(t0 + std::chrono::milliseconds(100));
  for (const auto& id : n.ids)
    CHECK(n.t[id]->count("live:1") == 3);
  // the page is the count, with no member list and no events
  auto page = n.t["c"]->page("7", "live:1", 100, {}, false, 65536);
  CHECK(page == protocol::encode_presence("7", "live:1", 3, {}, {}, false));
  CHECK(n.events["a"].empty());
  CHECK(n.events["c"].empty());
  // a session leaves: one interval later every node agrees
  n.t["a"]->remove("live:1", 2);
  tick_all(t0 + std::chrono::milliseconds(200));
  CHECK(n.t["c"]->count("live:1") == 2);
  // a member message for a counted channel is refused and counted
  n.t["c"]->on_message("a", "live:1\n{\"t\":\"j\",\"u\":\"x\"}");
  CHECK(n.m["c"].presence_bad_messages.load() == 1);
  CHECK(n.t["c"]->count("live:1") == 2);
  // b leaves the view: its sessions leave the count at once
  n.t["c"]->on_view({"a"});
  CHECK(n.t["c"]->count("live:1") == 1);
  // a peer that stops talking (no view change) is dropped after its counts expire
  n.t["c"]->on_view({"a", "b"});
  n.lose["c"] = true;
  for (int i = 3; i <= 12; ++i)
    tick_all(t0 + std::chrono::milliseconds(100 * i));
  n.lose["c"] = false;
  CHECK(n.t["c"]->count("live:1") == 0);
  // and it is told again once it hears: a's refresh
  for (int i = 13; i <= 16; ++i)
    tick_all(t0 + std::chrono::milliseconds(100 * i));
  CHECK(n.t["c"]->count("live:1") == 2);
  // everything leaves: nothing is kept
  n.t["a"]->leave(1);
  n.t["b"]->leave(3);
  tick_all(t0 + std::chrono::milliseconds(1700));
  for (const auto& id : n.ids)
    CHECK(n.t[id]->count("live:1") == 0);
}
