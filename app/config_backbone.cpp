// [backbone], [mesh] and [nats]: which backbone links the nodes, and its
// keys (docs/operations.md "Cluster" and "Running on NATS").
#include "app/config_reader.hpp"

#include <algorithm>
#include <fstream>

namespace wsnode::config_detail {

namespace {

// "nats://HOST:PORT" or "tls://HOST:PORT", as nats.c takes them; no
// credentials in the URL (they go in user/password/token/creds_file, so
// that a URL can be logged).
void check_nats_url(std::string_view s) {
  constexpr std::string_view key = "nats.servers";
  auto scheme_end = s.find("://");
  std::string_view scheme = scheme_end == std::string_view::npos ? "" : s.substr(0, scheme_end);
  if (scheme != "nats" && scheme != "tls")
    throw config_error(std::string{key}, "expected nats://HOST:PORT or tls://HOST:PORT, got \"" +
                                             std::string{s} + "\"");
  auto rest = s.substr(scheme_end + 3);
  if (rest.find('@') != std::string_view::npos)
    throw config_error(std::string{key}, "put credentials in nats.user/password/token/creds_file, "
                                         "not in the URL \"" +
                                             std::string{s} + "\"");
  std::string host;
  std::uint16_t port = 0;
  split_host_port(rest, std::string{key}, host, port);
  if (port == 0)
    throw config_error(std::string{key}, "port must be 1-65535 in \"" + std::string{s} + "\"");
}

// A subject token: NATS splits subjects at '.', and '*', '>' are wildcards.
bool valid_prefix(std::string_view p) {
  return !p.empty() && p.size() <= 32 && std::all_of(p.begin(), p.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

} // namespace

void read_backbone(reader& r, config& c) {
  r.get("backbone", "kind", c.backbone_kind);
  r.get("mesh", "bind", c.mesh_bind);
  r.strings("mesh", "peers", c.mesh_peers);
  r.millis("mesh", "heartbeat_ms", c.heartbeat_interval);
  r.millis("mesh", "subscribe_timeout_ms", c.subscribe_timeout);
  r.millis("mesh", "unsubscribe_linger_ms", c.unsubscribe_linger);
  r.get("mesh", "hwm", c.mesh_hwm);
  r.strings("nats", "servers", c.nats_servers);
  r.get("nats", "user", c.nats_user);
  r.get("nats", "password", c.nats_password);
  r.get("nats", "token", c.nats_token);
  r.get("nats", "creds_file", c.nats_creds_file);
  r.get("nats", "replicas", c.nats_replicas);
  r.millis("nats", "timeout_ms", c.nats_timeout);
  r.get("nats", "subject_prefix", c.nats_prefix);
}

void check_backbone(config& c, const std::filesystem::path& base_dir) {
  require(c.backbone_kind == "mesh" || c.backbone_kind == "nats", "backbone.kind",
          "must be \"mesh\" or \"nats\" (got \"" + c.backbone_kind + "\")");
  require(c.heartbeat_interval.count() >= 10, "mesh.heartbeat_ms", "must be at least 10");
  require(c.subscribe_timeout.count() >= 1, "mesh.subscribe_timeout_ms", "must be positive");
  require(c.mesh_hwm >= 100 && c.mesh_hwm <= 10000000, "mesh.hwm", "must be 100-10000000");
  if (c.on_nats()) {
    // one backbone at a time: mesh sockets beside NATS would split the cluster
    require(c.mesh_bind.empty(), "mesh.bind", "must be empty with backbone.kind = \"nats\"");
    require(c.mesh_peers.empty(), "mesh.peers", "must be empty with backbone.kind = \"nats\"");
    require(!c.nats_servers.empty(), "nats.servers", "needs at least one nats://HOST:PORT");
    for (const auto& s : c.nats_servers)
      check_nats_url(s);
    require(c.nats_replicas >= 1 && c.nats_replicas <= 5, "nats.replicas", "must be 1-5");
    require(c.nats_timeout.count() >= 100, "nats.timeout_ms", "must be at least 100");
    require(c.nats_password.empty() || !c.nats_user.empty(), "nats.password", "set nats.user too");
    require(c.nats_user.empty() || !c.nats_password.empty(), "nats.user", "set nats.password too");
    int ways =
        int{!c.nats_user.empty()} + int{!c.nats_token.empty()} + int{!c.nats_creds_file.empty()};
    require(ways <= 1, "nats.token",
            "use one of nats.user/password, nats.token and nats.creds_file");
    require(valid_prefix(c.nats_prefix), "nats.subject_prefix",
            "must be 1-32 chars of [A-Za-z0-9_-]");
    if (!c.nats_creds_file.empty()) {
      std::filesystem::path p{c.nats_creds_file};
      c.nats_creds_file = (p.is_absolute() ? p : base_dir / p).lexically_normal().string();
      std::ifstream in{c.nats_creds_file};
      require(static_cast<bool>(in), "nats.creds_file", "cannot read " + c.nats_creds_file);
    }
    return;
  }
  if (!c.mesh_bind.empty())
    check_tcp_endpoint(c.mesh_bind, "mesh.bind");
  require(!c.mesh_bind.empty() || c.mesh_peers.empty(), "mesh.bind",
          "a node with mesh peers needs its own mesh.bind");
  for (const auto& p : c.mesh_peers)
    check_tcp_endpoint(p, "mesh.peers");
}

} // namespace wsnode::config_detail
