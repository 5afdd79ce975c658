#include "app/config.hpp"

#include "app/config_reader.hpp"
#include "protocol/auth_token.hpp"
#include "protocol/names.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

namespace wsnode {

using actors::namespace_options;
using actors::publish_rule;
using actors::subscribe_rule;
using config_detail::reader;
using config_detail::require;
using config_detail::valid_node_id;

namespace {

// One [[namespace]] table; `where` names it in messages ("namespace[2]").
namespace_options read_namespace(const toml::table& t, const std::string& where) {
  namespace_options ns;
  static const std::set<std::string, std::less<>> known{
      "name",    "history_size",   "history_ttl_ms", "recovery_max", "subscribe",
      "publish", "presence",       "join_leave",     "lossy",        "max_subscribers",
      "events",  "subscribe_hook", "publish_hook",   "merge_ms",     "merge_max"};
  for (const auto& [key, value] : t)
    if (!known.contains(key.str()))
      throw config_error(where + "." + std::string{key.str()}, "unknown key");
  auto key = [&](std::string_view k) { return where + "." + std::string{k}; };
  auto count = [&](std::string_view k, std::size_t& out) {
    if (const auto* n = t.get(k)) {
      if (!n->is_integer())
        throw config_error(key(k), "expected an integer");
      auto v = n->as_integer()->get();
      if (v < 0)
        throw config_error(key(k), "must not be negative");
      out = static_cast<std::size_t>(v);
    }
  };
  auto flag = [&](std::string_view k, bool& out) {
    if (const auto* n = t.get(k)) {
      if (!n->is_boolean())
        throw config_error(key(k), "expected true or false");
      out = n->as_boolean()->get();
    }
  };
  auto text = [&](std::string_view k, std::string& out) {
    if (const auto* n = t.get(k)) {
      if (!n->is_string())
        throw config_error(key(k), "expected a string");
      out = n->as_string()->get();
    }
  };
  if (t.get("name") == nullptr)
    throw config_error(key("name"),
                       "every [[namespace]] needs a name (\"\" for channels without ':')");
  text("name", ns.name);
  if (ns.name.find(':') != std::string::npos ||
      (!ns.name.empty() && !protocol::valid_channel(ns.name)))
    throw config_error(key("name"), "a namespace is the part of a channel name before ':' (got \"" +
                                        ns.name + "\")");
  count("history_size", ns.history_size);
  std::size_t ttl = static_cast<std::size_t>(ns.history_ttl.count());
  count("history_ttl_ms", ttl);
  ns.history_ttl = std::chrono::milliseconds{static_cast<std::int64_t>(ttl)};
  count("recovery_max", ns.recovery_max);
  if (ns.history_size > 100000)
    throw config_error(key("history_size"), "must be 0-100000");
  if (ns.has_history() && ns.history_ttl.count() < 1000)
    throw config_error(key("history_ttl_ms"), "must be at least 1000");
  std::string subscribe = "anyone";
  std::string publish = "anyone";
  text("subscribe", subscribe);
  text("publish", publish);
  if (subscribe == "anyone")
    ns.subscribe = subscribe_rule::anyone;
  else if (subscribe == "token")
    ns.subscribe = subscribe_rule::token;
  else
    throw config_error(key("subscribe"), "must be \"anyone\" or \"token\"");
  if (publish == "anyone")
    ns.publish = publish_rule::anyone;
  else if (publish == "subscribers")
    ns.publish = publish_rule::subscribers;
  else if (publish == "server")
    ns.publish = publish_rule::server;
  else
    throw config_error(key("publish"), "must be \"anyone\", \"subscribers\" or \"server\"");
  if (const auto* n = t.get("presence")) {
    if (n->is_boolean())
      ns.presence = n->as_boolean()->get();
    else if (n->is_string() && n->as_string()->get() == "count")
      ns.presence = ns.presence_count = true;
    else
      throw config_error(key("presence"), "expected true, false or \"count\"");
  }
  flag("join_leave", ns.join_leave);
  flag("lossy", ns.lossy);
  flag("subscribe_hook", ns.subscribe_hook);
  flag("publish_hook", ns.publish_hook);
  count("max_subscribers", ns.max_subscribers);
  if (ns.join_leave && (!ns.presence || ns.presence_count))
    throw config_error(key("join_leave"), "join/leave events need presence = true (member lists)");
  flag("events", ns.events);
  std::size_t merge_ms = 0;
  count("merge_ms", merge_ms);
  if (merge_ms > 10000)
    throw config_error(key("merge_ms"), "must be 0-10000 (0: no merged frames)");
  ns.merge_ms = std::chrono::milliseconds{static_cast<std::int64_t>(merge_ms)};
  count("merge_max", ns.merge_max);
  if (ns.merge_max < 1 || ns.merge_max > 1000)
    throw config_error(key("merge_max"), "must be 1-1000");
  return ns;
}

void read_namespaces(const toml::table& root, config& c) {
  const toml::node* n = root.get("namespace");
  if (n == nullptr)
    return;
  const toml::array* arr = n->as_array();
  if (arr == nullptr)
    throw config_error("namespace", "expected [[namespace]] tables");
  std::size_t i = 0;
  for (const auto& e : *arr) {
    std::string where = "namespace[" + std::to_string(i++) + "]";
    const toml::table* t = e.as_table();
    if (t == nullptr)
      throw config_error(where, "expected a table");
    auto ns = read_namespace(*t, where);
    for (const auto& other : c.namespaces)
      if (other.name == ns.name)
        throw config_error(where + ".name", "namespace \"" + ns.name + "\" is defined twice");
    c.namespaces.push_back(std::move(ns));
  }
}

} // namespace

void split_host_port(std::string_view s, const std::string& key, std::string& host,
                     std::uint16_t& port) {
  auto bad = [&](const std::string& why) {
    return config_error(key, why + " in \"" + std::string{s} + "\" (expected HOST:PORT)");
  };
  std::string_view h;
  std::string_view p;
  if (s.starts_with("[")) {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      throw bad("bad IPv6 address");
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos)
      throw bad("missing port");
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
    if (h.find(':') != std::string_view::npos)
      throw bad("IPv6 addresses need brackets");
  }
  if (h.empty())
    throw bad("missing host");
  unsigned v = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || v > 65535)
    throw bad("bad port");
  host = std::string{h};
  port = static_cast<std::uint16_t>(v);
}

