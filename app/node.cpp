#include "app/node.hpp"

#include "actors/api_calls.hpp"
#include "actors/broker.hpp"
#include "actors/cluster_desk.hpp"
#include "actors/history/term_store.hpp"
#include "actors/messages.hpp"
#include "actors/session.hpp"
#include "actors/shard_router.hpp"
#include "protocol/codec.hpp"
#include "transport/backbone_factory.hpp"
#include "transport/event_sender.hpp"
#include "transport/hook_client.hpp"
#include "transport/io_pool.hpp"
#include "transport/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <caf/all.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <sys/resource.h>
#include <thread>

namespace wsnode {

using namespace actors; // the node wires the actors it spawns

namespace net = boost::asio;

namespace {

/// The node as transport sees it: sessions, API calls, metrics, readiness.
class node_impl final : public node_port {
public:
  node_impl(const config& cfg, std::string_view version, metrics& m, caf::actor_system& sys,
            std::shared_ptr<const broker_set> brokers, std::shared_ptr<backbone> bb,
            std::shared_ptr<const namespace_table> namespaces,
            std::shared_ptr<const protocol::token_verifier> verifier,
            std::shared_ptr<hook_port> hooks, std::shared_ptr<event_port> events, caf::actor desk,
            std::shared_ptr<const ban_list> bans)
    : cfg_(cfg), version_(version), m_(m), sys_(sys), brokers_(std::move(brokers)),
      bb_(std::move(bb)), namespaces_(std::move(namespaces)), api_(brokers_, namespaces_, m),
      desk_(std::move(desk)), bans_(std::move(bans)) {
    session_config sc;
    sc.node_id = cfg.node_id;
    sc.limits.max_data_bytes = cfg.max_data_bytes;
    sc.messages_per_second = cfg.messages_per_second;
    sc.burst = cfg.burst;
    sc.max_errors = cfg.max_errors;
    sc.error_window = cfg.error_window;
    sc.max_subscriptions = cfg.max_subscriptions;
    sc.namespaces = namespaces_;
    sc.verifier = std::move(verifier);
    sc.expiry_grace = cfg.expiry_grace;
    session_env_ = std::make_shared<const session_env>(std::move(sc), m_, brokers_,
                                                       std::move(hooks), std::move(events));
  }

  std::unique_ptr<session_handler> open_session(const session_identity& who, sink_ptr sink,
                                                std::uint64_t& sid) override {
    auto s = make_session(sys_, session_env_, who, std::move(sink));
    sid = s.sid;
    return std::move(s.handler);
  }

  void api_publish(std::string ch, std::string data, std::string key, api_done done) override {
    api_.publish(std::move(ch), std::move(data), std::move(key), std::move(done));
  }

  void api_send(std::string user, std::string data, api_done done) override {
    api_.send(std::move(user), std::move(data), std::move(done));
  }

  void api_history(std::string ch, bool has_since, std::string ep, std::uint64_t off,
                   long long limit, api_done done) override {
    api_.history(std::move(ch), has_since, std::move(ep), off, limit, std::move(done));
  }

  void api_presence(std::string ch, long long limit, std::string cursor, api_done done) override {
    api_.presence(std::move(ch), limit, std::move(cursor), std::move(done));
  }

  void api_cluster(cluster_api call, std::string body, api_done done) override {
    caf::anon_send(desk_, atoms::api_call::value, static_cast<std::uint8_t>(call), std::move(body),
                   api_completion{std::move(done)});
  }

  void api_broadcast(protocol::broadcast_body b, api_done done) override {
    api_.broadcast(std::move(b), std::move(done));
  }

  bool banned(std::string_view user) override { return bans_->banned(user); }

  std::string metrics_text() override { return render_prometheus(m_, cfg_.node_id, version_); }

  bool readiness(std::string& body) override {
    bool clustered = bb_->clustered();
    bool mesh_up = bb_->up();
    bool ready = ready_.load() && !draining_.load() && mesh_up;
    std::string_view mesh_state = !clustered ? "off" : (mesh_up ? "up" : "down");
    body = fmt::format(R"({{"ready":{},"node":"{}","draining":{},"connections":{},)"
                       R"("mesh":"{}","peers":{}}})"
                       "\n",
                       ready, cfg_.node_id, draining_.load(), m_.connections.load(), mesh_state,
                       bb_->peers_json());
    return ready;
  }

