// Occupancy tables of three nodes over an in-memory network (no actors, no
// sockets): one occupied/vacated per transition for the whole cluster,
// whichever nodes hold a name, across views, restarts and owner changes.
#include "actors/occupancy.hpp"
#include "actors/rank_nodes.hpp"

#include <doctest/doctest.h>

#include <array>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace wsnode;
using namespace wsnode::actors;

namespace {

const std::vector<std::string> all_nodes{"n1", "n2", "n3"};

std::string owner_of(const std::string& name, std::vector<std::string> nodes = all_nodes) {
  return rank_nodes(name, std::move(nodes)).front();
}

// Its owner and its backup.
std::vector<std::string> keepers_of(const std::string& name,
                                    std::vector<std::string> nodes = all_nodes) {
  auto r = rank_nodes(name, std::move(nodes));
  r.resize(2);
  return r;
}

// The first of "<prefix>0", "<prefix>1", ... that `node` owns among all three.
std::string owned_by(const std::string& node, const std::string& prefix) {
  for (int i = 0; i < 10000; ++i) {
    auto name = prefix + std::to_string(i);
    if (owner_of(name) == node)
      return name;
  }
  FAIL("no name of " << prefix << " owned by " << node);
  return {};
}

// Three tables; payloads queue until pump(); every event recorded with the
// node that emitted it.
struct cluster {
  std::map<std::string, std::unique_ptr<occupancy_table>> t;
  std::deque<std::array<std::string, 3>> queue; // from, to, payload
  std::vector<std::string> sent;                // "from>to payload", every one sent
  std::vector<std::string> changed;             // "node +name" / "node -name"
  std::vector<std::string> undelivered;         // "node fields"

  cluster() {
    for (const auto& id : all_nodes)
      make(id);
    views();
  }
  cluster(const cluster&) = delete; // the hooks hold `this`

  void make(const std::string& id) {
    occupancy_hooks h;
    h.send = [this, id](const std::string& to, std::string p) {
      sent.push_back(id + ">" + to + " " + p);
      queue.push_back({id, to, std::move(p)});
    };
    h.changed = [this, id](const std::string& name, bool held) {
      changed.push_back(id + (held ? " +" : " -") + name);
    };
    h.undelivered = [this, id](std::string fields) { undelivered.push_back(id + " " + fields); };
    h.repair = [this] { ++repairs; };
    t[id] = std::make_unique<occupancy_table>(id, std::move(h));
  }
  // Every table gets a view of the others that are up.
  void views() {
    for (auto& [id, table] : t) {
      std::vector<std::string> others;
      for (const auto& [o, _] : t)
        if (o != id)
          others.push_back(o);
      table->on_view(std::move(others));
    }
  }
  void pump() {
    for (int i = 0; i < 100000 && !queue.empty(); ++i) {
      auto [from, to, payload] = std::move(queue.front());
      queue.pop_front();
      if (auto it = t.find(to); it != t.end())
        CHECK(it->second->on_message(from, payload));
    }
    CHECK(queue.empty());
  }
  // `id` is gone: the others' views lose it.
  void leave(const std::string& id) {
    t.erase(id);
    views();
  }
  // `id` comes back with a fresh table (joins the views again).
  void join(const std::string& id) {
    make(id);
    views();
  }
  // `id` restarted: a fresh table, and the others hear of the restart.
  void restart(const std::string& id) {
    join(id);
    for (auto& [o, table] : t)
      if (o != id)
        table->on_restart(id);
  }
  // Loses every queued payload for which `lost(from, to, payload)` holds.
  template <class Pred>
  void lose(Pred lost) {
    std::erase_if(queue, [&](const auto& q) { return lost(q[0], q[1], q[2]); });
  }
  // Every table's digests at `now`, delivered.
  void digests(occupancy_table::clock::time_point now) {
    for (auto& [id, table] : t)
      table->tick(now);
    pump();
  }
  int repairs = 0;
  void hold(const std::string& node, const std::string& name, bool held = true) {
    t.at(node)->local(name, held);
    pump();
  }
};

std::string ev(const std::string& node, char sign, const std::string& name) {
  return node + " " + sign + name;
}

} // namespace

TEST_CASE("occupancy: a name held on one node is occupied once and vacated once, by its owner") {
  cluster c;
  for (const std::string name : {"c:room:1", "u:ann", "c:news"}) {
    auto o = owner_of(name);
    for (const auto& holder : all_nodes) {
      CAPTURE(name);
      CAPTURE(holder);
      c.changed.clear();
      c.hold(holder, name);
      CHECK(c.changed == std::vector<std::string>{ev(o, '+', name)});
      for (const auto& id : all_nodes) // the owner and its backup keep it
        CHECK(c.t[id]->kept() == (id == o || id == keepers_of(name)[1] ? 1u : 0u));
      c.hold(holder, name, false);
      CHECK(c.changed == std::vector<std::string>{ev(o, '+', name), ev(o, '-', name)});
      for (const auto& id : all_nodes)
        CHECK(c.t[id]->kept() == 0);
    }
  }
}

