#include "transport/mesh_codec.hpp"

#include <doctest/doctest.h>

using namespace wsnode;
using namespace wsnode::transport::mesh;

TEST_CASE("mesh topics are delimited: room:4 never prefixes room:42") {
  auto t4 = encode_topic(topic_kind::channel, "room:4");
  auto t42 = encode_topic(topic_kind::channel, "room:42");
  CHECK(t4 == "c:room:4|");
  CHECK(encode_topic(topic_kind::user, "alice") == "u:alice|");
  CHECK_FALSE(t42.starts_with(t4)); // what a ZeroMQ SUB prefix match does
  CHECK_FALSE(encode_topic(topic_kind::user, "room:4").starts_with(t4));
  auto d = decode_topic(t4);
  REQUIRE(d);
  CHECK(d->kind == topic_kind::channel);
  CHECK(d->name == "room:4");
  CHECK(decode_topic("u:bob@x.y|")->kind == topic_kind::user);
  CHECK_FALSE(decode_topic(heartbeat_topic));
  CHECK_FALSE(decode_topic(confirm_topic));
  CHECK_FALSE(decode_topic("c:room"));
  CHECK_FALSE(decode_topic("x:room|"));
  CHECK_FALSE(decode_topic("c:|"));
  CHECK_FALSE(decode_topic("c:a|b|"));
  CHECK(std::string_view{heartbeat_topic}.starts_with(control_prefix));
}

TEST_CASE("mesh envelope round trip and rejection of malformed bytes") {
  envelope e{"node-7", 0x0123456789abcdefULL, 42};
  auto bytes = encode_envelope(e);
  auto back = decode_envelope(bytes);
  REQUIRE(back);
  CHECK(back->origin == "node-7");
  CHECK(back->epoch == 0x0123456789abcdefULL);
  CHECK(back->seq == 42);
  CHECK_FALSE(decode_envelope(""));
  CHECK_FALSE(decode_envelope(bytes.substr(0, bytes.size() - 1)));
  CHECK_FALSE(decode_envelope(bytes + "x"));
  auto other_version = bytes;
  other_version[0] = 9;
  CHECK_FALSE(decode_envelope(other_version));
  auto no_origin = encode_envelope({"", 1, 1});
  CHECK_FALSE(decode_envelope(no_origin));
}

TEST_CASE("gap counting is per (origin, topic)") {
  seq_tracker t;
  // n1 publishes to a and b with separate counters; we see a only
  CHECK(t.observe("n1", 7, "c:a|", 1).missed == 0); // baseline
  CHECK(t.observe("n1", 7, "c:a|", 2).missed == 0);
  CHECK(t.observe("n2", 9, "c:a|", 50).missed == 0); // another origin: own baseline
  auto v = t.observe("n1", 7, "c:a|", 5);
  CHECK(v.deliver);
  CHECK(v.missed == 2);                               // 3 and 4 were lost
  CHECK(t.observe("n1", 7, "c:b|", 100).missed == 0); // first of b: baseline, not a gap
  auto dup = t.observe("n1", 7, "c:a|", 5);
  CHECK_FALSE(dup.deliver);
  CHECK_FALSE(t.observe("n1", 7, "c:a|", 4).deliver); // older
  // n1 restarted: a new epoch starts its counters over
  auto restart = t.observe("n1", 8, "c:a|", 1);
  CHECK(restart.deliver);
  CHECK(restart.missed == 0);
  // after we unsubscribe, the next message is a baseline again
  t.forget_topic("c:a|");
  CHECK(t.observe("n1", 8, "c:a|", 40).missed == 0);
  CHECK(t.observe("n2", 9, "c:a|", 51).missed == 0);
  CHECK(t.size() == 2); // n1/c:a (b forgotten with epoch 8), n2/c:a
  // the origin started the topic over (nobody wanted it there for long):
  // seq 1 is a new baseline, not an old message to drop
  auto over = t.observe("n2", 9, "c:a|", 1);
  CHECK(over.deliver);
  CHECK(over.missed == 0);
  CHECK(t.observe("n2", 9, "c:a|", 2).deliver);
}