bool is_loopback(std::string_view host) {
  if (host == "localhost" || host == "::1")
    return true;
  if (!host.starts_with("127."))
    return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.')
      ++dots;
    else if (c < '0' || c > '9')
      return false;
  }
  return dots == 3;
}

namespace {

// Reads [auth] public_key_file (relative to the config's folder) and checks
// that it holds RSA or P-256 EC public keys; refuses the config otherwise.
void read_public_keys(config& c, const std::filesystem::path& base_dir) {
  std::filesystem::path p{c.auth_public_key_file};
  if (!p.is_absolute())
    p = base_dir / p;
  c.auth_public_key_file = p.lexically_normal().string();
  std::ifstream in{p, std::ios::binary};
  std::ostringstream text;
  if (in)
    text << in.rdbuf();
  if (!in || in.bad())
    throw config_error("auth.public_key_file", "cannot read " + c.auth_public_key_file);
  c.auth_public_keys = text.str();
  try {
    protocol::token_verifier check{{c.auth_secret, c.auth_public_keys, {}, {}}};
    if (check.rsa_keys() + check.ec_keys() == 0)
      throw std::invalid_argument("no public key in the file");
  } catch (const std::invalid_argument& e) {
    throw config_error("auth.public_key_file", c.auth_public_key_file + ": " + e.what());
  }
}

} // namespace

