// State shared by the listener and every HTTP/WebSocket session of a server.
#pragma once

#include "actors/metrics.hpp"
#include "actors/ports.hpp"
#include "transport/server.hpp"

#include <atomic>

namespace wsnode::transport {

struct server_context {
  server_context(server_options o, node_port& n, metrics& mm)
    : opts(std::move(o)), node(n), m(mm) {}
  server_options opts;
  node_port& node;
  metrics& m;
  std::atomic<bool> draining{false};
};

} // namespace wsnode::transport
