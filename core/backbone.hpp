// The backbone links node brokers: what one node publishes reaches the
// brokers of other nodes that have local interest. The ZeroMQ mesh
// (transport/mesh.hpp) is one implementation, `local_backbone` the one of a
// single node; another distributed broker (NATS) fits the same interface
// without a change to the broker's logic or to app/.
//
// Rules of use: the broker calls `backbone` from its own context only,
// never blocking. The backbone reports back through `backbone_events`, from
// its own thread; the node's implementation of those events (actors/
// shard_router.hpp) turns each into a message to the broker shard that owns
// the topic.
#pragma once

#include "core/ports.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode {

/// What a topic names: a channel (msg frames) or a user (dm frames).
enum class topic_kind : std::uint8_t { channel = 0, user = 1 };

/// The node-to-node services that talk over the backbone (actors/
/// cluster_service.hpp). The tag travels with every service message, so a
/// receiver dispatches on it instead of guessing from the payload.
enum class service_tag : std::uint8_t {
  history = 'H',  ///< channel history: ownership, appends, reads
  presence = 'P', ///< presence: deltas, digests, snapshots
  cluster = 'C',  ///< the node's desk: server API calls, channel occupancy
};

/// The tag for a byte read off the wire; false when it names no service.
inline bool to_service_tag(std::uint8_t byte, service_tag& out) noexcept {
  switch (byte) {
  case static_cast<std::uint8_t>(service_tag::history):
  case static_cast<std::uint8_t>(service_tag::presence):
  case static_cast<std::uint8_t>(service_tag::cluster):
    out = static_cast<service_tag>(byte);
    return true;
  default:
    return false;
  }
}

/// What the backbone carries for a message of a history channel: its epoch,
/// '|', then the encoded msg frame (which carries the offset). The mesh
/// gets it from the publishing node; NATS builds it from what JetStream
/// republishes (transport/js_history.hpp). broker_core::split_ordered reads it.
inline std::string encode_ordered(std::string_view ep, std::string_view frame) {
  std::string wire;
  wire.reserve(ep.size() + 1 + frame.size());
  wire += ep;
  wire += '|';
  wire += frame;
  return wire;
}

/// What a backbone reports. Called on the backbone's own thread, one call
/// at a time; an implementation must not block.
class backbone_events {
public:
  virtual ~backbone_events() = default;
  /// A message of a subscribed topic published by another node. The broker
  /// calls `backbone::handled()` once it has delivered it.
  virtual void on_remote(topic_kind kind, std::string name, frame_ptr frame) = 0;
  /// The subscription asked for by `subscribe(kind, name)` is live on every
  /// node currently reachable (or its confirmation timed out), so that an
  /// `ack` sent after it means "messages published from now on reach you".
  /// Reported once per subscribe().
  virtual void on_subscribed(topic_kind kind, std::string name) = 0;
  /// A service message another node sent to this one (`send_to_node`).
  /// `payload` starts with the channel it concerns, then '\n'. The broker
  /// calls `backbone::handled()` once it has handled it.
  virtual void on_service_message(std::string from, service_tag service, std::string payload) = 0;
  /// The set of live peers changed (their ids, sorted; this node excluded).
  virtual void on_view(std::vector<std::string> live) = 0;
  /// A peer restarted (a new process under the same id): it lost what it held.
  virtual void on_peer_restart(std::string node) = 0;
};

class backbone {
public:
  virtual ~backbone() = default;

  // ---- life cycle (the node's wiring calls these, not the broker)

  /// Starts reporting to `events` (kept until stop()). Throws
  /// std::runtime_error when the backbone cannot start (a port taken).
  virtual void start(std::shared_ptr<backbone_events> events) { (void)events; }
  /// Stops reporting and closes what it holds. Idempotent.
  virtual void stop() {}
  /// False for a single node: there is nobody else, so interest is live at
  /// once and the broker keeps no table of it.
  virtual bool clustered() const noexcept { return true; }
  /// True while the backbone can carry messages (/readyz).
  virtual bool up() const noexcept { return true; }
  /// JSON array of the peers this node knows, for /readyz.
  virtual std::string peers_json() const { return "[]"; }

  // ---- the broker's calls (thread-safe, never block)

  /// Starts receiving messages for `name` (first local interest).
  virtual void subscribe(topic_kind kind, std::string_view name) = 0;
  /// Stops receiving messages for `name` (no local interest any more).
  virtual void unsubscribe(topic_kind kind, std::string_view name) = 0;
  /// Sends an encoded client frame to the other nodes interested in `name`.
  virtual void publish(topic_kind kind, std::string_view name, const frame_ptr& frame) = 0;
  /// Sends a service message to the node `node`; `payload` starts with the
  /// channel it concerns, then '\n'. Best effort: it may be lost.
  virtual void send_to_node(std::string_view node, service_tag service, std::string payload) = 0;
  /// The broker finished one message this backbone handed it (flow control:
  /// the backbone stops reading while too many are in flight).
  virtual void handled() noexcept = 0;
};

/// The backbone of a single node: no peer to tell, nothing ever arrives.
class local_backbone final : public backbone {
public:
  bool clustered() const noexcept override { return false; }
  void subscribe(topic_kind, std::string_view) override {}
  void unsubscribe(topic_kind, std::string_view) override {}
  void publish(topic_kind, std::string_view, const frame_ptr&) override {}
  void send_to_node(std::string_view, service_tag, std::string) override {}
  void handled() noexcept override {}
};

} // namespace wsnode
