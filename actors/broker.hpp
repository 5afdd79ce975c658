// The node broker: who on this node listens to what, and delivery to them.
//
// `broker_core` is the plain logic (tables, fan-out, backbone interest),
// testable without actors; `spawn_broker` wraps it in a broker actor (one
// per shard, see broker_set), which owns it. Deliver locally, then propagate: a frame
// published on this node goes to local sessions first, then once to the
// backbone; a frame received from the backbone is delivered locally and
// never re-published.
#pragma once

#include "actors/history/service.hpp"
#include "actors/namespaces.hpp"
#include "actors/topic_registry.hpp"
#include "core/backbone.hpp"
#include "core/events.hpp"
#include "core/history_engine.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace wsnode::actors {

class broker_core {
public:
  using sid_type = std::uint64_t;
  using clock = std::chrono::steady_clock;
  /// Runs when a session's interest is live on the backbone (at once on a
  /// single node): sends the `ack` of a `sub`, or the `hello` of a session.
  using ready_fn = std::function<void()>;

  /// `bb` is never null (a single node has a `local_backbone`); `m` must
  /// outlive the core. A topic
  /// without local interest stays subscribed on the backbone for `linger`,
  /// so that leave-and-rejoin does not churn the mesh.
  broker_core(metrics& m, std::shared_ptr<backbone> bb,
              clock::duration linger = std::chrono::seconds(2),
              std::shared_ptr<const namespace_table> ns = nullptr);

  /// Registers a session of `user`; `ready` runs once DMs to `user` reach it
  /// from every node. `actor` is its session actor (the server API reaches
  /// it through sessions_of). Returns false when `sid` is already known.
  bool join(sid_type sid, std::string user, sink_ptr sink, ready_fn ready = {},
            caf::actor actor = {});
  /// Makes a session known to a shard that is not its user's (see
  /// broker_set): it can subscribe here; hello, DMs and the user index stay
  /// with its user's shard. Returns false when `sid` is already known.
  bool attach(sid_type sid, sink_ptr sink);
  /// Removes a session and every subscription it holds.
  void leave(sid_type sid, clock::time_point now = clock::now());
  /// Subscribes a joined session to `ch`; `ready` runs once messages
  /// published anywhere reach it. Returns false when `sid` is unknown.
  bool subscribe(sid_type sid, std::string_view ch, ready_fn ready = {});
  /// Unsubscribes; false when it was not subscribed.
  bool unsubscribe(sid_type sid, std::string_view ch, clock::time_point now = clock::now());

  /// Delivers a `msg` frame to local subscribers of `ch`, then to the
  /// backbone. Returns the number of local sessions that queued it.
  std::size_t publish(std::string_view ch, const frame_ptr& frame);
  /// Delivers a `dm` frame to every local session of `user`, then to the
  /// backbone. Returns the number of local sessions that queued it.
  std::size_t send_to_user(std::string_view user, const frame_ptr& frame);
  /// Delivers a frame to local sessions only, never to the backbone: one
  /// received from another node, or an event this node made for its own
  /// subscribers (presence join/leave).
  std::size_t deliver_local(topic_kind kind, std::string_view name, const frame_ptr& frame);
  /// The backbone reports a subscription live: runs the waiting `ready`s.
  void confirmed(topic_kind kind, std::string_view name);
  /// Unsubscribes from the backbone the topics without local interest for
  /// longer than the linger time.
  void expire(clock::time_point now = clock::now());

  // ---- history channels (ordered delivery; see broker_history.cpp)

