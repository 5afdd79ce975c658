// State shared by the listener and every HTTP/WebSocket session of a server.
#pragma once

#include "actors/metrics.hpp"
#include "actors/ports.hpp"
#include "transport/server.hpp"

#include <atomic>
#include <memory>
#include <vector>

namespace wsnode::transport {

class delivery_lane;

struct server_context {
  server_context(server_options o, node_port& n, metrics& mm)
    : opts(std::move(o)), node(n), m(mm) {}
  server_options opts;
  node_port& node;
  metrics& m;
  std::atomic<bool> draining{false};
  /// One per io_context of the pool, by index.
  std::vector<std::shared_ptr<delivery_lane>> lanes;
};

} // namespace wsnode::transport