  void set_ready(bool r) { ready_ = r; }
  void set_draining() { draining_ = true; }

private:
  const config& cfg_;
  std::string version_;
  metrics& m_;
  caf::actor_system& sys_;
  std::shared_ptr<const broker_set> brokers_;
  std::shared_ptr<backbone> bb_;
  std::shared_ptr<const namespace_table> namespaces_;
  api_calls api_;
  caf::actor desk_;
  std::shared_ptr<const ban_list> bans_;
  std::shared_ptr<const session_env> session_env_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
};

// Raises the soft open-file limit to the hard one; returns the soft limit.
rlim_t raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0)
      rl = want;
  }
  return rl.rlim_cur;
}

// The connection limit: `configured`, or when 0, the open-file limit minus
// a reserve for listeners, the mesh, HTTP clients and files.
std::size_t max_connections_for(std::size_t configured, rlim_t fd_limit) {
  if (configured > 0)
    return configured;
  constexpr rlim_t reserve = 128;
  return fd_limit > 2 * reserve ? static_cast<std::size_t>(fd_limit - reserve) : 64;
}

// How clients are identified, for the start-up log.
std::string auth_mode(const config& cfg) {
  if (cfg.connect_hook())
    return "connect-hook(" + cfg.hook_connect_url + ")";
  if (cfg.dev_mode())
    return "dev (?user=, loopback only)";
  std::string m = "jwt";
  if (!cfg.auth_secret.empty())
    m += " hs256";
  if (!cfg.auth_public_keys.empty())
    m += " public-keys(" + cfg.auth_public_key_file + ")";
  return m;
}

// The node's token keys; null in dev mode.
std::shared_ptr<const protocol::token_verifier> make_verifier(const config& cfg) {
  if (cfg.dev_mode())
    return nullptr;
  return std::make_shared<const protocol::token_verifier>(protocol::token_keys{
      cfg.auth_secret, cfg.auth_public_keys, cfg.auth_issuer, cfg.auth_audience});
}

transport::server_options
make_server_options(const config& cfg, rlim_t fd_limit,
                    std::shared_ptr<const protocol::token_verifier> verifier) {
  transport::server_options o;
  o.node_id = cfg.node_id;
  o.host = cfg.host;
  o.port = cfg.port;
  o.static_dir = cfg.static_dir;
  o.max_header_bytes = cfg.max_header_bytes;
  o.max_body_bytes = cfg.max_body_bytes;
  o.http_idle_timeout = cfg.http_idle_timeout;
  o.verifier = verifier;
  o.api_key = cfg.api_key;
  o.api_timeout = cfg.api_timeout;
  o.allowed_origins = cfg.allowed_origins;
  o.max_message_bytes = cfg.max_message_bytes;
  o.compression = cfg.compression;
  o.ping_interval = cfg.ping_interval;
  o.close_timeout = cfg.close_timeout;
  o.max_queue_bytes = cfg.max_queue_bytes;
  o.max_connections = max_connections_for(cfg.max_connections, fd_limit);
  o.coalesce = cfg.coalesce;
  o.flush_helper_min = cfg.flush_helper_min;
  o.limits.max_data_bytes = cfg.max_data_bytes;
  return o;
}

// The application's hooks, when any is configured.
std::shared_ptr<transport::hook_client> make_hooks(const config& cfg, metrics& m) {
  transport::hook_options h;
  auto url = [&](hook_kind k) -> std::string& { return h.urls[static_cast<std::size_t>(k)]; };
  url(hook_kind::connect) = cfg.hook_connect_url;
  url(hook_kind::refresh) = cfg.hook_refresh_url;
  url(hook_kind::subscribe) = cfg.hook_subscribe_url;
  url(hook_kind::publish) = cfg.hook_publish_url;
  url(hook_kind::rpc) = cfg.hook_rpc_url;
  if (std::all_of(h.urls.begin(), h.urls.end(), [](const std::string& u) { return u.empty(); }))
    return nullptr;
  h.timeout = cfg.hook_timeout;
  h.max_in_flight = cfg.hook_max_in_flight;
  h.secret = cfg.hook_secret;
  h.max_answer_bytes = cfg.hook_max_answer_bytes;
  return std::make_shared<transport::hook_client>(std::move(h), m.hooks);
}

// Webhooks, when [hooks] events_url is set.
std::shared_ptr<transport::event_sender> make_events(const config& cfg, metrics& m) {
  if (cfg.hook_events_url.empty())
    return nullptr;
  transport::event_options e;
  e.url = cfg.hook_events_url;
  e.node_id = cfg.node_id;
  e.secret = cfg.hook_secret;
  e.timeout = cfg.hook_timeout;
  e.max_queue = cfg.hook_events_max_queue;
  for (int k = 0; k < event_kind_count; ++k) {
    auto name = to_string(static_cast<event_kind>(k));
    e.kinds[static_cast<std::size_t>(k)] =
        cfg.hook_events.empty() ||
        std::find(cfg.hook_events.begin(), cfg.hook_events.end(), name) != cfg.hook_events.end();
  }
  return std::make_shared<transport::event_sender>(std::move(e), m.hooks);
}