  /// Subscribes `sid` to the history channel `ch` with its deliveries held
  /// back until release(): `ready` runs once the subscription is live on
  /// every node, and then the caller reads the channel's position.
  bool subscribe_held(sid_type sid, std::string_view ch, ready_fn ready = {});
  /// The held subscription's position is (ep, off): messages after `off`
  /// are delivered from now on (those held first), earlier ones dropped.
  void set_position(sid_type sid, std::string_view ch, std::string ep, std::uint64_t off);
  /// The session has sent the sub's ack and replay: deliver what was held
  /// after its position and go live. When the stream broke meanwhile the
  /// session gets `resync` instead and is unsubscribed.
  void release(sid_type sid, std::string_view ch);
  /// Drops a held subscription that could not be served.
  void drop_held(sid_type sid, std::string_view ch, clock::time_point now = clock::now());
  /// Delivers the committed message `off` of epoch `ep` of history channel
  /// `ch` to local subscribers, in offset order: repeats are dropped; after
  /// a gap the message waits while the gap is filled from the owner (a
  /// failed fill, or a new epoch, sends `resync` to every subscriber here
  /// and unsubscribes them). With `propagate`, also sends it to the backbone.
  std::size_t deliver_ordered(std::string_view ch, std::string_view ep, std::uint64_t off,
                              const frame_ptr& frame, bool propagate);
  /// Splits what the backbone carries for a history channel ("EP|" + frame).
  static bool split_ordered(const std::string& wire, std::string_view& ep, frame_ptr& frame);
  /// An owner's announcement of its committed top travels on the channel's
  /// topic as "EP|#TERM:TOP" (a frame never starts with '#').
  static std::string encode_top(std::string_view ep, std::uint64_t term, std::uint64_t top);
  /// Reads TERM and TOP from what split_ordered left of an announcement.
  static bool split_top(std::string_view inner, std::uint64_t& term, std::uint64_t& top);

  /// Asks the owner of history channel `ch` for its committed messages of
  /// epoch `ep` after `after`; the answer comes back through fill_done().
  using fill_fn =
      std::function<void(const std::string& ch, const std::string& ep, std::uint64_t after)>;
  /// Without a filler (a single node: no gaps between nodes) a gap resyncs.
  void set_filler(fill_fn f) { fill_ = std::move(f); }
  /// The owner of `ch` (under `term`) announces its committed top `top` in
  /// epoch `ep`: a stream here that is behind fills from the owner, so that
  /// the last message before a quiet spell is not missing until the next.
  void note_top(std::string_view ch, std::string_view ep, std::uint64_t term, std::uint64_t top);
  /// The owner's answer to a fill: `ok` with the committed messages after
  /// `after` (in order), or not (it cannot vouch for them: resync).
  void fill_done(const std::string& ch, const std::string& ep, std::uint64_t after, bool ok,
                 std::vector<frame_ptr> frames);

  /// The history channels with a stream here (local subscribers).
  std::vector<std::string> history_channels() const;

  // ---- the server API (actors/cluster_desk.hpp)

  /// True when `user` has a session joined here.
  bool has_user(std::string_view user) const { return devices_of(user) != nullptr; }
  /// Sessions of `user` joined here.
  std::size_t user_session_count(std::string_view user) const {
    const auto* d = devices_of(user);
    return d == nullptr ? 0 : d->size();
  }
  /// The session actors of `user`'s sessions joined here.
  std::vector<caf::actor> sessions_of(std::string_view user) const;
  /// Asks every session of `user` here to close; returns how many.
  std::size_t close_user(std::string_view user, std::uint16_t code, const std::string& reason);
  /// The channels here whose names start with `prefix` and sort after
  /// `cursor`: the first `limit` of them, sorted, with their subscriber
  /// counts. Returns true when more follow.
  bool channel_page(std::string_view prefix, std::string_view cursor, std::size_t limit,
                    std::vector<std::pair<std::string, std::uint64_t>>& out) const;

  /// Runs when a channel gets its first subscriber on this node (true) or
  /// loses its last (false), and a user its first session or last; for the
  /// cluster's `occupied`/`vacated` and `undelivered`.
  using occupancy_fn = std::function<void(topic_kind kind, std::string_view name, bool held)>;
  void set_occupancy(occupancy_fn f) { occupancy_ = std::move(f); }

  // ---- merged frames (namespaces with merge_ms; see broker_merge.cpp)

