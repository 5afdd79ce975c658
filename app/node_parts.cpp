// The pieces of a node built from its configuration (app/node.cpp wires
// them; app/reload.cpp builds the reloadable ones again on SIGHUP).
#include "app/node_parts.hpp"

#include "transport/event_sender.hpp"
#include "transport/hook_client.hpp"

#include <algorithm>
#include <sys/resource.h>

namespace wsnode {

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

std::size_t max_connections_for(std::size_t configured, rlim_t fd_limit) {
  if (configured > 0)
    return configured;
  constexpr rlim_t reserve = 128;
  return fd_limit > 2 * reserve ? static_cast<std::size_t>(fd_limit - reserve) : 64;
}

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

std::shared_ptr<const protocol::token_verifier>
make_verifier(const config& cfg, const protocol::token_verifier* previous) {
  if (cfg.dev_mode())
    return nullptr;
  protocol::token_keys keys{cfg.auth_secret, cfg.auth_public_keys, cfg.auth_issuer,
                            cfg.auth_audience};
  if (previous == nullptr || cfg.key_grace.count() == 0)
    return std::make_shared<const protocol::token_verifier>(std::move(keys));
  return std::make_shared<const protocol::token_verifier>(
      std::move(keys), *previous, std::chrono::steady_clock::now() + cfg.key_grace);
}

transport::access_policy make_access(const config& cfg, rlim_t fd_limit,
                                     std::shared_ptr<const protocol::token_verifier> verifier) {
  transport::access_policy a;
  a.verifier = std::move(verifier);
  a.api_key = cfg.api_key;
  a.allowed_origins = cfg.allowed_origins;
  a.max_connections = max_connections_for(cfg.max_connections, fd_limit);
  a.limits.max_data_bytes = cfg.max_data_bytes;
  return a;
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
  o.api_timeout = cfg.api_timeout;
  o.max_message_bytes = cfg.max_message_bytes;
  o.compression = cfg.compression;
  o.ping_interval = cfg.ping_interval;
  o.close_timeout = cfg.close_timeout;
  o.max_queue_bytes = cfg.max_queue_bytes;
  o.coalesce = cfg.coalesce;
  o.flush_helper_min = cfg.flush_helper_min;
  o.access = make_access(cfg, fd_limit, std::move(verifier));
  return o;
}

actors::session_config
make_session_config(const config& cfg, std::shared_ptr<const actors::namespace_table> namespaces,
                    std::shared_ptr<const protocol::token_verifier> verifier) {
  actors::session_config sc;
  sc.node_id = cfg.node_id;
  sc.limits.max_data_bytes = cfg.max_data_bytes;
  sc.messages_per_second = cfg.messages_per_second;
  sc.burst = cfg.burst;
  sc.max_errors = cfg.max_errors;
  sc.error_window = cfg.error_window;
  sc.max_subscriptions = cfg.max_subscriptions;
  sc.namespaces = std::move(namespaces);
  sc.verifier = std::move(verifier);
  sc.expiry_grace = cfg.expiry_grace;
  return sc;
}

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

std::size_t cluster_size(const config& cfg) {
  if (cfg.mesh_bind.empty())
    return 1;
  std::size_t n = 1;
  for (const auto& p : cfg.mesh_peers)
    if (p != cfg.mesh_bind)
      ++n;
  return n;
}

} // namespace wsnode