transport::backbone_options make_backbone_options(const config& cfg) {
  transport::backbone_options bo;
  auto& mo = bo.mesh;
  mo.node_id = cfg.node_id;
  mo.bind = cfg.mesh_bind;
  mo.peers = cfg.mesh_peers;
  mo.heartbeat = cfg.heartbeat_interval;
  mo.subscribe_timeout = cfg.subscribe_timeout;
  mo.hwm = static_cast<int>(cfg.mesh_hwm);
  mo.queue_limit = cfg.mesh_hwm;
  mo.max_inflight = cfg.mesh_hwm;
  if (cfg.on_nats()) {
    bo.kind = transport::backbone_options::kind::nats;
    auto& no = bo.nats;
    no.node_id = cfg.node_id;
    no.servers = cfg.nats_servers;
    no.user = cfg.nats_user;
    no.password = cfg.nats_password;
    no.token = cfg.nats_token;
    no.creds_file = cfg.nats_creds_file;
    no.prefix = cfg.nats_prefix;
    no.heartbeat = cfg.heartbeat_interval;
    no.subscribe_timeout = cfg.subscribe_timeout;
    no.max_inflight = cfg.mesh_hwm;
    transport::js_history_options ho;
    for (const auto& ns : cfg.namespaces)
      if (ns.history_size > 0)
        ho.namespaces.emplace(ns.name, ns.history_size);
    if (!ho.namespaces.empty()) {
      ho.prefix = cfg.nats_prefix;
      ho.node_id = cfg.node_id;
      ho.replicas = cfg.nats_replicas;
      ho.timeout = cfg.nats_timeout;
      ho.window = cfg.idempotency_window;
      no.history = std::move(ho);
    }
  }
  return bo;
}

// This node and its mesh peers (a peer equal to our own bind is ourselves).
std::size_t cluster_size(const config& cfg) {
  if (cfg.mesh_bind.empty())
    return 1;
  std::size_t n = 1;
  for (const auto& p : cfg.mesh_peers)
    if (p != cfg.mesh_bind)
      ++n;
  return n;
}

template <class Atom>
void tell_all(const broker_set& brokers, Atom a) {
  for (const auto& shard : brokers.all())
    caf::anon_send(shard, a);
}

// Stops the broker and the mesh when start-up fails half-way, so that the
// actor system can shut down.
class startup_guard {
public:
  startup_guard(const broker_set& brokers, const caf::actor& desk, backbone& bb)
    : brokers_(brokers), desk_(desk), bb_(bb) {}
  ~startup_guard() {
    if (armed_) {
      tell_all(brokers_, atoms::shutdown::value);
      caf::anon_send(desk_, atoms::shutdown::value);
      bb_.stop();
    }
  }
  void disarm() { armed_ = false; }

private:
  const broker_set& brokers_;
  const caf::actor& desk_;
  backbone& bb_;
  bool armed_ = true;
};

} // namespace

