// The mesh's bookkeeping that needs no socket: which peers are alive,
// which subscriptions every live peer has confirmed, and which topics the
// peers want from this node (with each topic's sequence numbers). The mesh thread owns
// both (transport/mesh.cpp feeds them what it reads); unit tests drive
// them with a clock of their own.
#pragma once

#include "core/string_hash.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wsnode::transport::mesh {

using clock = std::chrono::steady_clock;

/// Peers by what they send: any message is a sign of life, and a peer is
/// alive while it was heard from within 3 heartbeat intervals, unless its
/// connection was lost since (lost(): dead at once, until heard again), and
/// while it hears this node too: every heartbeat lists the peers its sender
/// hears, so a one-way loss (A hears B, B does not hear A) takes the link
/// out of both views rather than leaving A sending to a peer that never
/// gets it.
class peer_table {
public:
  explicit peer_table(clock::duration heartbeat) : heartbeat_(heartbeat) {}

  /// What hearing from a peer changed.
  enum class change : std::uint8_t {
    none,      ///< alive before, still alive
    up,        ///< never heard from before
    back,      ///< silent for longer than 3 intervals, heard again
    restarted, ///< a new process (another epoch) under the same id
  };
  /// `origin`, started at `epoch`, sent something at `now`.
  change heard(std::string_view origin, std::uint64_t epoch, clock::time_point now);
  /// `id`'s connection reset: dead now, not after 3 silent intervals.
  /// True when it was alive.
  bool lost(std::string_view id, clock::time_point now);
  bool alive(std::string_view id, clock::time_point now) const;
  /// `origin`'s heartbeat says whom it hears (`list`: ids joined by ',').
  /// True when whether it hears `self` changed.
  bool hears(std::string_view origin, std::string_view list, std::string_view self);
  /// The peers this node hears (alive or not in the other direction), for
  /// its own heartbeat: ids joined by ','.
  std::string heard_list(clock::time_point now) const;
  /// True when every peer alive at `now` is in `ids`.
  bool all_live_in(const std::set<std::string, std::less<>>& ids, clock::time_point now) const;
  /// Live peers at `now`, sorted.
  std::vector<std::string> live(clock::time_point now) const;
  /// The live peers when they differ from the last view this returned.
  std::optional<std::vector<std::string>> view_change(clock::time_point now);
  /// Calls `f(id, alive, last_seen_age, was_alive)` for every peer known,
  /// and remembers `alive` for the next call's `was_alive` (to log changes).
  void visit(clock::time_point now,
             const std::function<void(const std::string&, bool, clock::duration, bool)>& f);
  /// The peers as JSON for /readyz ([{"node","alive","last_seen_ms"}]),
  /// through visit(): `up` counts the live ones, `went_silent(id, ms)` is
  /// called for each that was alive at the last call and is not now.
  std::string json(clock::time_point now, std::int64_t& up,
                   const std::function<void(const std::string&, std::int64_t)>& went_silent);

private:
  struct peer {
    std::uint64_t epoch = 0;
    clock::time_point last_seen;
    bool reported_alive = false;
    bool lost = false;
    bool hears_me = true; // until a heartbeat of its says otherwise
  };
  bool heard_lately(const peer& p, clock::time_point now) const {
    return !p.lost && now - p.last_seen <= 3 * heartbeat_;
  }
  bool alive(const peer& p, clock::time_point now) const {
    return p.hears_me && heard_lately(p, now);
  }
  clock::duration heartbeat_;
  std::unordered_map<std::string, peer, string_hash, std::equal_to<>> peers_;
  std::vector<std::string> last_view_;
};

/// Subscriptions waiting until every live peer has confirmed them (so that
/// an `ack` sent after means "messages published from now on reach you"),
/// or until their deadline.
class confirmations {
public:
  struct done {
    std::string topic;
    bool timed_out = false;
  };

  bool empty() const noexcept { return pending_.empty(); }
  /// Waits for `topic` until `deadline`; true when it is confirmed at once
  /// (no live peer lacks it) and so no longer waits.
  bool add(std::string topic, clock::time_point deadline, const peer_table& peers,
           clock::time_point now);
  /// Stops waiting for `topic` (unsubscribed).
  void remove(std::string_view topic);
  /// `peer` confirmed `topic`; true when that was the last confirmation due.
  bool confirm(std::string_view topic, std::string_view peer, const peer_table& peers,
               clock::time_point now);
  /// What is done at `now`: deadlines passed and, with `recheck`, those
  /// that no longer lack a live peer's confirmation (a peer went silent).
  std::vector<done> expire(const peer_table& peers, clock::time_point now, bool recheck);
  /// The earliest deadline still waiting (time_point::max() when none).
  clock::time_point earliest_deadline();

private:
  struct waiting {
    clock::time_point deadline;
    std::set<std::string, std::less<>> confirmed_by;
  };
  using map = std::unordered_map<std::string, waiting, string_hash, std::equal_to<>>;
  bool complete(const map::iterator& it, const peer_table& peers, clock::time_point now) const;

  map pending_;
  std::deque<std::pair<clock::time_point, std::string>> deadlines_; // in order: they only grow
};

/// The topics peers subscribed to on this node's XPUB socket, each with
/// the sequence number of the last message sent on it. A topic nobody
/// wants any more keeps its sequence for `keep`: if a peer wants it again
/// (its connection broke and was re-made; the old connection's "left" may
/// come after the new one's "subscribed", or just before), the sequence
/// goes on; started over, it would look like old messages to that peer,
/// which drops them.
class interest_table {
public:
  explicit interest_table(clock::duration keep = std::chrono::minutes(10)) : keep_(keep) {}

  /// A peer subscribed to `topic`.
  void want(std::string_view topic);
  /// The last peer wanting `topic` left.
  void unwant(std::string_view topic, clock::time_point now);
  /// The sequence number for the next message on `topic`; nullopt when
  /// no peer wants it (the message is not sent).
  std::optional<std::uint64_t> next_seq(std::string_view topic);
  /// Forgets topics unwanted for longer than `keep` (their sequence may
  /// start over at 1, which receivers take as a new baseline); scans at
  /// most once a minute.
  void forget(clock::time_point now);
  std::size_t size() const noexcept { return topics_.size(); }

private:
  struct entry {
    std::uint64_t seq = 0;
    bool wanted = true;
    clock::time_point unwanted_since{};
  };
  clock::duration keep_;
  clock::time_point last_scan_{};
  std::unordered_map<std::string, entry, string_hash, std::equal_to<>> topics_;
};

} // namespace wsnode::transport::mesh
