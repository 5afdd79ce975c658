// The NATS backbone: the nodes linked through NATS servers instead of the
// ZeroMQ mesh ([backbone] kind = "nats"; docs/operations.md "Running on
// NATS"). Core NATS carries what the mesh carries:
// - channel and user messages, to nodes with local interest only: a node
//   subscribes to a topic's subject on its first local interest and
//   unsubscribes after the last, and the servers route by interest;
// - service messages (history, presence) on each node's own subject;
// - the node view: heartbeats with an incarnation (restarts are seen)
//   and the ids the sender hears (liveness is mutual), kept in the mesh's
//   peer_table.
// A `sub` is confirmed once every live peer answered a barrier sent after
// the subscription: a flush is not a cluster-wide barrier (interest
// travels between servers asynchronously), a round trip through each
// peer's server is (../shared/probes/nats: 24-49 of 300 missed with a
// flush, 0 with the round trip).
//
// Threads: nats.c's own (one socket reader, one global delivery thread
// for every subscription: the "one delivery thread feeding the broker",
// which waits while too many messages are in flight), plus one timer
// thread here for heartbeats, barriers, confirmations and the view.
// The broker's calls go straight to nats.c's buffered, thread-safe publish.
#pragma once

#include "core/backbone.hpp"
#include "core/history_engine.hpp"
#include "core/metrics.hpp"
#include "transport/js_history.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wsnode::transport {

struct nats_options {
  std::string node_id;
  std::vector<std::string> servers; ///< nats://HOST:PORT, tried in this order first
  std::string user;
  std::string password;
  std::string token;
  std::string creds_file;
  std::string prefix = "wsnode"; ///< first token of every subject
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds subscribe_timeout{1000};
  std::size_t max_inflight = 100000; ///< received, not yet handled by the broker
  /// Bytes nats.c buffers for publishes while it reconnects (then: dropped, counted).
  int reconnect_buffer = 8 << 20;
  /// Channel history in JetStream, when a namespace keeps history.
  std::optional<js_history_options> history;
};

class nats_backbone final : public backbone {
public:
  nats_backbone(nats_options opts, metrics& m);
  ~nats_backbone() override;
  nats_backbone(const nats_backbone&) = delete;
  nats_backbone& operator=(const nats_backbone&) = delete;

  /// Connects (or keeps trying in the background when no server answers
  /// yet: the node starts, unready) and starts the timer thread. Throws
  /// std::runtime_error for options nats.c refuses.
  void start(std::shared_ptr<backbone_events> events) override;
  void stop() override;
  /// True while connected to a NATS server.
  bool up() const noexcept override;
  std::string peers_json() const override;

  void subscribe(topic_kind kind, std::string_view name) override;
  void unsubscribe(topic_kind kind, std::string_view name) override;
  void publish(topic_kind kind, std::string_view name, const frame_ptr& frame) override;
  void send_to_node(std::string_view node, service_tag service, std::string payload) override;
  void handled() noexcept override;

  /// The JetStream history engine (null without history namespaces).
  std::shared_ptr<history_engine> history() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace wsnode::transport
