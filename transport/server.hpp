// The HTTP + WebSocket listener of a node (Boost.Beast), behind a small
// non-template facade so that app code does not compile Beast.
#pragma once

#include "core/hooks.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"
#include "protocol/auth_token.hpp"
#include "protocol/codec.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wsnode::transport {

class io_pool;

/// What a reload (SIGHUP) may change while connections live; read once
/// per HTTP request or upgrade (docs/operations.md "Reload").
struct access_policy {
  std::shared_ptr<const protocol::token_verifier> verifier; ///< null: dev mode
  std::string api_key;                                      ///< empty: /api/* open
  std::vector<std::string> allowed_origins;                 ///< empty: any Origin
  std::size_t max_connections = 10000;
  protocol::parse_limits limits;
};

/// Everything transport needs to know from the configuration.
struct server_options {
  std::string node_id = "n1";
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string static_dir; ///< empty: no static files
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 1 << 20;
  std::chrono::milliseconds http_idle_timeout{30000};
  std::chrono::milliseconds api_timeout{10000}; ///< an API call unanswered by then: 503
  std::size_t max_message_bytes = 65536;
  bool compression = false;
  std::chrono::milliseconds ping_interval{25000};
  std::chrono::milliseconds close_timeout{5000};
  std::size_t max_queue_bytes = 1 << 20;
  std::size_t max_pending_input = 64;       ///< unhandled received messages before reading pauses
  std::chrono::microseconds coalesce{2000}; ///< how long writes wait for more frames
  std::size_t flush_helper_min = 256;       ///< sockets a quiet flush needs to be split; 0 = never
  access_policy access;                     ///< the first version; see server::reload
  /// The application's hooks (null: none); with a connect hook, identity
  /// comes from its answer.
  std::shared_ptr<hook_port> hooks;
  std::vector<std::string> forward_headers; ///< upgrade request headers passed to connect
};

class server {
public:
  /// `node` and `m` must outlive the server. Connections are spread over
  /// the io_contexts of `pool`; the listener runs on the first.
  server(io_pool& pool, server_options opts, node_port& node, metrics& m);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds and starts accepting. Throws std::system_error when the address
  /// cannot be bound.
  void start();
  /// Marks the node draining: upgrades get 503 "node draining", HTTP
  /// keep-alive ends, plain HTTP (health, metrics, API) is still served.
  /// Thread-safe.
  void set_draining();
  /// Replaces the access policy: requests and upgrades from now on are
  /// judged by `a`; open connections are not touched. Thread-safe.
  void reload(access_policy a);
  /// Closes the listening socket. Thread-safe.
  void stop_accepting();
  /// The bound port (useful with port 0).
  std::uint16_t port() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace wsnode::transport
