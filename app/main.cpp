// wsnode: a distributed real-time messaging server for WebSocket clients.
#include "app/config.hpp"
#include "app/log_format.hpp"
#include "app/node.hpp"
#include "protocol/auth_token.hpp"
#include "protocol/names.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr int exit_config = 2;
constexpr int exit_runtime = 1;

// [log] level and format ("text": one line per event, "json": one object
// per line, uncoloured).
void setup_logging(const std::string& level, const std::string& format) {
  std::shared_ptr<spdlog::logger> logger;
  if (format == "json") {
    logger = spdlog::stderr_logger_mt("wsnode");
    logger->set_formatter(std::make_unique<wsnode::json_log_formatter>());
  } else {
    logger = spdlog::stderr_color_mt("wsnode");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// `wsnode token`: prints an HS256 token signed with the config's [auth]
// secret (for trying things out; production tokens come from the
// application's auth service).
int print_token(const wsnode::config& cfg, const std::string& user, const std::string& channel,
                const std::vector<std::string>& channels, long long ttl) {
  if (cfg.auth_secret.empty()) {
    fmt::print(stderr, "wsnode token: the config has no [auth] secret to sign with\n");
    return exit_config;
  }
  if (!wsnode::protocol::valid_user(user)) {
    fmt::print(stderr, "wsnode token: --user must be 1-64 chars of [A-Za-z0-9_.@-]\n");
    return exit_config;
  }
  for (const auto& ch : channels)
    if (!wsnode::protocol::valid_channel(ch)) {
      fmt::print(stderr, "wsnode token: '{}' is not a valid channel name\n", ch);
      return exit_config;
    }
  if (!channel.empty() && !wsnode::protocol::valid_channel(channel)) {
    fmt::print(stderr, "wsnode token: '{}' is not a valid channel name\n", channel);
    return exit_config;
  }
  fmt::print("{}\n", wsnode::protocol::sign_token(user, cfg.auth_secret, std::chrono::seconds{ttl},
                                                  {channels, channel}));
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  // a SIGHUP before run_node installs the reload handler must not end the
  // process (its default action; `systemctl reload` right after a start)
  std::signal(SIGHUP, SIG_IGN);
  CLI::App app{"wsnode: a distributed real-time messaging server for WebSocket clients"};
  std::string config_path = "config.toml";
  bool check_only = false;
  bool version = false;
  app.add_option("-c,--config", config_path, "configuration file (TOML)");
  app.add_flag("--check-config", check_only,
               "validate the configuration, print it (defaults filled in, secrets masked) and "
               "exit");
  app.add_flag("-V,--version", version, "print the version and exit");
  std::string token_user;
  std::string token_channel;
  std::vector<std::string> token_channels;
  long long token_ttl = 3600;
  auto* token =
      app.add_subcommand("token", "print an HS256 token signed with the config's [auth] secret");
  token->add_option("-c,--config", config_path, "configuration file (TOML)");
  token->add_option("--user", token_user, "the token's sub (user id)")->required();
  token->add_option("--channel", token_channel,
                    "make a subscription token for this private channel (claim ch)");
  token->add_option("--channels", token_channels,
                    "private channels a connection token grants (claim channels)");
  token->add_option("--ttl", token_ttl, "seconds until exp (default 3600)")
      ->check(CLI::Range(1LL, 366LL * 24 * 3600));
  CLI11_PARSE(app, argc, argv);

  if (version) {
    fmt::print("wsnode {}\n", WSNODE_VERSION);
    return 0;
  }
  wsnode::config cfg;
  try {
    cfg = wsnode::load_config(config_path);
  } catch (const wsnode::config_error& e) {
    fmt::print(stderr, "wsnode: config error in {}: {}\n", config_path, e.what());
    return exit_config;
  }
  if (token->parsed())
    return print_token(cfg, token_user, token_channel, token_channels, token_ttl);
  if (check_only) {
    // the verdict on stderr, the effective config (valid TOML) alone on stdout
    fmt::print(stderr, "{}: ok (node {}, listen {}, auth {})\n", config_path, cfg.node_id,
               cfg.listen, cfg.dev_mode() ? "dev" : "jwt");
    fmt::print("{}", wsnode::print_effective(cfg));
    return 0;
  }
  setup_logging(cfg.log_level, cfg.log_format);
  try {
    return wsnode::run_node(cfg, config_path, WSNODE_VERSION);
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return exit_runtime;
  }
}
