// The reload plan: both configurations printed as TOML with secrets shown
// (print_effective knows every key), flattened to "section.key" = value
// and compared; a difference is applied when its key is reloadable and
// named as restart-only when not.
#include "app/config_reload.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <map>
#include <sstream>
#include <string_view>

namespace wsnode {

namespace {

using flat_config = std::map<std::string, std::string, std::less<>>;

// The value of a "namespace.<name>" entry, the namespace itself: names may
// hold dots, so an entry is told from a key by this, never by its dots.
constexpr std::string_view namespace_entry = "\x01namespace";

std::string text_of(const toml::node& v) {
  std::ostringstream o;
  v.visit([&](const auto& x) { o << x; });
  return o.str();
}

// "section.key" = value; [[namespace]] entries as "namespace.<name>.key",
// and "namespace.<name>" for the namespace itself.
flat_config flatten(const config& c) {
  flat_config out;
  auto root = toml::parse(print_effective(c, secrets::shown));
  for (const auto& [section, node] : root) {
    std::string sec{section.str()};
    if (const auto* t = node.as_table()) {
      for (const auto& [k, v] : *t)
        out[sec + "." + std::string{k.str()}] = text_of(v);
    } else if (const auto* a = node.as_array()) {
      for (const auto& e : *a) {
        const auto* t = e.as_table();
        if (t == nullptr)
          continue;
        auto name = (*t)["name"].value_or(std::string{});
        auto prefix = sec + "." + name;
        out[prefix] = namespace_entry;
        for (const auto& [k, v] : *t)
          if (k.str() != "name")
            out[prefix + "." + std::string{k.str()}] = text_of(v);
      }
    }
  }
  // the keys inside the file, not only its path
  out["auth.public_key_file"] += "\n" + c.auth_public_keys;
  return out;
}

constexpr std::array auth_keys{std::string_view{"auth.secret"},
                               std::string_view{"auth.public_key_file"},
                               std::string_view{"auth.issuer"}, std::string_view{"auth.audience"}};

// `key` as "namespace.<name>.<field>" (not an entry): its field.
std::string_view field_of(std::string_view key) {
  return key.substr(key.rfind('.') + 1);
}

bool reloadable(std::string_view key) {
  static constexpr std::array plain{"auth.secret",
                                    "auth.public_key_file",
                                    "auth.issuer",
                                    "auth.audience",
                                    "auth.expiry_grace_ms",
                                    "auth.key_grace_ms",
                                    "api.key",
                                    "ws.allowed_origins",
                                    "ws.max_connections",
                                    "limits.max_data_bytes",
                                    "limits.messages_per_second",
                                    "limits.burst",
                                    "limits.max_errors",
                                    "limits.error_window_ms",
                                    "limits.max_subscriptions",
                                    "log.level",
                                    "channels.readonly_namespaces"};
  if (std::find(plain.begin(), plain.end(), key) != plain.end())
    return true;
  if (!key.starts_with("namespace."))
    return false;
  // policy: who may subscribe and publish, the hooks, and how messages go
  // out; never what a channel keeps (history, presence)
  static constexpr std::array policy{"subscribe",    "publish",  "subscribe_hook",
                                     "publish_hook", "lossy",    "max_subscribers",
                                     "merge_ms",     "merge_max"};
  return std::find(policy.begin(), policy.end(), field_of(key)) != policy.end();
}

const actors::namespace_options* find_namespace(const config& c, std::string_view name) {
  for (const auto& ns : c.namespaces)
    if (ns.name == name)
      return &ns;
  return nullptr;
}

// A namespace's hook switched on without its URL in the running config:
// the running node has no client for it, so the switch waits for a restart
// (applying it would skip the application's check, not ask it).
bool hook_missing(const config& running, std::string_view key, const config& file) {
  bool sub = field_of(key) == "subscribe_hook";
  if (!sub && field_of(key) != "publish_hook")
    return false;
  auto name = key.substr(10, key.rfind('.') - 10);
  const auto* ns = find_namespace(file, name);
  bool on = ns != nullptr && (sub ? ns->subscribe_hook : ns->publish_hook);
  return on && (sub ? running.hook_subscribe_url : running.hook_publish_url).empty();
}

void apply(reload_plan& p, const config& file) {
  auto& n = p.next;
  if (p.keys_changed) {
    n.auth_secret = file.auth_secret;
    n.auth_public_key_file = file.auth_public_key_file;
    n.auth_public_keys = file.auth_public_keys;
    n.auth_issuer = file.auth_issuer;
    n.auth_audience = file.auth_audience;
  }
  n.expiry_grace = file.expiry_grace;
  n.key_grace = file.key_grace;
  n.api_key = file.api_key;
  n.allowed_origins = file.allowed_origins;
  n.max_connections = file.max_connections;
  n.max_data_bytes = file.max_data_bytes;
  n.messages_per_second = file.messages_per_second;
  n.burst = file.burst;
  n.max_errors = file.max_errors;
  n.error_window = file.error_window;
  n.max_subscriptions = file.max_subscriptions;
  n.log_level = file.log_level;
  n.readonly_namespaces = file.readonly_namespaces;
  auto take = [&](const std::string& key) {
    return std::find(p.changed.begin(), p.changed.end(), key) != p.changed.end();
  };
  for (auto& ns : n.namespaces) {
    const auto* f = find_namespace(file, ns.name);
    if (f == nullptr)
      continue;
    auto k = "namespace." + ns.name;
    ns.subscribe = f->subscribe;
    ns.publish = f->publish;
    ns.lossy = f->lossy;
    ns.max_subscribers = f->max_subscribers;
    ns.merge_ms = f->merge_ms;
    ns.merge_max = f->merge_max;
    if (take(k + ".subscribe_hook"))
      ns.subscribe_hook = f->subscribe_hook;
    if (take(k + ".publish_hook"))
      ns.publish_hook = f->publish_hook;
  }
}

} // namespace

reload_plan plan_reload(const config& running, const config& file) {
  reload_plan p{running, {}, {}, false};
  auto before = flatten(running);
  auto after = flatten(file);
  std::vector<std::string> differ;
  for (const auto& [k, v] : before) {
    auto it = after.find(k);
    if (it == after.end() || it->second != v)
      differ.push_back(k);
  }
  for (const auto& [k, v] : after)
    if (!before.contains(k))
      differ.push_back(k);
  bool mode_changes = running.dev_mode() != file.dev_mode(); // dev mode <-> tokens
  auto is_entry = [&](const std::string& k) {
    auto b = before.find(k);
    auto a = after.find(k);
    return (b != before.end() && b->second == namespace_entry) ||
           (a != after.end() && a->second == namespace_entry);
  };
  for (auto& k : differ) {
    bool auth = std::find(auth_keys.begin(), auth_keys.end(), k) != auth_keys.end();
    bool entry = is_entry(k);
    bool in_namespace = k.starts_with("namespace.") && !entry;
    bool ok = !entry && reloadable(k) && !(auth && mode_changes) && !hook_missing(running, k, file);
    // a namespace added or removed: named once, as "namespace.<name>"
    if (in_namespace) {
      auto parent = k.substr(0, k.rfind('.'));
      if (!before.contains(parent) || !after.contains(parent))
        continue;
    }
    (ok ? p.changed : p.restart_only).push_back(std::move(k));
    p.keys_changed = p.keys_changed || (ok && auth);
    p.namespaces_changed = p.namespaces_changed || (ok && in_namespace);
  }
  std::sort(p.changed.begin(), p.changed.end());
  std::sort(p.restart_only.begin(), p.restart_only.end());
  apply(p, file);
  return p;
}

} // namespace wsnode
