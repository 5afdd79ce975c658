// The ZeroMQ mesh: this node's backbone to its peers.
//
// Each node binds one XPUB socket and connects one SUB socket to every
// peer's. The SUB side subscribes only to topics this node has local
// interest in, so PUB-side filtering sends a node only what it needs; the
// XPUB side learns which topics peers want and sends nothing else. One
// thread owns both sockets; the broker talks to it through a bounded queue.
// Wire format: transport/mesh_codec.hpp.
#pragma once

#include "core/backbone.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace wsnode::transport {

struct mesh_options {
  std::string node_id;
  std::string bind;               ///< tcp://IP:PORT of the XPUB socket
  std::vector<std::string> peers; ///< tcp://HOST:PORT; our own bind is skipped
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds subscribe_timeout{1000};
  int hwm = 100000;                  ///< ZeroMQ high-water marks (messages per peer)
  std::size_t queue_limit = 100000;  ///< publishes waiting for the mesh thread
  std::size_t max_inflight = 100000; ///< received, not yet handled by the broker
};

class zmq_mesh final : public backbone {
public:
  zmq_mesh(mesh_options opts, metrics& m);
  ~zmq_mesh() override;
  zmq_mesh(const zmq_mesh&) = delete;
  zmq_mesh& operator=(const zmq_mesh&) = delete;

  /// Binds the XPUB socket, connects to the peers and starts the mesh
  /// thread. Throws std::runtime_error when the bind fails.
  void start(std::shared_ptr<backbone_events> events) override;
  /// Stops the thread and closes the sockets. Idempotent.
  void stop() override;
  /// True while the mesh thread runs with its sockets open.
  bool up() const noexcept override;
  /// JSON array of peers heard from: [{"node","alive","last_seen_ms"}].
  std::string peers_json() const override;

  // backbone (thread-safe, never blocks)
  void subscribe(topic_kind kind, std::string_view name) override;
  void unsubscribe(topic_kind kind, std::string_view name) override;
  void publish(topic_kind kind, std::string_view name, const frame_ptr& frame) override;
  void send_to_node(std::string_view node, service_tag service, std::string payload) override;
  void handled() noexcept override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace wsnode::transport
