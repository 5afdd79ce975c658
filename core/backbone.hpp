// The backbone links node brokers: what one node publishes reaches the
// brokers of other nodes that have local interest. The ZeroMQ mesh is one
// implementation; a single node runs without one, and another distributed
// broker (NATS, say) fits the same interface.
//
// Rules of use: the broker calls these from its own context only, never
// blocking. An implementation reports back to the broker asynchronously (as
// `atoms::remote` and `atoms::mesh_ok` messages, see actors/messages.hpp):
//   - every message of a subscribed topic published by another node;
//   - for every subscribe(), once: the subscription is live on every node
//     currently reachable (or a timeout passed), so that an `ack` sent after
//     it means "messages published from now on reach you";
//   - service messages sent to this node (`atoms::node_msg`) and changes of
//     the set of live peers (`atoms::view`), for channel history.
#pragma once

#include "core/ports.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace wsnode {

/// What a topic names: a channel (msg frames) or a user (dm frames).
enum class topic_kind : std::uint8_t { channel = 0, user = 1 };

class backbone {
public:
  virtual ~backbone() = default;
  /// Starts receiving messages for `name` (first local interest).
  virtual void subscribe(topic_kind kind, std::string_view name) = 0;
  /// Stops receiving messages for `name` (no local interest any more).
  virtual void unsubscribe(topic_kind kind, std::string_view name) = 0;
  /// Sends an encoded client frame to the other nodes interested in `name`.
  virtual void publish(topic_kind kind, std::string_view name, const frame_ptr& frame) = 0;
  /// Sends a service message (history, see actors/history_service.hpp) to
  /// the node `node`. Best effort: it may be lost.
  virtual void send_to_node(std::string_view node, std::string payload) = 0;
  /// The broker finished one message this backbone handed it (flow control:
  /// the backbone stops reading while too many are in flight).
  virtual void handled() noexcept = 0;
};

} // namespace wsnode