config parse_config(std::string_view text, const std::filesystem::path& base_dir) {
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "TOML syntax error at line " << e.source().begin.line << ", column "
        << e.source().begin.column << ": " << e.description();
    throw config_error("", msg.str());
  }
  config c;
  reader r{root};
  std::string static_dir = "web";

  r.get("node", "id", c.node_id);
  r.millis("node", "drain_timeout_ms", c.drain_timeout);
  r.get("http", "listen", c.listen);
  r.get("http", "static_dir", static_dir);
  r.get("http", "max_header_bytes", c.max_header_bytes);
  r.get("http", "max_body_bytes", c.max_body_bytes);
  r.millis("http", "idle_timeout_ms", c.http_idle_timeout);
  r.get("http", "io_threads", c.io_threads);
  r.get("auth", "secret", c.auth_secret);
  r.get("auth", "public_key_file", c.auth_public_key_file);
  r.get("auth", "issuer", c.auth_issuer);
  r.get("auth", "audience", c.auth_audience);
  r.millis("auth", "expiry_grace_ms", c.expiry_grace);
  r.millis("auth", "key_grace_ms", c.key_grace);
  r.get("api", "key", c.api_key);
  r.millis("api", "timeout_ms", c.api_timeout);
  r.get("ws", "max_message_bytes", c.max_message_bytes);
  r.strings("ws", "allowed_origins", c.allowed_origins);
  r.get("ws", "compression", c.compression);
  r.millis("ws", "ping_interval_ms", c.ping_interval);
  r.millis("ws", "close_timeout_ms", c.close_timeout);
  r.get("ws", "max_queue_bytes", c.max_queue_bytes);
  r.get("ws", "max_connections", c.max_connections);
  std::int64_t coalesce_us = c.coalesce.count();
  r.get("ws", "coalesce_us", coalesce_us);
  c.coalesce = std::chrono::microseconds{coalesce_us};
  r.get("ws", "flush_helper_min", c.flush_helper_min);
  r.get("limits", "max_data_bytes", c.max_data_bytes);
  r.get("limits", "messages_per_second", c.messages_per_second);
  r.get("limits", "burst", c.burst);
  r.get("limits", "max_errors", c.max_errors);
  r.millis("limits", "error_window_ms", c.error_window);
  r.get("limits", "max_subscriptions", c.max_subscriptions);
  r.strings("channels", "readonly_namespaces", c.readonly_namespaces);
  r.millis("history", "idempotency_window_ms", c.idempotency_window);
  r.millis("history", "timeout_ms", c.history_timeout);
  r.get("history", "state_dir", c.history_state_dir);
  config_detail::read_backbone(r, c);
  config_detail::read_hooks(r, c);
  r.get("runtime", "actor_threads", c.actor_threads);
  r.get("runtime", "broker_shards", c.broker_shards);
  r.get("runtime", "scheduler", c.scheduler);
  r.get("log", "level", c.log_level);
  r.get("log", "format", c.log_format);
  r.check_unknown();
  read_namespaces(root, c);

  require(valid_node_id(c.node_id), "node.id", "must be 1-64 chars of [A-Za-z0-9_.-]");
  require(c.drain_timeout.count() > 0, "node.drain_timeout_ms", "must be positive");
  require(c.key_grace.count() >= 0 && c.key_grace <= std::chrono::hours{24 * 7},
          "auth.key_grace_ms", "must be 0-604800000 (up to a week)");
  split_host_port(c.listen, "http.listen", c.host, c.port);
  if (c.host == "localhost")
    c.host = "127.0.0.1";
  require(c.max_header_bytes >= 1024, "http.max_header_bytes", "must be at least 1024");
  require(c.max_body_bytes >= 64, "http.max_body_bytes", "must be at least 64");
  require(c.http_idle_timeout.count() > 0, "http.idle_timeout_ms", "must be positive");
  require(c.io_threads >= 1 && c.io_threads <= 64, "http.io_threads", "must be 1-64");
  require(c.max_message_bytes >= 128, "ws.max_message_bytes", "must be at least 128");
  require(c.ping_interval.count() >= 100, "ws.ping_interval_ms", "must be at least 100");
  require(c.close_timeout.count() >= 100, "ws.close_timeout_ms", "must be at least 100");
  require(c.max_queue_bytes >= 1024, "ws.max_queue_bytes", "must be at least 1024");
  require(c.coalesce.count() <= 100000, "ws.coalesce_us", "must be 0-100000");
  require(c.flush_helper_min == 0 || c.flush_helper_min >= 2, "ws.flush_helper_min",
          "must be 0 (no helper) or at least 2");
  require(c.max_data_bytes >= 1, "limits.max_data_bytes", "must be positive");
  require(c.messages_per_second >= 0, "limits.messages_per_second",
          "must be >= 0 (0 disables the limit)");
  require(c.burst >= 1, "limits.burst", "must be at least 1");
  require(c.max_errors >= 1, "limits.max_errors", "must be at least 1");
  require(c.error_window.count() > 0, "limits.error_window_ms", "must be positive");
  require(c.max_subscriptions >= 1, "limits.max_subscriptions", "must be at least 1");
  for (const auto& ns : c.readonly_namespaces)
    require(!ns.empty() && ns.find(':') == std::string::npos, "channels.readonly_namespaces",
            "namespaces are the part of a channel before ':' (got \"" + ns + "\")");
  // readonly_namespaces keeps working: it is publish = "server"
  for (const auto& ro : c.readonly_namespaces) {
    auto it = std::find_if(c.namespaces.begin(), c.namespaces.end(),
                           [&](const namespace_options& n) { return n.name == ro; });
    if (it == c.namespaces.end()) {
      namespace_options ns;
      ns.name = ro;
      ns.publish = publish_rule::server;
      c.namespaces.push_back(std::move(ns));
    } else {
      it->publish = publish_rule::server;
    }
  }
  require(c.idempotency_window.count() >= 1000, "history.idempotency_window_ms",
          "must be at least 1000");
  require(c.history_timeout.count() >= 100, "history.timeout_ms", "must be at least 100");
  require(c.api_timeout.count() >= 100, "api.timeout_ms", "must be at least 100");
  config_detail::check_backbone(c, base_dir);
  config_detail::check_hooks(c);
  require(c.actor_threads >= 1 && c.actor_threads <= 64, "runtime.actor_threads", "must be 1-64");
  require(c.broker_shards >= 1 && c.broker_shards <= 64, "runtime.broker_shards", "must be 1-64");
  require(c.scheduler == "sharing" || c.scheduler == "stealing", "runtime.scheduler",
          "must be sharing or stealing");
  static const std::set<std::string, std::less<>> levels{"trace", "debug", "info",
                                                         "warn",  "error", "off"};
  require(levels.contains(c.log_level), "log.level",
          "must be one of trace, debug, info, warn, error, off");
  require(c.log_format == "text" || c.log_format == "json", "log.format",
          "must be \"text\" or \"json\"");

  // Security by default: without a secret or key, only loopback listeners.
  if (!is_loopback(c.host)) {
    require(!c.dev_mode() || c.connect_hook(), "auth.secret",
            "dev mode (no secret, no public_key_file, no hooks.connect_url) is refused on the "
            "non-loopback listener " +
                c.listen + "; set a secret or a connect hook, or listen on 127.0.0.1");
    require(!c.api_key.empty(), "api.key",
            "an empty API key is refused on the non-loopback listener " + c.listen);
  }
  if (!c.auth_public_key_file.empty())
    read_public_keys(c, base_dir);
  if (!static_dir.empty()) {
    std::filesystem::path p{static_dir};
    c.static_dir = (p.is_absolute() ? p : base_dir / p).lexically_normal().string();
  }
  return c;
}

config load_config(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw config_error("", "cannot read config file " + file.string() + ": not a readable file");
  std::ifstream in{file, std::ios::binary};
  if (!in)
    throw config_error("", "cannot read config file " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw config_error("", "cannot read config file " + file.string());
  auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path{"."};
  return parse_config(text.str(), dir);
}

} // namespace wsnode
