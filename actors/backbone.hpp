// The backbone links node brokers: what one node publishes reaches the
// brokers of other nodes that have local interest. The ZeroMQ mesh is one
// implementation; a single node runs without one. The broker calls these
// from its own context only; an implementation hands received messages back
// to the broker as `remote_atom` messages (see actors/messages.hpp).
#pragma once

#include "actors/ports.hpp"

#include <cstdint>
#include <string_view>

namespace wsnode {

/// What a topic names: a channel (msg frames) or a user (dm frames).
enum class topic_kind : std::uint8_t { channel = 0, user = 1 };

class backbone {
public:
  virtual ~backbone() = default;
  /// Starts receiving messages for `name` (first local interest).
  virtual void subscribe(topic_kind kind, std::string_view name) = 0;
  /// Stops receiving messages for `name` (last local interest left).
  virtual void unsubscribe(topic_kind kind, std::string_view name) = 0;
  /// Sends an encoded client frame to the other nodes interested in `name`.
  virtual void publish(topic_kind kind, std::string_view name, const frame_ptr& frame) = 0;
};

} // namespace wsnode
