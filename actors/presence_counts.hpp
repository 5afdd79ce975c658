// Presence by counts, for namespaces with `presence = "count"` (rooms too
// big for member lists: a live stream's viewers). Each node counts its own
// subscribed sessions of a channel and tells every live peer its count
// when it changed (at most once per interval) and again every few
// intervals; each node keeps one number per peer and channel, so a room
// costs O(nodes) per node however many watch it. The count answers the
// presence op and API; there is no member list and no join/leave.
//
// A count from a node that leaves the view, restarts, or says nothing for
// `expire_intervals` is dropped, so a killed node's viewers leave the
// count within the view's detection time (at most that many intervals).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wsnode::actors {

class presence_counts {
public:
  using clock = std::chrono::steady_clock;
  /// Sends (node, channel, count) to one peer.
  using send_fn =
      std::function<void(const std::string& node, const std::string& ch, std::uint64_t n)>;

  /// A count unchanged is sent again every `refresh_intervals`; one not
  /// heard for `expire_intervals` is dropped.
  static constexpr int refresh_intervals = 3;
  static constexpr int expire_intervals = 8;

  /// `interval`: how often tick() is called.
  presence_counts(send_fn send, clock::duration interval)
    : send_(std::move(send)), interval_(interval) {}

  /// One more / one fewer local session in `ch`.
  void add(const std::string& ch) { ++chans_[ch].local; }
  void remove(const std::string& ch);
  /// Sessions in `ch` on every node, as this node knows.
  std::uint64_t count(std::string_view ch) const;
  /// Channels known here (with local sessions or a peer's count).
  std::size_t channel_count() const noexcept { return chans_.size(); }

  /// Peer `node` says it has `n` sessions in `ch` (heard at the last tick:
  /// expiry counts in ticks).
  void on_count(const std::string& node, const std::string& ch, std::uint64_t n);
  /// `node` is gone or restarted: its sessions leave every count (and it
  /// gets every local count again when it is back).
  void drop_node(const std::string& node);
  /// Once per interval: counts to the live peers (sorted ids, this node
  /// excluded) and expiry. A peer new in `live` gets every local count.
  void tick(const std::vector<std::string>& live, clock::time_point now);

private:
  struct remote_count {
    std::uint64_t n = 0;
    clock::time_point heard{};
  };
  struct channel {
    std::uint64_t local = 0;
    std::uint64_t sent = 0; // the local count the peers last got
    int since_sent = 0;     // intervals since then
    std::unordered_map<std::string, remote_count> remote;
  };
  void forget_if_empty(std::unordered_map<std::string, channel>::iterator it);

  send_fn send_;
  clock::duration interval_;
  std::unordered_map<std::string, channel> chans_;
  std::vector<std::string> told_; // the live peers at the last tick, sorted
  clock::time_point last_tick_ = clock::now();
};

} // namespace wsnode::actors
