// `wsnode --check-config`: the effective configuration as TOML, every key
// the reader knows (app/config.cpp, config_hooks.cpp, config_backbone.cpp)
// with its value or default, secrets masked, paths absolute.
#include "app/config.hpp"

#include <toml++/toml.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode {

namespace {

using actors::namespace_options;
using actors::publish_rule;
using actors::subscribe_rule;

// Writes sections and keys in the order given (a toml::table sorts them);
// toml++ renders each value, so strings are quoted and escaped and floats
// read back to the same double.
class toml_writer {
public:
  toml_writer(std::ostream& out, bool mask) : out_(out), mask_(mask) {}

  void section(std::string_view name) { out_ << "\n[" << name << "]\n"; }
  void array_entry(std::string_view name) { out_ << "\n[[" << name << "]]\n"; }

  void text(std::string_view key, const std::string& v) { put(key, toml::value<std::string>{v}); }
  /// A password, secret, token or key: "***" when set, "" when not.
  /// A file or folder: absolute, so that the printed config means the same
  /// wherever it is saved.
  void path(std::string_view key, const std::string& v) {
    std::error_code ec;
    auto abs = v.empty() ? std::filesystem::path{} : std::filesystem::absolute(v, ec);
    text(key, ec ? v : abs.lexically_normal().string());
  }
  void secret(std::string_view key, const std::string& v) {
    text(key, v.empty() || !mask_ ? v : std::string{"***"});
  }
  void count(std::string_view key, std::size_t v) {
    put(key, toml::value<std::int64_t>{static_cast<std::int64_t>(v)});
  }
  void millis(std::string_view key, std::chrono::milliseconds v) {
    put(key, toml::value<std::int64_t>{static_cast<std::int64_t>(v.count())});
  }
  void micros(std::string_view key, std::chrono::microseconds v) {
    put(key, toml::value<std::int64_t>{static_cast<std::int64_t>(v.count())});
  }
  void number(std::string_view key, double v) { put(key, toml::value<double>{v}); }
  void flag(std::string_view key, bool v) { put(key, toml::value<bool>{v}); }
  void strings(std::string_view key, const std::vector<std::string>& v) {
    toml::array a;
    for (const auto& s : v)
      a.push_back(s);
    put(key, a);
  }

private:
  // Basic "..." strings only (no '...' or multi-line forms), UTF-8 as is;
  // long lists break over lines, one element a line.
  static constexpr toml::format_flags flags =
      toml::format_flags::allow_unicode_strings | toml::format_flags::indent_array_elements;

  void put(std::string_view key, const toml::node& v) {
    out_ << key << " = " << toml::toml_formatter{v, flags} << '\n';
  }

  std::ostream& out_;
  bool mask_;
};

const char* to_text(subscribe_rule r) {
  switch (r) {
  case subscribe_rule::anyone:
    return "anyone";
  case subscribe_rule::token:
    return "token";
  }
  return "anyone";
}

const char* to_text(publish_rule r) {
  switch (r) {
  case publish_rule::anyone:
    return "anyone";
  case publish_rule::subscribers:
    return "subscribers";
  case publish_rule::server:
    return "server";
  }
  return "anyone";
}

void print_namespace(toml_writer& w, const namespace_options& ns) {
  w.array_entry("namespace");
  w.text("name", ns.name);
  w.count("history_size", ns.history_size);
  w.millis("history_ttl_ms", ns.history_ttl);
  w.count("recovery_max", ns.recovery_max);
  w.text("subscribe", to_text(ns.subscribe));
  w.text("publish", to_text(ns.publish));
  if (ns.presence_count)
    w.text("presence", "count");
  else
    w.flag("presence", ns.presence);
  w.flag("join_leave", ns.join_leave);
  w.flag("lossy", ns.lossy);
  w.count("max_subscribers", ns.max_subscribers);
  w.flag("events", ns.events);
  w.flag("subscribe_hook", ns.subscribe_hook);
  w.flag("publish_hook", ns.publish_hook);
  w.millis("merge_ms", ns.merge_ms);
  w.count("merge_max", ns.merge_max);
}

} // namespace

