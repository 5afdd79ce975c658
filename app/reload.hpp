// SIGHUP: reads the config file again and applies what may change under
// live connections (app/config_reload.hpp): the token keys (the old ones
// accepted for [auth] key_grace_ms), the API key, allowed origins, limits
// and rates, the log level, namespace policy. Open connections stay; a
// file the reader refuses changes nothing.
#pragma once

#include "actors/session.hpp"
#include "app/config.hpp"
#include "core/metrics.hpp"
#include "transport/server.hpp"

#include <filesystem>
#include <functional>
#include <memory>
#include <sys/resource.h>

namespace wsnode {

class reloader {
public:
  /// Publishes new session settings (every session moves to them) and,
  /// when a namespace's options changed, their namespace table to the
  /// broker shards (which send their open merge windows first).
  using session_publisher = std::function<void(actors::session_config, bool namespaces_changed)>;

  reloader(config running, std::filesystem::path file, rlim_t fd_limit,
           std::shared_ptr<const protocol::token_verifier> verifier, transport::server& srv,
           session_publisher sessions, metrics& m);

  /// Reads the file and applies it. Logs what changed, each changed key
  /// that needs a restart (kept at its running value), or why the file was
  /// refused; counts the result in wsnode_config_reloads_total. Never
  /// throws. Call from one thread at a time.
  reload_result reload();

private:
  config running_;
  std::filesystem::path file_;
  rlim_t fd_limit_;
  std::shared_ptr<const protocol::token_verifier> verifier_;
  transport::server& srv_;
  session_publisher sessions_;
  metrics& m_;
};

} // namespace wsnode
