// The history store on an external engine (actors/history/engine_store):
// how it merges what the engine reads into the protocol's recovery and
// history answers (recovery_max, ttl, epochs, limits, repeats of a key).
// The engine is a small in-memory stand-in for JetStream that keeps
// offsets and the newest messages, as core/history_engine.hpp promises.
#include "actors/history/engine_store.hpp"
#include "protocol/codec.hpp"

#include <doctest/doctest.h>

#include <map>

using namespace wsnode;
using namespace wsnode::actors;
using namespace std::chrono_literals;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct memory_engine final : history_engine {
  struct channel {
    std::string ep = "ep000001";
    std::uint64_t top = 0;
    std::vector<engine_message> held; // newest `size`
  };
  std::map<std::string, channel> chans;
  std::map<std::pair<std::string, std::string>, std::uint64_t> keys;
  std::size_t size = 10;

  void append(const std::string& ch, std::string from, std::string data, std::string key,
              append_done done) override {
    auto& c = chans[ch];
    engine_append_result r;
    r.ok = true;
    r.ep = c.ep;
    if (!key.empty()) {
      if (auto it = keys.find({ch, key}); it != keys.end()) {
        r.off = it->second;
        r.repeat = true;
        return done(r);
      }
    }
    r.off = ++c.top;
    c.held.push_back({r.off, std::move(from), std::move(data), now_ms()});
    if (c.held.size() > size)
      c.held.erase(c.held.begin());
    if (!key.empty())
      keys[{ch, key}] = r.off;
    done(r);
  }
  void read(const std::string& ch, std::uint64_t after, std::size_t max_count,
            read_done done) override {
    auto& c = chans[ch];
    engine_read_result r;
    r.ok = true;
    r.ep = c.ep;
    r.top = c.top;
    for (auto it = c.held.rbegin(); it != c.held.rend() && r.messages.size() < max_count; ++it)
      if (it->off > after)
        r.messages.insert(r.messages.begin(), *it);
    done(r);
  }
  void on_suspect(std::function<void()> f) override { suspect = std::move(f); }
  std::function<void()> suspect;
};

struct fixture {
  std::shared_ptr<memory_engine> engine = std::make_shared<memory_engine>();
  metrics m;
  std::vector<std::pair<std::string, std::uint64_t>> committed;
  std::vector<std::pair<std::string, std::uint64_t>> tops;
  std::vector<std::string> watched{"room:1"};
  std::unique_ptr<engine_store> store;

  fixture() {
    namespace_options room;
    room.name = "room";
    room.history_size = 10;
    room.recovery_max = 5;
    room.history_ttl = 60000ms;
    auto ns = std::make_shared<const namespace_table>(std::vector{room});
    history_hooks hooks;
    hooks.committed = [this](const std::string&, const std::string&, std::uint64_t off,
                             const frame_ptr& frame) { committed.emplace_back(*frame, off); };
    engine_hooks eh;
    eh.post = [](std::function<void()> f) { f(); }; // the test is the broker's thread
    eh.top = [this](const std::string& ch, const std::string&, std::uint64_t top) {
      tops.emplace_back(ch, top);
    };
    eh.watched = [this] { return watched; };
    store = std::make_unique<engine_store>(engine, ns, m, std::move(hooks), std::move(eh));
  }

  publish_outcome publish(const std::string& data, const std::string& key = {}) {
    publish_outcome out;
    store->publish("room:1", "alice", data, key, [&](publish_outcome o) { out = o; });
    return out;
  }
  read_outcome read(read_request req) {
    read_outcome out;
    store->read("room:1", std::move(req), [&](read_outcome o) { out = std::move(o); });
    return out;
  }
  read_outcome recover(std::string ep, std::uint64_t since) {
    read_request r;
    r.since_ep = std::move(ep);
    r.since_off = since;
    return read(r);
  }
  std::vector<std::uint64_t> offsets(const read_outcome& o) {
    std::vector<std::uint64_t> out;
    for (const auto& f : o.frames)
      out.push_back(protocol::msg_offset(*f, 6));
    return out;
  }
};

} // namespace

