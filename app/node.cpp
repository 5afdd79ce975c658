#include "app/node.hpp"

#include "actors/api_calls.hpp"
#include "actors/broker.hpp"
#include "actors/cluster_desk.hpp"
#include "actors/history/term_store.hpp"
#include "actors/messages.hpp"
#include "actors/session.hpp"
#include "actors/shard_router.hpp"
#include "app/node_parts.hpp"
#include "app/reload.hpp"
#include "core/live.hpp"
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
#include <functional>
#include <future>
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
      desk_(std::move(desk)), bans_(std::move(bans)), hooks_(std::move(hooks)),
      events_(std::move(events)) {
    publish_sessions(make_session_config(cfg, namespaces_, std::move(verifier)));
  }

  /// New settings for every session: new ones start with them, open ones
  /// move to them at their next message (session_env::current).
  void publish_sessions(session_config sc) {
    auto env = std::make_shared<session_env>(std::move(sc), m_, brokers_, hooks_, events_);
    env->current = &sessions_;
    sessions_.set(std::move(env));
  }

  std::unique_ptr<session_handler> open_session(const session_identity& who, sink_ptr sink,
                                                std::uint64_t& sid) override {
    auto s = make_session(sys_, sessions_.get(), who, std::move(sink));
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
  std::shared_ptr<hook_port> hooks_;
  std::shared_ptr<event_port> events_;
  live<session_env> sessions_; // outlives every session (see run_node's end)
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
};

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

int run_node(const config& cfg, const std::filesystem::path& file, std::string_view version) {
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
  auto max_conns = opts.access.max_connections;
  transport::server srv{io, std::move(opts), node, m};
  srv.start(); // throws when the port is taken
  guard.disarm();

  // SIGHUP: reload (on the first io thread, one at a time). The shards
  // take the new namespaces (policy keys only: see app/config_reload.hpp)
  // by message, the sessions at their next handler.
  auto publish = [&node, brokers](session_config sc, bool namespaces_changed) {
    if (namespaces_changed) // else the shards keep their windows and table
      for (const auto& shard : brokers->all())
        caf::anon_send(shard, atoms::reload::value, sc.namespaces);
    node.publish_sessions(std::move(sc));
  };
  reloader reload{cfg, file, fd_limit, verifier, srv, publish, m};
  net::signal_set hangups{io.context(0), SIGHUP};
  std::function<void()> on_hangup = [&] {
    hangups.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec)
        return;
      spdlog::info("signal SIGHUP: reloading {}", file.string());
      reload.reload();
      on_hangup();
    });
  };
  on_hangup();

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
