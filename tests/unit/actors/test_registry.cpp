#include "actors/rate_limiter.hpp"
#include "actors/topic_registry.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace wsnode;
using namespace wsnode::actors;

TEST_CASE("topic_registry: first/last interest, two-way cleanup") {
  topic_registry<int> r;
  CHECK(r.add("room:1", 1, 10));       // first subscriber
  CHECK_FALSE(r.add("room:1", 2, 20)); // not first
  CHECK_FALSE(r.add("room:1", 2, 21)); // idempotent
  CHECK(r.add("room:12", 1, 10));
  REQUIRE(r.find("room:1") != nullptr);
  CHECK(r.find("room:1")->size() == 2);
  CHECK(r.find("room:1")->at(2) == 21);
  CHECK(r.find("room") == nullptr);
  CHECK(r.count_of(1) == 2);
  CHECK(r.count_of(2) == 1);

  CHECK_FALSE(r.remove("room:1", 1)); // one left
  CHECK_FALSE(r.remove("room:1", 1)); // not there any more
  CHECK(r.remove("room:1", 2));       // last left
  CHECK(r.find("room:1") == nullptr);
  CHECK(r.topic_count() == 1);

  std::set<std::string> emptied;
  r.add("a", 3, 0);
  r.add("b", 3, 0);
  r.add("b", 4, 0);
  r.remove_all(3, [&](std::string_view t) { emptied.emplace(t); });
  CHECK(emptied == std::set<std::string>{"a"});
  CHECK(r.count_of(3) == 0);
  CHECK(r.find("b")->size() == 1);
  r.remove_all(1, [&](std::string_view t) { emptied.emplace(t); });
  r.remove_all(4, [&](std::string_view t) { emptied.emplace(t); });
  CHECK(r.topic_count() == 0);
  CHECK(r.id_count() == 0);
  r.remove_all(99, [](std::string_view) { FAIL("nothing to remove"); });
}

TEST_CASE("token_bucket: burst, refill, disabled") {
  using clock = token_bucket::clock;
  auto t0 = clock::now();
  const bucket_limits l{10, 3};
  token_bucket b{l, t0};
  CHECK(b.take(l, t0));
  CHECK(b.take(l, t0));
  CHECK(b.take(l, t0));
  CHECK_FALSE(b.take(l, t0)); // burst used up
  CHECK_FALSE(b.take(l, t0 + std::chrono::milliseconds(50)));
  CHECK(b.take(l, t0 + std::chrono::milliseconds(150))); // 1.5 tokens refilled
  CHECK(b.available(l, t0 + std::chrono::seconds(100)) == doctest::Approx(3.0)); // capped
  const bucket_limits off{0, 1};
  token_bucket unlimited{off, t0};
  for (int i = 0; i < 1000; ++i)
    CHECK(unlimited.take(off, t0));
  CHECK(sizeof(token_bucket) == 16); // two per connection
}