TEST_CASE("occupancy: a name held on two nodes is vacated only when the second lets go") {
  cluster c;
  for (const auto& owner : all_nodes) {
    auto name = owned_by(owner, "c:two.");
    CAPTURE(name);
    c.changed.clear();
    c.hold("n2", name);
    c.hold("n3", name);
    CHECK(c.changed == std::vector<std::string>{ev(owner, '+', name)});
    c.hold("n2", name, false);
    CHECK(c.changed.size() == 1);
    c.hold("n2", name, false); // again: nothing more
    CHECK(c.changed.size() == 1);
    c.hold("n3", name, false);
    CHECK(c.changed == std::vector<std::string>{ev(owner, '+', name), ev(owner, '-', name)});
  }
}

TEST_CASE("occupancy: 100 hold/release cycles hopping across nodes give 100 events each way, "
          "alternating") {
  cluster c;
  const std::string name = "c:hop";
  auto o = owner_of(name);
  std::vector<std::string> expected;
  for (std::size_t i = 0; i < 100; ++i) {
    const auto& node = all_nodes[i % 3];
    c.hold(node, name);
    c.hold(node, name, false);
    expected.push_back(ev(o, '+', name));
    expected.push_back(ev(o, '-', name));
  }
  CHECK(c.changed == expected);
  for (const auto& id : all_nodes)
    CHECK(c.t[id]->kept() == 0);
}

TEST_CASE("occupancy: a node leaving the view vacates what only it held, and nothing else") {
  cluster c;
  auto a = owned_by("n1", "c:a.");
  auto b = owned_by("n2", "c:b.");
  auto shared = owned_by("n1", "c:s.");
  c.hold("n3", a);
  c.hold("n3", b);
  c.hold("n3", shared);
  c.hold("n2", shared);
  CHECK(c.changed ==
        std::vector<std::string>{ev("n1", '+', a), ev("n2", '+', b), ev("n1", '+', shared)});
  c.changed.clear();
  c.sent.clear();
  c.leave("n3");
  CHECK(c.sent.empty()); // no owner moved: n3 owned none of them
  c.pump();
  CHECK(c.changed == std::vector<std::string>{ev("n1", '-', a), ev("n2", '-', b)});
  CHECK(c.t["n1"]->kept() == 1); // shared, with n2 as its backup now
  CHECK(c.t["n2"]->kept() == 1);
  c.hold("n2", shared, false);
  CHECK(c.changed ==
        std::vector<std::string>{ev("n1", '-', a), ev("n2", '-', b), ev("n1", '-', shared)});
}

TEST_CASE("occupancy: when the owner leaves, its backup owns the name with the holders it "
          "knew and announces nothing until they let go") {
  cluster c;
  auto x = owned_by("n1", "c:x.");
  c.hold("n2", x);
  c.hold("n3", x);
  CHECK(c.changed == std::vector<std::string>{ev("n1", '+', x)});
  c.changed.clear();
  c.sent.clear();
  c.leave("n1");
  auto next = owner_of(x, {"n2", "n3"});
  CHECK(next == keepers_of(x)[1]); // the backup
  auto other = next == "n2" ? std::string{"n3"} : std::string{"n2"};
  // the other node is a keeper now: the new owner syncs to it (the other
  // counts itself)
  CHECK(c.sent == std::vector<std::string>{next + ">" + other + " =" + x});
  c.pump();
  CHECK(c.changed.empty());
  CHECK(c.t[next]->kept() == 1);
  CHECK(c.t[other]->kept() == 1);
  c.hold(next, x, false);
  CHECK(c.changed.empty()); // the other still holds it
  c.hold(other, x, false);
  CHECK(c.changed == std::vector<std::string>{ev(next, '-', x)});
  CHECK(c.t[next]->kept() == 0);
}

TEST_CASE("occupancy: a name held only by its owner is vacated by the backup when the owner "
          "leaves or restarts") {
  for (bool restart : {false, true}) {
    CAPTURE(restart);
    cluster c;
    auto x = owned_by("n1", "c:alone.");
    auto backup = keepers_of(x)[1];
    c.hold("n1", x);
    CHECK(c.changed == std::vector<std::string>{ev("n1", '+', x)});
    c.changed.clear();
    if (restart)
      c.restart("n1");
    else
      c.leave("n1");
    c.pump();
    CHECK(c.changed == std::vector<std::string>{ev(backup, '-', x)});
  }
}

TEST_CASE("occupancy: a node that comes back ranked first takes a name over without an event") {
  cluster c;
  auto x = owned_by("n1", "c:back.");
  c.hold("n2", x);
  c.hold("n3", x);
  c.leave("n1");
  c.pump();
  auto interim = owner_of(x, {"n2", "n3"});
  CHECK(c.t[interim]->kept() == 1);
  c.changed.clear();
  c.sent.clear();
  c.join("n1");
  CHECK(c.sent.size() == 2); // both holders sync to n1
  for (const auto& s : c.sent)
    CHECK(s.ends_with(">n1 =" + x));
  c.pump();
  CHECK(c.changed.empty());
  CHECK(c.t["n1"]->kept() == 1);
  CHECK(c.t[interim]->kept() == 1);                       // the backup again
  CHECK(c.t[interim == "n2" ? "n3" : "n2"]->kept() == 0); // let go quietly
  c.hold("n2", x, false);
  CHECK(c.changed.empty());
  c.hold("n3", x, false);
  CHECK(c.changed == std::vector<std::string>{ev("n1", '-', x)});
}

