// wsnode's configuration: a TOML file, every key documented in
// docs/operations.md. Unknown keys, wrong types and bad values are refused
// with a message naming the key.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "actors/namespaces.hpp"

namespace wsnode {

struct config {
  // [node]
  std::string node_id = "n1";
  std::chrono::milliseconds drain_timeout{10000};
  // [http]
  std::string listen = "127.0.0.1:8080";
  std::string host = "127.0.0.1"; ///< from listen
  std::uint16_t port = 8080;      ///< from listen
  std::string static_dir;         ///< resolved against the config file's folder
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 1 << 20;
  std::chrono::milliseconds http_idle_timeout{30000};
  std::size_t io_threads = 1;
  // [auth]
  std::string auth_secret;
  std::string auth_public_key_file;              ///< resolved path; "" = none
  std::string auth_public_keys;                  ///< its PEM text (read and checked at load)
  std::string auth_issuer;                       ///< `iss` required when set
  std::string auth_audience;                     ///< `aud` required when set
  std::chrono::milliseconds expiry_grace{30000}; ///< after `exp` before 4001
  /// After a reload that changed the keys, tokens the old keys accepted
  /// are still accepted this long.
  std::chrono::milliseconds key_grace{300000};
  // [api]
  std::string api_key;
  std::chrono::milliseconds api_timeout{10000}; ///< an API call not answered by then: 503
  // [ws]
  std::size_t max_message_bytes = 65536;
  std::vector<std::string> allowed_origins;
  bool compression = false;
  std::chrono::milliseconds ping_interval{25000};
  std::chrono::milliseconds close_timeout{5000};
  std::size_t max_queue_bytes = 1 << 20;
  std::size_t max_connections = 0; ///< 0 = from the open-file limit
  std::chrono::microseconds coalesce{2000};
  std::size_t flush_helper_min = 256; ///< 0 = no flush helper thread
  // [limits]
  std::size_t max_data_bytes = 32768;
  double messages_per_second = 100;
  double burst = 200;
  double max_errors = 30;
  std::chrono::milliseconds error_window{10000};
  std::size_t max_subscriptions = 512;
  // [channels]
  std::vector<std::string> readonly_namespaces;
  // [[namespace]] tables (readonly_namespaces become publish = "server")
  std::vector<actors::namespace_options> namespaces;
  // [history]
  std::chrono::milliseconds idempotency_window{300000};
  std::chrono::milliseconds history_timeout{5000}; ///< a publish/read waits for the owner at most
  std::string history_state_dir; ///< where promised terms survive restarts ("" = nowhere)
  // [hooks] (the application's backend; "" = that hook off)
  std::string hook_connect_url;
  std::string hook_refresh_url;
  std::string hook_subscribe_url;
  std::string hook_publish_url;
  std::string hook_rpc_url;
  std::string hook_events_url;          ///< webhooks ("" = off)
  std::vector<std::string> hook_events; ///< which kinds; empty: every kind this version sends
  std::size_t hook_events_max_queue = 10000;
  std::chrono::milliseconds hook_timeout{2000};
  std::size_t hook_max_in_flight = 256;
  std::vector<std::string> hook_forward_headers;
  std::string hook_secret;
  std::size_t hook_max_answer_bytes = 1 << 20;
  // [backbone]
  std::string backbone_kind = "mesh"; ///< "mesh" (ZeroMQ, [mesh]) or "nats" ([nats])
  // [nats]
  std::vector<std::string> nats_servers{"nats://127.0.0.1:4222"};
  std::string nats_user;
  std::string nats_password;
  std::string nats_token;
  std::string nats_creds_file;   ///< resolved path; "" = none
  std::size_t nats_replicas = 3; ///< JetStream replicas of history streams
  std::chrono::milliseconds nats_timeout{10000};
  std::string nats_prefix = "wsnode"; ///< first token of every subject and stream name
  // [mesh] (heartbeat_ms, subscribe_timeout_ms, unsubscribe_linger_ms and hwm
  // tune the NATS backbone's node view and flow control too)
  std::string mesh_bind;
  std::vector<std::string> mesh_peers;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds subscribe_timeout{1000};
  std::chrono::milliseconds unsubscribe_linger{2000};
  std::size_t mesh_hwm = 100000;
  // [runtime]
  std::size_t actor_threads = 1;
  std::size_t broker_shards = 1;     ///< broker actors, topics split by hash
  std::string scheduler = "sharing"; ///< CAF policy: sharing | stealing
  // [log]
  std::string log_level = "info";
  std::string log_format = "text"; ///< "text" (one line per event) or "json" (one object per line)

  /// True when neither a secret nor a public key is set (identity claimed
  /// by the client).
  bool dev_mode() const noexcept { return auth_secret.empty() && auth_public_keys.empty(); }
  bool on_nats() const noexcept { return backbone_kind == "nats"; }
  /// True when identity comes from the application's connect hook.
  bool connect_hook() const noexcept { return !hook_connect_url.empty(); }
};

/// A refused configuration: `key` is "section.name" (or empty for the file).
class config_error : public std::runtime_error {
public:
  config_error(std::string key, const std::string& msg)
    : std::runtime_error(key.empty() ? msg : key + ": " + msg), key_(std::move(key)) {}
  const std::string& key() const noexcept { return key_; }

private:
  std::string key_;
};

/// Reads and validates a config file. Throws config_error.
config load_config(const std::filesystem::path& file);

/// Parses and validates TOML text; relative paths resolve against `base_dir`.
/// Throws config_error.
config parse_config(std::string_view toml_text, const std::filesystem::path& base_dir);

/// The effective configuration as TOML: every section and key the reader
/// knows, in the names an operator writes, defaults filled in; passwords,
/// secrets, tokens and keys print as "***" when set ("" when not). Parsed
/// again it means the same (but for the masked values). `shown`: secrets
/// as they are (for comparing two configs, never for printing).
/// (app/config_print.cpp)
enum class secrets : std::uint8_t { masked, shown };
std::string print_effective(const config& c, secrets s = secrets::masked);

/// Splits "host:port" or "[v6]:port"; throws config_error naming `key`.
void split_host_port(std::string_view s, const std::string& key, std::string& host,
                     std::uint16_t& port);

/// True when `host` is a loopback address (127.0.0.0/8, ::1, localhost).
bool is_loopback(std::string_view host);

} // namespace wsnode
