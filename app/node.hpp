// A running node: the process wiring of io threads, the actor system, the
// broker, the listener, signals and the graceful drain.
#pragma once

#include "app/config.hpp"

#include <filesystem>
#include <memory>
#include <string_view>

namespace wsnode {

/// Runs a node with `cfg` (read from `file`) until SIGTERM/SIGINT, then
/// drains; SIGHUP reloads `file` (app/reload.hpp). Returns the process exit
/// code (0 after a clean drain). Throws std::exception when the node cannot
/// start (for example, the port is taken).
int run_node(const config& cfg, const std::filesystem::path& file, std::string_view version);

} // namespace wsnode