TEST_CASE("occupancy: a restarted node's names are vacated, and it hears again what it owns") {
  cluster c;
  auto r = owned_by("n1", "c:r.");
  auto s = owned_by("n3", "c:s.");
  c.hold("n3", r);
  c.hold("n1", s);
  CHECK(c.changed == std::vector<std::string>{ev("n1", '+', r), ev("n3", '+', s)});
  c.changed.clear();
  c.restart("n3");
  c.pump();
  CHECK(c.changed == std::vector<std::string>{ev("n1", '-', r)});
  CHECK(c.t["n3"]->kept() == 1); // n1's sync of s: no second occupied
  c.hold("n1", s, false);
  CHECK(c.changed == std::vector<std::string>{ev("n1", '-', r), ev("n3", '-', s)});
}

TEST_CASE("occupancy: a send to a user held nowhere is undelivered once; held somewhere, never") {
  cluster c;
  auto ghost_owner = owner_of("u:ghost");
  for (const auto& asker : all_nodes) {
    CAPTURE(asker);
    c.undelivered.clear();
    std::string fields = R"("to":"ghost","data":{"a":1},"from":")" + asker + "-5\"";
    c.t[asker]->check_undelivered("ghost", fields);
    c.pump();
    CHECK(c.undelivered == std::vector<std::string>{ghost_owner + " " + fields});
  }
  c.undelivered.clear();
  c.hold("n3", "u:bob");
  for (const auto& asker : all_nodes) {
    c.t[asker]->check_undelivered("bob", R"("to":"bob","data":1)");
    c.pump();
  }
  CHECK(c.undelivered.empty());
  c.hold("n3", "u:bob", false);
  c.t["n1"]->check_undelivered("bob", R"("to":"bob","data":2)");
  c.pump();
  CHECK(c.undelivered == std::vector<std::string>{owner_of("u:bob") + R"( "to":"bob","data":2)"});
}

TEST_CASE("occupancy: malformed payloads are refused and change nothing") {
  cluster c;
  c.sent.clear();
  for (const std::string p :
       {"", "+", "-", "xc:room", "+a\nb", "=c:a\n", "?u:x", "?c:x\n{}", "?x\n{}"}) {
    CAPTURE(p);
    CHECK_FALSE(c.t["n1"]->on_message("n2", p));
  }
  CHECK(c.changed.empty());
  CHECK(c.undelivered.empty());
  CHECK(c.sent.empty());
  CHECK(c.t["n1"]->kept() == 0);
  // a well-formed one still counts afterwards
  auto ok = owned_by("n1", "c:ok.");
  CHECK(c.t["n1"]->on_message("n2", "+" + ok));
  CHECK(c.changed == std::vector<std::string>{"n1 +" + ok});
}

TEST_CASE("occupancy: lost deltas heal by digests: the owner asks for the list and announces "
          "what it missed") {
  cluster c;
  auto x = owned_by("n1", "c:lost.");
  auto t0 = occupancy_table::clock::now();
  // n3's '+' to the owner is lost (its backup gets it: it says nothing)
  c.t["n3"]->local(x, true);
  c.lose([&](const std::string&, const std::string& to, const std::string& p) {
    return to == "n1" && p == "+" + x;
  });
  c.pump();
  CHECK(c.changed.empty());
  c.digests(t0);
  CHECK(c.changed.empty()); // one differing digest may cross a delta: wait for a second
  CHECK(c.repairs == 0);
  c.digests(t0 + std::chrono::seconds(1)); // within the interval: no digest
  CHECK(c.repairs == 0);
  c.digests(t0 + std::chrono::seconds(6));
  CHECK(c.repairs == 1);
  CHECK(c.changed == std::vector<std::string>{ev("n1", '+', x)});
  // and agreeing digests afterwards ask nothing
  c.digests(t0 + std::chrono::seconds(12));
  c.digests(t0 + std::chrono::seconds(18));
  CHECK(c.repairs == 1);
  // a lost '-' heals the same way: the vacated comes
  c.t["n3"]->local(x, false);
  c.lose([&](const std::string&, const std::string& to, const std::string& p) {
    return to == "n1" && p == "-" + x;
  });
  c.pump();
  CHECK(c.changed.size() == 1);
  c.digests(t0 + std::chrono::seconds(24));
  c.digests(t0 + std::chrono::seconds(30));
  CHECK(c.repairs == 2);
  CHECK(c.changed == std::vector<std::string>{ev("n1", '+', x), ev("n1", '-', x)});
  for (const auto& id : all_nodes)
    CHECK(c.t[id]->kept() == 0);
}