  /// Asked to call merge_due(ch, window) after `after` (the shard's timer).
  using merge_timer_fn = std::function<void(std::string_view ch, std::chrono::milliseconds after,
                                            std::uint64_t window)>;
  /// Without a timer (a plain core in a unit test) nothing is merged.
  void set_merge_timer(merge_timer_fn f) { merge_timer_ = std::move(f); }
  /// A reload's namespaces (the same ones but for their reloadable keys:
  /// lossy, max_subscribers, merge_ms, merge_max): the open merge windows
  /// go first, so that no batched session sees a message before one that
  /// was published earlier.
  void set_namespaces(std::shared_ptr<const namespace_table> ns);
  const namespace_table* namespaces() const noexcept { return namespaces_.get(); }
  /// The timer of `window` of channel `ch` is up: its array goes out (a
  /// window sent earlier, full or flushed, is gone and this does nothing).
  void merge_due(std::string_view ch, std::uint64_t window);
  /// Largest array sent ([ws] max_message_bytes); a longer one goes early.
  void set_max_merged_bytes(std::size_t n) noexcept { max_merged_bytes_ = n; }

  /// The sink of session `sid`, or null when it is unknown.
  sink_ptr sink_of(sid_type sid) const;
  /// Asks every session to close with `code` (drain: 1001).
  void close_all(std::uint16_t code, const std::string& reason);

  /// Sessions joined here (attached ones are counted by their user's shard).
  std::size_t session_count() const noexcept { return joined_; }
  std::size_t channel_count() const noexcept { return channels_.topic_count(); }
  std::size_t user_count() const noexcept { return users_.size(); }
  /// Topics subscribed on the backbone (including lingering ones).
  std::size_t backbone_topic_count() const noexcept { return interest_.size(); }
  /// True when `sid` is subscribed to `ch` here.
  bool is_subscribed(sid_type sid, std::string_view ch) const {
    const auto* subs = channels_.find(ch);
    return subs != nullptr && subs->count(sid) != 0;
  }
  /// Subscribers of `ch` on this node.
  std::size_t subscriber_count(std::string_view ch) const;
  /// Channels `sid` is subscribed to.
  std::size_t subscription_count(sid_type sid) const { return channels_.count_of(sid); }

private:
  using devices = std::vector<std::pair<sid_type, frame_sink*>>;
  struct session_rec {
    const std::string* user; // its key in users_ (nodes stay put); null: attached, not joined
    sink_ptr sink;
    caf::actor actor; // joined sessions: the session actor (a handle, 8 bytes)
  };
  // One topic subscribed on the backbone.
  struct interest {
    bool live = false;
    std::vector<ready_fn> waiting;          // until live
    std::optional<clock::time_point> empty; // no local interest since
  };

  template <class Subscribers>
  std::size_t fan_out(const Subscribers* subs, const frame_ptr& frame, bool lossy = false);
  /// A channel's fan-out: through its merge window in a merging namespace.
  std::size_t fan_out_channel(std::string_view ch, const frame_ptr& frame);
  /// Sends `ch`'s window now (before a sink changes, a stream breaks, ...).
  void flush_window(std::string_view ch);
  // A channel's messages waiting for the batched sessions, in order.
  struct merge_window {
    std::uint64_t id = 0; // the timer armed for it names it
    std::vector<frame_ptr> frames;
    std::size_t bytes = 0;
  };
  bool lossy(std::string_view ch) const noexcept {
    return namespaces_ && namespaces_->of_channel(ch).lossy;
  }
  class held_sink;
  struct stream {
    stream() = default;
    stream(std::string e, std::uint64_t l) : ep(std::move(e)), last(l) {}
    std::string ep;
    std::uint64_t last = 0;
    std::uint64_t term = 0;                   // the newest owner term announced
    bool filling = false;                     // a fill is under way
    std::map<std::uint64_t, frame_ptr> ahead; // received past a gap, until it is filled
  };
  std::size_t deliver_next(std::string_view ch, const frame_ptr& frame, std::uint64_t off);
  void drain_ahead(std::string_view ch);
  void request_fill(std::string_view ch, stream& s);
  held_sink* find_held(sid_type sid, std::string_view ch);
  void erase_held(sid_type sid, std::string_view ch);
  void break_stream(std::string_view ch, clock::time_point now);
  void resync(sid_type sid, std::string_view ch, frame_sink& sink, clock::time_point now);
  const devices* devices_of(std::string_view user) const;
  void want(topic_kind kind, std::string_view name, ready_fn ready);
  void unwant(topic_kind kind, std::string_view name, clock::time_point now);
  void update_gauges() noexcept;

