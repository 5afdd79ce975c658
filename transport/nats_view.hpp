// The NATS backbone's view of the other nodes and its subscription
// barrier, without sockets (transport/nats_backbone.cpp feeds it what it
// reads and sends what it says; unit tests drive it with their own clock).
// The liveness rules are the mesh's (transport/mesh_peers.hpp: heartbeats
// with an incarnation, mutual hearing); a peer is also gone at once when
// the servers answer "no responders" for its subject.
//
// Wire format on NATS:
//   PREFIX.hb      envelope (transport/mesh_codec.hpp: origin, incarnation)
//                  + the ids of the peers the sender hears, ',' between
//   PREFIX.n.NODE  [kind][origin length][origin][body]; kind is a service
//                  tag (core/backbone.hpp) or a barrier's '?' (ask: the
//                  topics just subscribed, '\n' between) or '!' (answer:
//                  the same topics)
#pragma once

#include "transport/mesh_peers.hpp"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::transport::nats {

using clock = std::chrono::steady_clock;

inline constexpr char barrier_ask = '?';
inline constexpr char barrier_answer = '!';

std::string encode_node_message(char kind, std::string_view origin, std::string_view body);
struct node_message {
  char kind = 0;
  std::string origin;
  std::string_view body;
};
/// nullopt when malformed (no origin, or shorter than it says).
std::optional<node_message> decode_node_message(std::string_view data);

std::string encode_heartbeat(std::string_view origin, std::uint64_t incarnation,
                             std::string_view heard_list);
struct heartbeat {
  std::string origin;
  std::uint64_t incarnation = 0;
  std::string_view heard_by;
};
std::optional<heartbeat> decode_heartbeat(std::string_view data);

/// Thread-safe: nats.c's delivery thread reports, the backbone's timer
/// thread steps it.
class node_view {
public:
  node_view(std::string self, clock::duration heartbeat)
    : self_(std::move(self)), peers_(heartbeat), interval_(heartbeat) {}

  /// A heartbeat arrived; returns what it changed for its sender.
  mesh::peer_table::change heard(const heartbeat& hb, clock::time_point now);
  /// The servers know no subscriber of `peer`'s subject: gone now. True
  /// when it was live.
  bool gone(std::string_view peer, clock::time_point now);
  /// This node's own connection dropped: nobody is reachable.
  void link_lost(clock::time_point now);
  /// Heartbeat at the next step (a peer came, the connection came back).
  void heartbeat_soon();

  /// Waits for every live peer to answer a barrier sent after `topic` was
  /// subscribed, until `deadline`.
  void subscribed(std::string topic, clock::time_point deadline, clock::time_point now);
  void unsubscribed(std::string_view topic);
  /// `origin` answered the barrier for `topics` ('\n' between).
  void answered(std::string_view origin, std::string_view topics, clock::time_point now);

  /// What the backbone does now.
  struct step_result {
    std::optional<std::string> heartbeat_body; ///< publish on PREFIX.hb
    std::string barrier_body;                  ///< ask each of barrier_peers
    std::vector<std::string> barrier_peers;
    std::vector<std::string> ready;               ///< topics confirmed (or timed out): ack
    std::size_t timed_out = 0;                    ///< of those, confirmed by the deadline only
    std::optional<std::vector<std::string>> view; ///< the live peers, when changed
    std::int64_t live = 0;
    std::string peers_json; ///< for /readyz
  };
  /// Everything due at `now` (heartbeat every `heartbeat` or soon, barriers,
  /// confirmations, the view); `next` gets the time of the next step.
  step_result step(clock::time_point now, std::uint64_t incarnation, clock::time_point& next);

private:
  std::mutex mu_;
  std::string self_;
  mesh::peer_table peers_;
  clock::duration interval_;
  mesh::confirmations pending_;
  std::vector<std::string> barrier_topics_; // subscribed since the last barrier
  std::vector<std::string> confirmed_now_;  // confirmed without waiting
  bool heartbeat_soon_ = true;
  clock::time_point next_heartbeat_{};
};

} // namespace wsnode::transport::nats