int run_node(const config& cfg, std::string_view version) {
  auto fd_limit = raise_fd_limit();
  metrics m;                             // outlives everything
  transport::io_pool io{cfg.io_threads}; // outlives the actor system
  caf::actor_system_config caf_cfg;
  caf_cfg.set("scheduler.max-threads", cfg.actor_threads);
  // sharing: idle workers sleep on a condition variable. stealing polls
  // (spins, then sleeps 50 us at a time), which cost a third of a node's CPU
  // when several nodes shared two cores (docs/capacity-notes.md).
  caf_cfg.set("scheduler.policy",
              cfg.scheduler == "stealing" ? caf::atom("stealing") : caf::atom("sharing"));
  caf::actor_system sys{caf_cfg}; // destroyed first
  auto bb = transport::make_backbone(make_backbone_options(cfg), m);
  auto namespaces = std::make_shared<const namespace_table>(cfg.namespaces);
  broker_options bo;
  bo.unsubscribe_linger = cfg.unsubscribe_linger;
  bo.namespaces = namespaces;
  bo.history.node_id = cfg.node_id;
  bo.max_frame_bytes = cfg.max_message_bytes;
  bo.history.cluster_size = cluster_size(cfg);
  bo.history.idempotency_window = cfg.idempotency_window;
  bo.history.timeout = cfg.history_timeout;
  bo.history.fresh_window = 3 * cfg.heartbeat_interval;
  if (!cfg.history_state_dir.empty() && namespaces->any_history()) {
    bo.history.state_file = cfg.history_state_dir + "/history-terms";
    bo.history.term_floor = term_store::floor_of_dir(cfg.history_state_dir); // throws
  }
  bo.engine = transport::history_engine_of(bb); // JetStream on NATS; null on the mesh
  auto events = make_events(cfg, m); // released once the actors are done: sends what they left
  // the shards tell the desk of local occupancy; the desk is spawned after
  // them (it asks them) and before any session opens
  auto desk = std::make_shared<caf::actor>();
  bo.occupancy = desk_occupancy_fn(desk, events.get(), namespaces);
  if (events && events->wants(event_kind::undelivered))
    bo.undelivered = [desk](const std::string& user, const frame_ptr& frame) {
      caf::anon_send(*desk, atoms::dm::value, user, frame);
    };
  bo.events = events;
  auto brokers =
      std::make_shared<const broker_set>(spawn_brokers(sys, cfg.broker_shards, m, bb, bo));
  auto bans = std::make_shared<ban_list>();
  desk_options dopts;
  dopts.node_id = cfg.node_id;
  dopts.version = std::string{version};
  dopts.timeout = cfg.api_timeout / 2;
  dopts.bans = bans;
  dopts.events = events;
  *desk = spawn_desk(sys, m, bb, brokers, std::move(dopts));
  startup_guard guard{*brokers, *desk, *bb};
  bb->start(route_to_shards(brokers, *desk)); // throws when the mesh port is taken
  auto verifier = make_verifier(cfg);
  // Held here past the session actors (which call it) and the listener;
  // released before the actor system, which its last answers are sent into.
  auto hooks = make_hooks(cfg, m);
  node_impl node{cfg,        version,  m,     sys,    brokers, bb,
                 namespaces, verifier, hooks, events, *desk,   bans};
  auto opts = make_server_options(cfg, fd_limit, verifier);
  opts.hooks = hooks;
  opts.forward_headers = cfg.hook_forward_headers;
  auto max_conns = opts.max_connections;
  transport::server srv{io, std::move(opts), node, m};
  srv.start(); // throws when the port is taken
  guard.disarm();

  std::promise<int> stop_signal;
  net::signal_set signals{io.context(0), SIGINT, SIGTERM};
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (!ec)
      stop_signal.set_value(sig);
  });
  io.run();

  node.set_ready(true);
  spdlog::info("wsnode {} node={} listening on http://{}:{} (WebSocket: /ws) auth={} "
               "io_threads={} actor_threads={} broker_shards={} max_connections={} mesh={}",
               version, cfg.node_id, cfg.host, srv.port(), auth_mode(cfg), cfg.io_threads,
               cfg.actor_threads, cfg.broker_shards, max_conns,
               cfg.on_nats() ? "nats" : (cfg.mesh_bind.empty() ? "off" : cfg.mesh_bind));

  // ---- drain: unready, refuse upgrades, close sessions with 1001, wait
  int sig = stop_signal.get_future().get();
  auto t0 = std::chrono::steady_clock::now();
  spdlog::info("signal {}: draining {} connections (bound {} ms)", sig, m.connections.load(),
               cfg.drain_timeout.count());
  node.set_draining(); // /readyz: 503
  srv.set_draining();  // upgrades: 503; the listener stays up for health checks
  tell_all(*brokers, atoms::drain::value);
  auto deadline = t0 + cfg.drain_timeout;
  while (m.connections.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto left = m.connections.load();
  if (left > 0)
    spdlog::warn("drain bound reached with {} connections left; exiting without them", left);

  // ---- stop: actors first, then the mesh, then io. With connections left,
  // their session actors are still alive (each lives as long as its
  // connection) and would hold the actor system forever: leave without
  // running destructors.
  srv.stop_accepting();
  auto stopped = [&] {
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    spdlog::info("stopped after {} ms; {} connections were left", ms, left);
    spdlog::default_logger()->flush();
  };
  if (left > 0) {
    bb->stop();
    stopped();
    std::_Exit(0);
  }
  tell_all(*brokers, atoms::shutdown::value);
  caf::anon_send(*desk, atoms::shutdown::value);
  sys.await_all_actors_done();
  bb->stop();
  io.stop();
  io.join();
  stopped();
  return 0;
}

} // namespace wsnode
