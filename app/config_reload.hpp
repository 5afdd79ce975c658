// What a reload (SIGHUP) may change under live connections, and what only
// a restart can: the plan compares the running configuration with the
// file's, key by key, in the names an operator writes.
#pragma once

#include "app/config.hpp"

#include <string>
#include <vector>

namespace wsnode {

struct reload_plan {
  /// The running configuration with every reloadable key taken from the
  /// file; every other key keeps its running value (never half-applied).
  config next;
  std::vector<std::string> changed;      ///< reloadable keys that differ, as "section.key"
  std::vector<std::string> restart_only; ///< keys that differ but need a restart (ignored)
  bool keys_changed = false;             ///< secret, public keys, issuer or audience
  bool namespaces_changed = false;       ///< a namespace's options (the shards' table)
};

/// Plans a reload from `running` to `file` (both validated by the reader).
/// Reloadable: [auth] secret, public_key_file (and the keys in it),
/// issuer, audience, expiry_grace_ms, key_grace_ms (but not between dev
/// mode and tokens); [api] key; [ws] allowed_origins, max_connections;
/// [limits]; [channels] readonly_namespaces and a namespace's subscribe,
/// publish, subscribe_hook and publish_hook (a hook only when its URL is
/// configured already), lossy, max_subscribers, merge_ms and merge_max;
/// [log] level. A namespace added or removed, and every other key, needs
/// a restart.
reload_plan plan_reload(const config& running, const config& file);

} // namespace wsnode
