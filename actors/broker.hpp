// The node broker: who on this node listens to what, and delivery to them.
//
// `broker_core` is the plain logic (tables + fan-out), testable without
// actors; `spawn_broker` wraps it in the node's single broker actor, which
// owns it. Deliver locally, then propagate: a frame published on this node
// goes to local sessions first, then once to the backbone; a frame received
// from the backbone is delivered locally and never re-published.
#pragma once

#include "actors/backbone.hpp"
#include "actors/metrics.hpp"
#include "actors/ports.hpp"
#include "actors/topic_registry.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

namespace wsnode {

class broker_core {
public:
  using sid_type = std::uint64_t;

  /// `bb` may be null (single node); `m` must outlive the core.
  broker_core(metrics& m, std::shared_ptr<backbone> bb);

  /// Registers a session of `user`. Returns false when `sid` is already known.
  bool join(sid_type sid, std::string user, sink_ptr sink);
  /// Removes a session and every subscription it holds.
  void leave(sid_type sid);
  /// Subscribes a joined session to `ch`; false when `sid` is unknown.
  bool subscribe(sid_type sid, std::string_view ch);
  /// Unsubscribes; false when it was not subscribed.
  bool unsubscribe(sid_type sid, std::string_view ch);

  /// Delivers a `msg` frame to local subscribers of `ch`, then to the
  /// backbone. Returns the number of local sessions that queued it.
  std::size_t publish(std::string_view ch, const frame_ptr& frame);
  /// Delivers a `dm` frame to every local session of `user`, then to the
  /// backbone. Returns the number of local sessions that queued it.
  std::size_t send_to_user(std::string_view user, const frame_ptr& frame);
  /// Delivers a frame received from the backbone to local sessions only.
  std::size_t deliver_remote(topic_kind kind, std::string_view name, const frame_ptr& frame);

  /// Asks every session to close with `code` (drain: 1001).
  void close_all(std::uint16_t code, const std::string& reason);

  std::size_t session_count() const noexcept { return sessions_.size(); }
  std::size_t channel_count() const noexcept { return channels_.topic_count(); }
  std::size_t user_count() const noexcept { return users_.topic_count(); }
  /// Subscribers of `ch` on this node.
  std::size_t subscriber_count(std::string_view ch) const;
  /// Channels `sid` is subscribed to.
  std::size_t subscription_count(sid_type sid) const { return channels_.count_of(sid); }

private:
  struct session_rec {
    std::string user;
    sink_ptr sink;
  };

  std::size_t fan_out(const topic_registry<frame_sink*>::subscribers* subs, const frame_ptr& frame);
  void update_gauges() noexcept;

  metrics& metrics_;
  std::shared_ptr<backbone> backbone_;
  std::unordered_map<sid_type, session_rec> sessions_;
  topic_registry<frame_sink*> channels_; // values owned by sessions_
  topic_registry<frame_sink*> users_;
};

/// Spawns the broker actor. It monitors joined session actors and calls
/// `leave` when one terminates.
caf::actor spawn_broker(caf::actor_system& sys, metrics& m, std::shared_ptr<backbone> bb);

} // namespace wsnode
