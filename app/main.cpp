// wsnode: a distributed real-time messaging server for WebSocket clients.
#include "app/config.hpp"
#include "app/node.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace {

constexpr int exit_config = 2;
constexpr int exit_runtime = 1;

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("wsnode");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsnode: a distributed real-time messaging server for WebSocket clients"};
  std::string config_path = "config.toml";
  bool check_only = false;
  bool version = false;
  app.add_option("-c,--config", config_path, "configuration file (TOML)");
  app.add_flag("--check-config", check_only, "validate the configuration and exit");
  app.add_flag("-V,--version", version, "print the version and exit");
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
  if (check_only) {
    fmt::print("{}: ok (node {}, listen {}, auth {})\n", config_path, cfg.node_id, cfg.listen,
               cfg.dev_mode() ? "dev" : "jwt");
    return 0;
  }
  setup_logging(cfg.log_level);
  try {
    return wsnode::run_node(cfg, WSNODE_VERSION);
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return exit_runtime;
  }
}