  metrics& metrics_;
  std::shared_ptr<backbone> backbone_;
  clock::duration linger_;
  std::shared_ptr<const namespace_table> namespaces_; // null: none (all defaults)
  std::unordered_map<sid_type, session_rec> sessions_;
  topic_registry<frame_sink*> channels_; // values owned by sessions_
  // user -> that user's sessions here: a few each, so a vector (an idle
  // connection's memory counts; a hash map per user cost ~200 bytes more)
  std::unordered_map<std::string, devices, string_hash, std::equal_to<>> users_;
  std::unordered_map<std::string, interest, string_hash, std::equal_to<>> interest_;
  std::deque<std::pair<std::string, clock::time_point>> lingering_;
  // history channels with local subscribers: the last offset delivered
  std::unordered_map<std::string, stream, string_hash, std::equal_to<>> streams_;
  fill_fn fill_;
  occupancy_fn occupancy_;
  merge_timer_fn merge_timer_;
  std::unordered_map<std::string, merge_window, string_hash, std::equal_to<>> windows_;
  std::uint64_t next_window_ = 0;
  std::size_t max_merged_bytes_ = 65536;
  // subscriptions whose deliveries are held (recovering) or filtered (not
  // caught up with their position yet); a few per session at most
  std::unordered_map<sid_type, std::vector<std::pair<std::string, std::shared_ptr<held_sink>>>>
      held_;
  std::size_t joined_ = 0;
  // what this core added to the node's gauges (shards share them)
  std::int64_t gauge_channels_ = 0;
  std::int64_t gauge_users_ = 0;
};

/// Settings of the broker actor.
struct broker_options {
  std::chrono::milliseconds unsubscribe_linger{2000};
  std::shared_ptr<const namespace_table> namespaces; ///< null: none
  history_options history;                           ///< when any namespace keeps history
  /// History kept by an external engine (JetStream) instead of the mesh's
  /// replication (history_service); null: the mesh's.
  std::shared_ptr<history_engine> engine;
  std::size_t max_frame_bytes = 65536; ///< largest presence page ([ws] max_message_bytes)
  /// Told when a channel gets its first subscriber on this node or loses
  /// its last (the node's desk: `occupied`/`vacated`); empty: nobody asks.
  broker_core::occupancy_fn occupancy;
  /// Told of a `send` to a user without a session here (the desk asks the
  /// cluster whether it reached anyone); empty: nobody asks.
  std::function<void(const std::string& user, const frame_ptr& frame)> undelivered;
  /// Webhooks: the presence tables' join/leave; null: none configured.
  std::shared_ptr<event_port> events;
};

/// Spawns one broker actor. Sessions join and leave it by message
/// (atoms::join, atoms::leave); it answers them through their sinks.
caf::actor spawn_broker(caf::actor_system& sys, metrics& m, std::shared_ptr<backbone> bb,
                        broker_options opts = {});

/// The node's broker actors: one, or `[runtime] broker_shards` shards that
/// split the topics by hash, so that fan-out and subscription work can use
/// more than one core. A channel's subscribers and publishes live in the
/// shard of its name, a user's sessions (hello, DMs) in the shard of the
/// user id; a session subscribes in the shards of its channels (attaching
/// there) and leaves every shard at its end.
class broker_set {
public:
  explicit broker_set(std::vector<caf::actor> shards);
  explicit broker_set(caf::actor single) : broker_set(std::vector<caf::actor>{std::move(single)}) {}

  /// The shard that owns topic `name` (a channel name or a user id).
  const caf::actor& owner(std::string_view name) const noexcept;
  const std::vector<caf::actor>& all() const noexcept { return shards_; }

private:
  std::vector<caf::actor> shards_;
};

/// Spawns `n` broker shards (n >= 1) sharing `m` and `bb`.
broker_set spawn_brokers(caf::actor_system& sys, std::size_t n, metrics& m,
                         std::shared_ptr<backbone> bb, broker_options opts = {});

} // namespace wsnode::actors
