#include "bench/adapters.hpp"
#include "bench/histogram.hpp"

#include <doctest/doctest.h>

#include <random>

using namespace wsnode::bench;

TEST_CASE("histogram: exact below 128, <2% error above, quantiles and merge") {
  histogram h;
  for (std::uint64_t v = 1; v <= 100; ++v)
    h.record(v);
  CHECK(h.count() == 100);
  CHECK(h.quantile(0.5) == 50);
  CHECK(h.quantile(0.99) == 99);
  CHECK(h.quantile(1.0) == 100);
  CHECK(h.min() == 1);
  CHECK(h.max() == 100);
  CHECK(h.mean() == doctest::Approx(50.5));
  histogram big;
  for (std::uint64_t v : {1000ull, 12345ull, 1000000ull, 987654321ull}) {
    histogram one;
    one.record(v);
    auto q = one.quantile(0.5);
    CHECK(q <= v); // never above the max recorded
    CHECK(double(q) >= double(v) * 0.98);
    big.merge(one);
  }
  CHECK(big.count() == 4);
  CHECK(big.max() == 987654321ull);
  CHECK(big.min() == 1000);
  CHECK(big.quantile(0.25) <= 1016); // the bucket upper bound: within 1.6%
  CHECK(big.quantile(0.25) >= 1000);
  histogram empty;
  CHECK(empty.quantile(0.99) == 0);
  h.merge(empty);
  CHECK(h.count() == 100);
  histogram huge;
  huge.record(std::uint64_t{1} << 50); // clamped into the last bucket, max kept
  CHECK(huge.max() == std::uint64_t{1} << 50);
}

TEST_CASE("histogram: percentiles of a known distribution") {
  histogram h;
  std::mt19937_64 rng{1};
  std::uniform_int_distribution<std::uint64_t> d{0, 9999};
  for (int i = 0; i < 100000; ++i)
    h.record(d(rng));
  CHECK(double(h.quantile(0.5)) == doctest::Approx(5000).epsilon(0.03));
  CHECK(double(h.quantile(0.9)) == doctest::Approx(9000).epsilon(0.03));
  CHECK(double(h.quantile(0.999)) == doctest::Approx(9990).epsilon(0.03));
}

TEST_CASE("zipf: probabilities follow 1/k^s and sampling matches them") {
  zipf z{100, 1.0};
  CHECK(z.probability(0) / z.probability(1) == doctest::Approx(2.0));
  CHECK(z.probability(0) / z.probability(9) == doctest::Approx(10.0));
  double sum = 0;
  for (std::size_t k = 0; k < z.size(); ++k)
    sum += z.probability(k);
  CHECK(sum == doctest::Approx(1.0));
  std::mt19937_64 rng{7};
  std::uniform_real_distribution<double> u{0, 1};
  std::vector<int> hits(100);
  for (int i = 0; i < 200000; ++i)
    ++hits[z.sample(u(rng))];
  CHECK(hits[0] / 200000.0 == doctest::Approx(z.probability(0)).epsilon(0.05));
  CHECK(hits[0] > hits[1]);
  CHECK(hits[1] > hits[10]);
  CHECK(z.sample(0.0) == 0);
  CHECK(z.sample(0.9999999) == 99);
  zipf flat{4, 0.0};
  CHECK(flat.probability(3) == doctest::Approx(0.25));
}

TEST_CASE("payload stamps survive every adapter's framing") {
  auto p = make_payload(42, 123456789012ull, 7, 100);
  CHECK(p.size() == 100);
  auto s = read_stamp(p);
  REQUIRE(s);
  CHECK(s->seq == 42);
  CHECK(s->sent_ns == 123456789012ull);
  CHECK(s->sender == 7);
  CHECK(make_payload(1, 1, 1, 1).size() > 1); // never shorter than its fixed part
  CHECK_FALSE(read_stamp(R"({"op":"ack","id":1})"));
  // inside a wsnode msg, a Socket.IO event and an Nchan body
  for (auto frame :
       {R"({"op":"msg","ch":"c","from":"u","data":)" + p + "}", R"(42["msg",)" + p + "]", p}) {
    auto st = read_stamp(frame);
    REQUIRE(st);
    CHECK(st->seq == 42);
  }
}