std::string print_effective(const config& c, secrets s) {
  std::ostringstream out;
  out << "# wsnode's effective configuration: every key, defaults filled in, relative paths\n"
         "# resolved; passwords, secrets, tokens and keys print as \"***\".\n";
  toml_writer w{out, s == secrets::masked};

  w.section("node");
  w.text("id", c.node_id);
  w.millis("drain_timeout_ms", c.drain_timeout);

  w.section("http");
  w.text("listen", c.listen);
  w.path("static_dir", c.static_dir);
  w.count("max_header_bytes", c.max_header_bytes);
  w.count("max_body_bytes", c.max_body_bytes);
  w.millis("idle_timeout_ms", c.http_idle_timeout);
  w.count("io_threads", c.io_threads);

  w.section("auth");
  w.secret("secret", c.auth_secret);
  w.path("public_key_file", c.auth_public_key_file);
  w.text("issuer", c.auth_issuer);
  w.text("audience", c.auth_audience);
  w.millis("expiry_grace_ms", c.expiry_grace);
  w.millis("key_grace_ms", c.key_grace);

  w.section("api");
  w.secret("key", c.api_key);
  w.millis("timeout_ms", c.api_timeout);

  w.section("ws");
  w.count("max_message_bytes", c.max_message_bytes);
  w.strings("allowed_origins", c.allowed_origins);
  w.flag("compression", c.compression);
  w.millis("ping_interval_ms", c.ping_interval);
  w.millis("close_timeout_ms", c.close_timeout);
  w.count("max_queue_bytes", c.max_queue_bytes);
  w.count("max_connections", c.max_connections);
  w.micros("coalesce_us", c.coalesce);
  w.count("flush_helper_min", c.flush_helper_min);

  w.section("limits");
  w.count("max_data_bytes", c.max_data_bytes);
  w.number("messages_per_second", c.messages_per_second);
  w.number("burst", c.burst);
  w.number("max_errors", c.max_errors);
  w.millis("error_window_ms", c.error_window);
  w.count("max_subscriptions", c.max_subscriptions);

  w.section("channels");
  w.strings("readonly_namespaces", c.readonly_namespaces);

  w.section("history");
  w.millis("idempotency_window_ms", c.idempotency_window);
  w.millis("timeout_ms", c.history_timeout);
  w.path("state_dir", c.history_state_dir);

  w.section("hooks");
  w.text("connect_url", c.hook_connect_url);
  w.text("refresh_url", c.hook_refresh_url);
  w.text("subscribe_url", c.hook_subscribe_url);
  w.text("publish_url", c.hook_publish_url);
  w.text("rpc_url", c.hook_rpc_url);
  w.text("events_url", c.hook_events_url);
  w.strings("events", c.hook_events);
  w.count("events_max_queue", c.hook_events_max_queue);
  w.millis("timeout_ms", c.hook_timeout);
  w.count("max_in_flight", c.hook_max_in_flight);
  w.strings("forward_headers", c.hook_forward_headers);
  w.secret("secret", c.hook_secret);
  w.count("max_answer_bytes", c.hook_max_answer_bytes);

  w.section("backbone");
  w.text("kind", c.backbone_kind);

  w.section("mesh");
  w.text("bind", c.mesh_bind);
  w.strings("peers", c.mesh_peers);
  w.millis("heartbeat_ms", c.heartbeat_interval);
  w.millis("subscribe_timeout_ms", c.subscribe_timeout);
  w.millis("unsubscribe_linger_ms", c.unsubscribe_linger);
  w.count("hwm", c.mesh_hwm);

  w.section("nats");
  w.strings("servers", c.nats_servers);
  w.text("user", c.nats_user);
  w.secret("password", c.nats_password);
  w.secret("token", c.nats_token);
  w.path("creds_file", c.nats_creds_file);
  w.count("replicas", c.nats_replicas);
  w.millis("timeout_ms", c.nats_timeout);
  w.text("subject_prefix", c.nats_prefix);

  w.section("runtime");
  w.count("actor_threads", c.actor_threads);
  w.count("broker_shards", c.broker_shards);
  w.text("scheduler", c.scheduler);

  w.section("log");
  w.text("level", c.log_level);
  w.text("format", c.log_format);

  // readonly_namespaces are among them already, as publish = "server"
  for (const auto& ns : c.namespaces)
    print_namespace(w, ns);
  return out.str();
}

} // namespace wsnode
