// wsbench: how much load one wsnode (or a peer) holds, at what latency and
// memory, and so how many nodes an audience needs.
#include "bench/report.hpp"
#include "bench/scenarios.hpp"

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

namespace {

using namespace wsnode::bench;

// "ws://host:port" or "http://host:port" (a path is ignored) -> endpoint
bool parse_url(const std::string& url, endpoint& ep) {
  auto s = url;
  auto scheme = s.find("://");
  if (scheme != std::string::npos)
    s = s.substr(scheme + 3);
  s = s.substr(0, s.find('/'));
  auto colon = s.rfind(':');
  if (colon == std::string::npos)
    return false;
  ep.host = s.substr(0, colon);
  unsigned port = 0;
  auto ps = s.substr(colon + 1);
  auto [end, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc{} || end != ps.data() + ps.size() || port == 0 || port > 65535)
    return false;
  ep.port = static_cast<std::uint16_t>(port);
  return true;
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// ---------------------------------------------------------------- plan

struct plan_input {
  double users = 100000;
  double rate = 0.1;     // messages each user receives per second... published per user
  double fanout = 100;   // recipients per message
  double cores = 2;      // per node
  double memory_gib = 4; // per node, for connections
  double headroom = 0.5; // fraction kept free
  std::string idle_json, fanout_json;
};

double number(const boost::json::object& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() ? 0 : it->value().to_number<double>();
}

int run_plan(const plan_input& p) {
  auto load = [](const std::string& path) {
    std::ifstream in{path};
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    auto nl = text.find('\n'); // JSON lines: the first result
    return boost::json::parse(text.substr(0, nl)).as_object();
  };
  if (p.idle_json.empty() || p.fanout_json.empty()) {
    fmt::print(stderr, "wsbench plan needs --idle RESULT.json and --fanout RESULT.json\n");
    return 2;
  }
  auto idle = load(p.idle_json);
  auto fan = load(p.fanout_json);
  double bytes_per_conn = number(idle, "rss_per_connection");
  double deliveries_per_core = number(fan, "delivered_per_server_cpu_s");
  if (bytes_per_conn <= 0 || deliveries_per_core <= 0) {
    fmt::print(stderr, "wsbench plan: the results lack rss_per_connection or "
                       "delivered_per_server_cpu_s (pass --server-pid when measuring)\n");
    return 2;
  }
  double usable = 1 - p.headroom;
  double deliveries = p.users * p.rate * p.fanout;
  double nodes_cpu = deliveries / (deliveries_per_core * p.cores * usable);
  double nodes_mem = p.users * bytes_per_conn / (p.memory_gib * 1073741824.0 * usable);
  double nodes_fd = p.users / (19000.0 * usable);
  double nodes = std::max({1.0, std::ceil(nodes_cpu), std::ceil(nodes_mem), std::ceil(nodes_fd)});
  fmt::print("capacity plan: {:.0f} users, {} msgs/s each, fan-out {} = {:.0f} deliveries/s\n",
             p.users, p.rate, p.fanout, deliveries);
  fmt::print("  measured: {:.2f} KiB per connection, {:.0f} deliveries per server CPU second\n",
             bytes_per_conn / 1024, deliveries_per_core);
  fmt::print("  node: {} cores, {} GiB for connections, {:.0f}% headroom\n", p.cores, p.memory_gib,
             p.headroom * 100);
  fmt::print("  nodes by CPU {:.2f}, by memory {:.2f}, by open files (19k/node) {:.2f}\n",
             nodes_cpu, nodes_mem, nodes_fd);
  fmt::print("  => {:.0f} node(s); at that size each runs at {:.0f}% CPU\n", nodes,
             100 * deliveries / (deliveries_per_core * p.cores * nodes));
  fmt::print(
      "{{\"nodes\":{:.0f},\"nodes_cpu\":{:.3f},\"nodes_memory\":{:.3f},\"nodes_fd\":{:.3f}}}\n",
      nodes, nodes_cpu, nodes_mem, nodes_fd);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsbench: load generator and capacity planner for wsnode (and peers)"};
  app.require_subcommand(1);
  scenario_options o;
  std::string target = "ws://127.0.0.1:8080";
  std::string http;
  std::string proto = "wsnode";
  std::string json_out;
  std::string bound = "ack";
  bool quiet = false;
  o.eng.threads = std::max(1u, std::thread::hardware_concurrency());

  auto common = [&](CLI::App* sc) {
    sc->add_option("--target", target, "WebSocket target: a node or the nginx front")
        ->capture_default_str();
    sc->add_option("--http", http, "HTTP base for publishing (default: the target)");
    sc->add_option("--protocol", proto, "wsnode | socketio | nchan")->capture_default_str();
    sc->add_option("--threads", o.eng.threads, "client threads")->capture_default_str();
    sc->add_option("--sources", o.eng.sources, "source addresses 127.0.0.1..N")
        ->capture_default_str();
    sc->add_option("--concurrency", o.eng.concurrency, "connection attempts in flight")
        ->capture_default_str();
    sc->add_option("--server-pid", o.server_pids, "server process(es) to measure (CPU, RSS)");
    sc->add_option("--size", o.size, "payload bytes")->capture_default_str();
    sc->add_option("--rate", o.rate, "publishes/s in total (0: window-limited)")
        ->capture_default_str();
    sc->add_option("--window", o.window, "publishes in flight (fanout: see --bound)")
        ->capture_default_str();
    sc->add_flag("--http-publish", o.http_publish, "wsnode: publish via /api/publish");
    sc->add_option("--json", json_out, "append the JSON result to FILE");
    sc->add_flag("--quiet", quiet, "no table, no progress");
  };
  auto* idle = app.add_subcommand("idle", "open N subscribed connections and hold them");
  common(idle);
  idle->add_option("-n,--connections", o.connections)->capture_default_str();
  idle->add_option("--hold", o.hold_s, "seconds to hold them")->capture_default_str();
  idle->add_option("--user-prefix", o.user_prefix,
                   "user ids PREFIX0, PREFIX1, ... (distinct prefixes for several processes)")
      ->capture_default_str();
  idle->add_option("--expect", o.expect,
                   "stop holding once this many messages arrived (a broadcast test)");
  idle->add_option("--channel", o.channel,
                   "subscribe all to this channel (default: spread over 100 channels)");
  auto* fanout = app.add_subcommand("fanout", "S subscribers of one channel, one publisher");
  common(fanout);
  fanout->add_option("-n,--subscribers", o.connections)->capture_default_str();
  fanout->add_option("-m,--messages", o.messages)->capture_default_str();
  fanout->add_option("--bound", bound,
                     "what --window counts: ack (publishes not yet acknowledged) or delivery "
                     "(messages not yet delivered to every subscriber)")
      ->check(CLI::IsMember({"ack", "delivery"}))
      ->capture_default_str();
  auto* danmaku = app.add_subcommand("danmaku", "K rooms, Zipf audiences, many publishers");
  common(danmaku);
  danmaku->add_option("-n,--viewers", o.connections)->capture_default_str();
  danmaku->add_option("--rooms", o.rooms)->capture_default_str();
  danmaku->add_option("--zipf", o.zipf_s)->capture_default_str();
  danmaku->add_option("--publishers", o.publishers)->capture_default_str();
  danmaku->add_option("--duration", o.duration_s)->capture_default_str();
  auto* chat = app.add_subcommand("chat", "pairs of users exchanging DMs");
  common(chat);
  chat->add_option("--pairs", o.pairs)->capture_default_str();
  chat->add_option("--duration", o.duration_s)->capture_default_str();
  chat->add_flag("--split-nodes", o.split_nodes,
                 "put the two users of a pair on different nodes (wsnode hello.node)");
  plan_input pi;
  auto* plan = app.add_subcommand("plan", "how many nodes: from idle and fanout results");
  plan->add_option("--users", pi.users)->capture_default_str();
  plan->add_option("--rate", pi.rate, "messages each user publishes per second")
      ->capture_default_str();
  plan->add_option("--fanout", pi.fanout, "recipients per message")->capture_default_str();
  plan->add_option("--cores", pi.cores, "cores per node")->capture_default_str();
  plan->add_option("--memory-gib", pi.memory_gib, "memory per node for connections")
      ->capture_default_str();
  plan->add_option("--headroom", pi.headroom, "fraction of CPU/memory kept free")
      ->capture_default_str();
  plan->add_option("--idle", pi.idle_json, "idle result (JSON)");
  plan->add_option("--fanout-result", pi.fanout_json, "fanout result (JSON)");
  CLI11_PARSE(app, argc, argv);

  if (plan->parsed())
    return run_plan(pi);
  auto p = protocol_from(proto);
  if (!p) {
    fmt::print(stderr, "wsbench: unknown protocol {}\n", proto);
    return 2;
  }
  o.eng.proto = *p;
  if (!parse_url(target, o.eng.ws) || !parse_url(http.empty() ? target : http, o.eng.http)) {
    fmt::print(stderr, "wsbench: bad --target/--http (expected ws://IP:PORT)\n");
    return 2;
  }
  o.target = target;
  o.progress = !quiet && isatty(2);
  raise_fd_limit();
  result r;
  if (idle->parsed())
    r = run_idle(o);
  else if (fanout->parsed()) {
    o.delivery_bound = bound == "delivery";
    r = run_fanout(o);
  }
  else if (danmaku->parsed())
    r = run_danmaku(o);
  else
    r = run_chat(o);
  if (!quiet)
    fmt::print("{}", to_table(r));
  if (!json_out.empty()) {
    std::ofstream out{json_out, std::ios::app};
    out << to_json(r) << "\n";
  }
  bool ok = r.connect_failures == 0 && r.lost == 0 && r.duplicates == 0;
  return ok ? 0 : 3;
}
