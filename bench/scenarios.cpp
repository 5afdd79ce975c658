#include "bench/scenarios.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

namespace wsnode::bench {

namespace {

using clock = std::chrono::steady_clock;

double since(clock::time_point t0) {
  return std::chrono::duration<double>(clock::now() - t0).count();
}

result base(const scenario_options& o, std::string_view scenario) {
  result r;
  r.scenario = std::string{scenario};
  r.protocol = std::string{to_string(o.eng.proto)};
  r.target = o.target;
  r.payload = o.size;
  r.offered_rate = o.rate;
  return r;
}

void progress_line(const scenario_options& o, const std::string& text) {
  if (o.progress)
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
}

void progress_done(const scenario_options& o) {
  if (o.progress)
    std::fprintf(stderr, "\r\033[K");
}

// Opens `specs`, recording connect time and failures in `r`.
std::size_t open_all(engine& e, const std::vector<client_spec>& specs, const scenario_options& o,
                     result& r, const char* what) {
  auto t0 = clock::now();
  auto first = e.open(specs, [&](std::size_t n) {
    progress_line(o, fmt::format("[{}] connecting {}/{}", what, n, specs.size()));
  });
  r.connect_seconds += since(t0);
  r.connections = e.ready();
  r.connect_failures = e.failed();
  return first;
}

// Publishes with `next(k)` -> (from, channel, payload) until `count` are out
// or `seconds` passed, paced at o.rate (total) and o.window in flight.
// Returns the time of the first publish.
template <class Next>
clock::time_point pump(engine& e, const scenario_options& o, std::size_t count, double seconds,
                       result& r, Next next) {
  auto t0 = clock::now();
  auto last_progress = t0;
  std::size_t k = 0;
  bool http = o.http_publish || o.eng.proto == protocol::nchan;
  auto last_move = t0;
  // in flight: publishes not acknowledged, or (delivery-bounded) messages
  // not yet delivered to every subscriber
  auto busy = [&] { return o.delivery_bound ? e.undelivered() : e.in_flight(); };
  auto last_in_flight = busy();
  while (k < count && (seconds <= 0 || since(t0) < seconds)) {
    double elapsed = since(t0);
    if (busy() != last_in_flight || busy() < static_cast<std::int64_t>(o.window)) {
      last_in_flight = busy();
      last_move = clock::now();
    } else if (since(last_move) > o.drain_s) {
      r.errors += static_cast<std::uint64_t>(busy());
      progress_line(o, o.delivery_bound ? "messages are not delivered any more; stopping\n"
                                        : "publishes are not acknowledged any more; stopping\n");
      break; // the server (or the publisher's connection) stopped answering
    }
    auto due = o.rate > 0
                   ? std::min<std::size_t>(count, static_cast<std::size_t>(o.rate * elapsed) + 1)
                   : count;
    while (k < due && busy() < static_cast<std::int64_t>(o.window)) {
      next(k, http);
      ++k;
    }
    if (clock::now() - last_progress > std::chrono::seconds(1)) {
      last_progress = clock::now();
      progress_line(o, fmt::format("[{}] published {} delivered {} in flight {}", r.scenario, k,
                                   e.delivered(), busy()));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  r.published = k;
  return t0;
}

// Waits until `expected` deliveries arrived, or nothing arrived for
// o.drain_s; returns the time the last delivery was seen.
clock::time_point await_deliveries(engine& e, const scenario_options& o, std::uint64_t expected,
                                   result& r) {
  auto last = clock::now();
  auto shown = last;
  auto seen = e.delivered();
  while (seen < expected) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto now_seen = e.delivered();
    if (now_seen != seen) {
      seen = now_seen;
      last = clock::now();
    } else if (since(last) > o.drain_s) {
      break;
    }
    if (clock::now() - shown > std::chrono::milliseconds(500)) {
      shown = clock::now();
      progress_line(o, fmt::format("[{}] delivered {}/{}", r.scenario, seen, expected));
    }
  }
  return last;
}

void finish(engine& e, result& r, std::uint64_t expected, clock::time_point first,
            clock::time_point last, const proc_sample& srv0, double bench0,
            const scenario_options& o) {
  auto srv1 = sample_processes(o.server_pids);
  r.bench_cpu_s = self_cpu_seconds() - bench0;
  r.server_cpu_s = srv1.cpu_s - srv0.cpu_s;
  r.server_rss_after = srv1.rss_bytes;
  r.seconds = std::chrono::duration<double>(last - first).count();
  auto stats = e.finish();
  r.expected = expected;
  r.delivered = stats.delivered;
  r.duplicates = stats.duplicates;
  r.errors = stats.errors;
  r.lost = expected > stats.delivered ? expected - stats.delivered : 0;
  r.latency = stats.latency;
  r.client_reads = stats.reads;
  r.client_read_bytes = stats.read_bytes;
  progress_done(o);
}

// The measured part shared by fanout, danmaku and chat: publish with
// `next` (see pump), wait for `expected()` deliveries, fill `r`.
template <class Next, class Expected>
void measure(engine& e, const scenario_options& o, result& r, std::size_t count, double seconds,
             Next next, Expected expected) {
  auto srv0 = sample_processes(o.server_pids);
  double bench0 = self_cpu_seconds();
  auto first = pump(e, o, count, seconds, r, next);
  auto want = expected();
  auto last = await_deliveries(e, o, want, r);
  finish(e, r, want, first, last, srv0, bench0, o);
}

} // namespace

result run_idle(const scenario_options& o) {
  auto r = base(o, "idle");
  r.server_rss_before = sample_processes(o.server_pids).rss_bytes;
  engine e{o.eng};
  r.rss_curve.emplace_back(0, r.server_rss_before);
  std::size_t steps = std::min<std::size_t>(10, std::max<std::size_t>(1, o.connections));
  std::size_t done = 0;
  for (std::size_t s = 1; s <= steps; ++s) {
    std::size_t upto = o.connections * s / steps;
    std::vector<client_spec> specs;
    for (; done < upto; ++done)
      specs.push_back({fmt::format("{}{}", o.user_prefix, done),
                       {o.channel.empty() ? fmt::format("idle.{}", done % 100) : o.channel},
                       {}});
    open_all(e, specs, o, r, "idle");
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // let the server settle
    r.rss_curve.emplace_back(e.ready(), sample_processes(o.server_pids).rss_bytes);
  }
  auto t0 = clock::now();
  while (since(t0) < o.hold_s && (o.expect == 0 || e.delivered() < o.expect)) {
    progress_line(o, fmt::format("[idle] holding {} connections", e.ready()));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto after = sample_processes(o.server_pids);
  r.server_rss_after = after.rss_bytes;
  r.server_cpu_s = after.cpu_s;
  auto stats = e.finish();
  r.errors = stats.errors;
  // messages published by someone else while holding (a broadcast test)
  r.delivered = stats.delivered;
  r.duplicates = stats.duplicates;
  r.latency = stats.latency;
  r.bench_cpu_s = self_cpu_seconds();
  progress_done(o);
  return r;
}

result run_fanout(const scenario_options& o) {
  auto r = base(o, "fanout");
  r.server_rss_before = sample_processes(o.server_pids).rss_bytes;
  engine e{o.eng};
  const std::string ch = "bench.fanout";
  std::vector<client_spec> subs;
  for (std::size_t i = 0; i < o.connections; ++i)
    subs.push_back({fmt::format("sub{}", i), {ch}, {}});
  open_all(e, subs, o, r, "fanout");
  std::size_t subscribers = e.ready();
  auto pub = open_all(e, {{"publisher", {}, {}}}, o, r, "fanout");
  r.connections = subscribers;
  r.bound = o.delivery_bound ? "delivery" : "ack";
  if (o.delivery_bound)
    e.track_deliveries(static_cast<std::uint32_t>(subscribers));
  measure(
      e, o, r, o.messages, 0,
      [&](std::size_t k, bool http) {
        e.expect_message(k + 1);
        e.publish(pub, ch, make_payload(k + 1, now_ns(), 1, o.size), http);
      },
      [&] { return static_cast<std::uint64_t>(r.published) * subscribers; });
  return r;
}

result run_danmaku(const scenario_options& o) {
  auto r = base(o, "danmaku");
  r.server_rss_before = sample_processes(o.server_pids).rss_bytes;
  engine e{o.eng};
  zipf popularity{o.rooms, o.zipf_s};
  // audiences: Zipf shares of the subscribers, at least one per room
  std::vector<std::size_t> audience(o.rooms, 1);
  std::size_t assigned = o.rooms;
  for (std::size_t k = 0; k < o.rooms && assigned < o.connections; ++k) {
    auto extra = static_cast<std::size_t>(
        std::floor(popularity.probability(k) * double(o.connections - o.rooms)));
    extra = std::min(extra, o.connections - assigned);
    audience[k] += extra;
    assigned += extra;
  }
  audience[0] += o.connections > assigned ? o.connections - assigned : 0;
  std::vector<client_spec> subs;
  for (std::size_t k = 0; k < o.rooms; ++k)
    for (std::size_t j = 0; j < audience[k]; ++j)
      subs.push_back({fmt::format("viewer{}", subs.size()), {fmt::format("live.room{}", k)}, {}});
  open_all(e, subs, o, r, "danmaku");
  std::vector<client_spec> pubs;
  for (std::size_t j = 0; j < o.publishers; ++j)
    pubs.push_back({fmt::format("commenter{}", j), {}, {}});
  auto first_pub = open_all(e, pubs, o, r, "danmaku");
  r.connections = e.ready();
  std::mt19937_64 rng{42};
  std::uniform_real_distribution<double> u{0, 1};
  // sequence numbers per (publisher, room): each viewer is in one room
  std::vector<std::vector<std::uint64_t>> seq(o.publishers, std::vector<std::uint64_t>(o.rooms));
  std::uint64_t expected = 0;
  measure(
      e, o, r, static_cast<std::size_t>(-1) / 2, o.duration_s,
      [&](std::size_t k, bool http) {
        auto room = popularity.sample(u(rng));
        auto j = k % o.publishers;
        auto payload =
            make_payload(++seq[j][room], now_ns(), static_cast<std::uint32_t>(j + 1), o.size);
        e.publish(first_pub + j, fmt::format("live.room{}", room), std::move(payload), http);
        expected += audience[room];
      },
      [&] { return expected; });
  return r;
}

result run_chat(const scenario_options& o) {
  auto r = base(o, "chat");
  r.server_rss_before = sample_processes(o.server_pids).rss_bytes;
  engine e{o.eng};
  auto probe = make_codec(o.eng.proto);
  // user channels are needed where the protocol has no direct messages
  bool by_channel = o.eng.proto == protocol::nchan;
  auto channels_of = [&](const std::string& u) {
    return by_channel ? std::vector<std::string>{probe->user_channel(u)}
                      : std::vector<std::string>{};
  };
  std::vector<client_spec> as;
  for (std::size_t i = 0; i < o.pairs; ++i) {
    auto u = fmt::format("a{}", i);
    as.push_back({u, channels_of(u), {}});
  }
  auto first_a = open_all(e, as, o, r, "chat");
  std::vector<client_spec> bs;
  for (std::size_t i = 0; i < o.pairs; ++i) {
    auto u = fmt::format("b{}", i);
    bs.push_back({u, channels_of(u), o.split_nodes ? e.node_of(first_a + i) : std::string{}});
  }
  auto first_b = open_all(e, bs, o, r, "chat");
  r.connections = e.ready();
  std::size_t users = 2 * o.pairs;
  std::vector<std::uint64_t> seq(users);
  measure(
      e, o, r, static_cast<std::size_t>(-1) / 2, o.duration_s,
      [&](std::size_t k, bool) {
        auto who = k % users;
        auto pair = who / 2;
        bool from_a = who % 2 == 0;
        auto from = from_a ? first_a + pair : first_b + pair;
        auto to = fmt::format("{}{}", from_a ? "b" : "a", pair);
        e.direct(from, to,
                 make_payload(++seq[who], now_ns(), static_cast<std::uint32_t>(who + 1), o.size));
      },
      [&] { return static_cast<std::uint64_t>(r.published); });
  return r;
}

} // namespace wsnode::bench
