// State shared by the listener and every HTTP/WebSocket session of a server.
#pragma once

#include "core/live.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"
#include "transport/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <vector>

namespace wsnode::transport {

class delivery_lane;

/// A connection's socket: bound to its io_context's own executor (smaller
/// than the type-erased default, in the socket and in every pending
/// operation, which idle connections notice).
using stream_socket =
    boost::asio::ip::tcp::socket::rebind_executor<boost::asio::io_context::executor_type>::other;

struct server_context {
  server_context(server_options o, node_port& n, metrics& mm)
    : opts(std::move(o)), access(std::make_shared<const access_policy>(opts.access)), node(n),
      m(mm) {}
  server_options opts; // opts.access: the first version of `access`
  live<access_policy> access;
  node_port& node;
  metrics& m;
  std::atomic<bool> draining{false};
  /// One per io_context of the pool, by index.
  std::vector<std::shared_ptr<delivery_lane>> lanes;
};

} // namespace wsnode::transport