TEST_CASE("wsnode adapter framing") {
  auto c = make_codec(protocol::wsnode);
  std::vector<std::string> out;
  CHECK(c->path("alice", "x") == "/ws?user=alice");
  CHECK_FALSE(c->ready_on_open());
  CHECK(c->on_frame(R"({"op":"hello","node":"n1","user":"a","sid":"n1-1"})", out).kind ==
        event::ready);
  auto ack = c->on_frame(R"({"op":"ack","id":17})", out);
  CHECK(ack.kind == event::ack);
  CHECK(ack.id == 17);
  CHECK(c->on_frame(R"({"op":"msg","ch":"c","data":1})", out).kind == event::message);
  CHECK(c->on_frame(R"({"op":"dm","data":1})", out).kind == event::message);
  auto err = c->on_frame(R"({"op":"err","id":3,"code":"x","msg":"y"})", out);
  CHECK(err.kind == event::error);
  CHECK(err.id == 3);
  CHECK(out.empty());
  CHECK(c->subscribe("room:1", 5) == R"({"op":"sub","ch":"room:1","id":5})");
  CHECK(c->publish("room:1", "{}", 6) == R"({"op":"pub","ch":"room:1","data":{},"id":6})");
  CHECK(c->direct("bob", "1", 7) == R"({"op":"send","to":"bob","data":1,"id":7})");
  auto h = http_publish_for(protocol::wsnode, "c", "[1]");
  CHECK(h.path == "/api/publish");
  CHECK(h.body == R"({"ch":"c","data":[1]})");
}

TEST_CASE("Socket.IO v4 adapter: engine.io handshake, pings, events, acks") {
  auto c = make_codec(protocol::socketio);
  std::vector<std::string> out;
  CHECK(c->path("u1", "") == "/socket.io/?EIO=4&transport=websocket&user=u1");
  auto open =
      c->on_frame(R"(0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000})", out);
  CHECK(open.kind == event::none);
  CHECK(out == std::vector<std::string>{"40"}); // connect to "/"
  out.clear();
  CHECK(c->on_frame(R"(40{"sid":"xyz"})", out).kind == event::ready);
  CHECK(c->on_frame("2", out).kind == event::none);
  CHECK(out == std::vector<std::string>{"3"}); // pong
  auto ack = c->on_frame("4312[]", out);
  CHECK(ack.kind == event::ack);
  CHECK(ack.id == 12);
  CHECK(c->on_frame(R"(42["msg",{"i":1}])", out).kind == event::message);
  CHECK(c->on_frame(R"(44{"message":"nope"})", out).kind == event::error);
  CHECK(c->subscribe("room:1", 3) == R"(423["sub","room:1"])");
  CHECK(c->publish("room:1", R"({"a":1})", 4) == R"(424["pub","room:1",{"a":1}])");
  CHECK(c->direct("bob", "1", 5) == R"(425["dm","bob",1])");
}

TEST_CASE("Nchan adapter: subscribe by URL, publish over HTTP") {
  auto c = make_codec(protocol::nchan);
  std::vector<std::string> out;
  CHECK(c->path("u", "room.1") == "/sub/room.1");
  CHECK(c->ready_on_open());
  CHECK(c->on_frame("anything", out).kind == event::message);
  CHECK(c->subscribe("x", 1).empty());
  CHECK(c->publish("x", "p", 1).empty());
  auto h = http_publish_for(protocol::nchan, "room.1", "body");
  CHECK(h.path == "/pub/room.1");
  CHECK(h.body == "body");
  CHECK(c->user_channel("bob") == "user.bob");
  CHECK(protocol_from("socket.io") == protocol::socketio);
  CHECK_FALSE(protocol_from("mqtt"));
}