TEST_CASE("engine store: a publish is committed locally with its offset; a key's repeat is not") {
  fixture f;
  auto a = f.publish(R"({"n":1})", "k1");
  CHECK(a.ok);
  CHECK(a.off == 1);
  auto b = f.publish(R"({"n":1})", "k1");
  CHECK(b.ok);
  CHECK(b.off == 1);
  REQUIRE(f.committed.size() == 1);
  CHECK(f.committed[0].first ==
        R"({"op":"msg","ch":"room:1","from":"alice","off":1,"data":{"n":1}})");
  CHECK_FALSE(f.store->propagates()); // the engine's own feed reaches the other nodes
}

TEST_CASE("engine store: recovery replays exactly what was missed, or says it cannot") {
  fixture f;
  for (int i = 1; i <= 8; ++i)
    f.publish("{}");
  auto o = f.recover("ep000001", 5);
  REQUIRE(o.ok);
  CHECK(o.recovered == true);
  CHECK(o.off == 8);
  CHECK(f.offsets(o) == std::vector<std::uint64_t>{6, 7, 8});
  CHECK(f.recover("ep000001", 8).recovered == true); // nothing missed
  CHECK(f.recover("ep000001", 8).frames.empty());
  CHECK(f.recover("ep000001", 2).recovered == false); // 6 missing > recovery_max 5
  CHECK(f.recover("other000", 5).recovered == false); // another epoch
  CHECK(f.recover("ep000001", 9).recovered == false); // ahead of the channel
  CHECK(f.recover("other000", 5).frames.empty());
  read_request plain;
  auto p = f.read(plain);
  CHECK(p.ep == "ep000001");
  CHECK(p.off == 8);
  CHECK_FALSE(p.recovered);
}

TEST_CASE("engine store: messages past the ttl or not written by wsnode break recovery") {
  fixture f;
  for (int i = 1; i <= 4; ++i)
    f.publish("{}");
  f.engine->chans["room:1"].held[1].time_ms -= 120000; // off 2: older than the 60 s ttl
  CHECK(f.recover("ep000001", 1).recovered == false);
  CHECK(f.recover("ep000001", 2).recovered == true);
  f.engine->chans["room:1"].held[3].data = "{not json"; // off 4
  CHECK(f.recover("ep000001", 2).recovered == false);
  CHECK(f.m.history_bad_messages.load() >= 1);
  read_request h;
  h.kind = read_request::purpose::history;
  // history returns what follows the last hole only
  CHECK(f.offsets(f.read(h)).empty());
}

TEST_CASE("engine store: history reads the newest, or the oldest after since in its epoch") {
  fixture f;
  for (int i = 1; i <= 12; ++i) // the engine holds 3..12
    f.publish("{}");
  read_request h;
  h.kind = read_request::purpose::history;
  CHECK(f.offsets(f.read(h)) == std::vector<std::uint64_t>{3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  h.limit = 2;
  CHECK(f.offsets(f.read(h)) == std::vector<std::uint64_t>{11, 12});
  h.since_ep = "ep000001";
  h.since_off = 5;
  CHECK(f.offsets(f.read(h)) == std::vector<std::uint64_t>{6, 7});
  h.since_ep = "other000";
  CHECK(f.offsets(f.read(h)) == std::vector<std::uint64_t>{11, 12});
  h.limit = 0;
  auto pos = f.read(h);
  CHECK(pos.frames.empty());
  CHECK(pos.off == 12);
}

TEST_CASE("engine store: tops are checked a second after a sub, and for every watched channel "
          "when the engine suspects a loss") {
  fixture f;
  f.publish("{}");
  f.read({}); // a subscription's read
  auto now = cluster_service::clock::now();
  f.store->tick(now);
  CHECK(f.tops.empty());
  f.store->tick(now + 1100ms);
  REQUIRE(f.tops.size() == 1);
  CHECK(f.tops[0] == std::pair<std::string, std::uint64_t>{"room:1", 1});
  f.engine->suspect();
  f.store->tick(cluster_service::clock::now());
  CHECK(f.tops.size() == 2);
}
