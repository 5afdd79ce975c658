// The inside of history_service (see history/service.hpp): one state
// machine whose parts live in history/service.cpp (requests, routing),
// history/ownership.cpp (acquisition, replicas, commits) and
// history/messages.cpp (the messages between nodes, views, timers).
// Private to those files.
#pragma once

#include "actors/history/service.hpp"
#include "actors/history/term_store.hpp"
#include "actors/history/wire.hpp"

#include <chrono>
#include <deque>
#include <set>

namespace wsnode::actors {

namespace history_detail {
using namespace std::chrono_literals;
inline constexpr auto attempt_timeout = 500ms; // one try of a remote request
inline constexpr auto retry_delay = 100ms;
inline constexpr auto acquire_timeout = 400ms; // promises lost to a link not up yet: ask again soon
inline constexpr auto resync_interval = 1000ms;

inline read_outcome read_failed(std::string why) {
  read_outcome o;
  o.error = std::move(why);
  return o;
}
} // namespace history_detail

struct history_service::impl {
  enum class role : std::uint8_t { none, acquiring, owner };

  struct replica {
    std::string node;
    bool synced = false;
    std::uint64_t acked = 0;
    clock::time_point sync_sent;
  };
  struct pending_pub {
    std::uint64_t off;
    frame_ptr frame;
    std::vector<publish_done> done;
    clock::time_point deadline;
  };
  struct pending_read {
    read_request req;
    read_done done;
    clock::time_point deadline;
    bool may_forward;
  };
  struct waiting_op {
    clock::time_point deadline;
    std::function<void()> run;
    std::function<void(std::string)> fail;
  };
  struct chan {
    std::string name;
    const namespace_options* ns = nullptr;
    std::unique_ptr<history_log> log; // null: no copy here
    std::uint64_t cterm = 0;          // term of the owner that last wrote the copy
    std::uint64_t promised = 0;       // no appends or copies of older terms
    std::string promised_to;          // the node `promised` went to
    clock::time_point promised_at{};  // when that node last showed it owns the channel
    std::uint64_t commit = 0;         // offsets up to this are committed
    role r = role::none;
    std::uint64_t term = 0; // while acquiring or owning
    // acquiring
    std::set<std::string> promisers;
    std::optional<wire::copy> best; // the best copy a promiser sent
    std::uint64_t seen_term = 0;
    clock::time_point acquire_deadline;
    clock::time_point no_acquire_before;
    // owning
    bool ready = false;                 // replicas synced once since the acquisition
    clock::time_point last_commit_at{}; // announce the top until tail_window after
    std::uint64_t rebroadcast_from = 0;
    std::vector<replica> replicas;
    std::deque<pending_pub> inflight;
    // reads waiting for a majority to confirm the ownership
    std::vector<pending_read> reads_round; // in the round under way
    std::vector<pending_read> reads_next;  // arrived since: the next round
    std::uint64_t chk_seq = 0;
    std::set<std::string> chk_ok;
    clock::time_point chk_sent;
    // until this node owns the channel
    std::vector<waiting_op> waiting;
  };
  struct remote_req {
    std::string ch;
    bool is_pub = false;
    std::string body; // the request's JSON minus rid (re-sent as is)
    publish_done pdone;
    read_done rdone;
    std::string target;
    clock::time_point deadline;
    clock::time_point resend_at;
  };

  impl(history_options o, std::shared_ptr<const namespace_table> n, metrics& mm, history_hooks h)
    : opts(std::move(o)), ns(std::move(n)), m(mm), hooks(std::move(h)) {}

  // ---------------------------------------------------------------- helpers

  std::size_t replicas_needed() const { return majority(opts.cluster_size) - 1; }

  // Whether this node's promise counts towards an acquisition's majority:
  // it holds a copy, or it has been up long enough (fresh_window) that the
  // owners of its channels have copied them to it since it (re)started. A
  // node that restarted comes back empty; counting its empty promise could
  // let a majority without any copy, or with a stale one, form while the
  // channel's real replica is alive (the chaos test found exactly that).
  bool vouches(const chan& c, clock::time_point now) const {
    return c.log != nullptr || opts.cluster_size == 1 || now - started >= opts.fresh_window;
  }

  std::vector<std::string> live_nodes() const;

  std::string first_live(std::string_view ch) const { return rank_nodes(ch, live_nodes()).front(); }

  chan& chan_of(const std::string& ch);

  history_log::limits limits_of(const chan& c) const;

  void send(const std::string& node, const chan& c, const boost::json::object& msg);

  wire::copy copy_of(const chan& c, clock::time_point now) const;

  void adopt(chan& c, wire::copy cp, clock::time_point now);

  // ---------------------------------------------------------------- requests

  // may_forward: the request started here (a session or the API), so it
  // may go to the owner; one from another node is answered "retry" instead.
  void publish(const std::string& ch, std::string from, std::string data, std::string key,
               publish_done done, clock::time_point deadline, bool may_forward);

  void read(const std::string& ch, read_request req, read_done done, clock::time_point deadline,
            bool may_forward);

  void serve_publish(chan& c, const std::string& from, const std::string& data,
                     const std::string& key, publish_done done, clock::time_point deadline);

  read_outcome serve_read(const chan& c, const read_request& req) const;

  // Confirms with a majority that this node still owns `c`, then answers
  // the reads that arrived before the round started.
  void start_check(chan& c, clock::time_point now);
  void finish_check(chan& c, clock::time_point now);
  // Reads waiting on `c` go where the channel is owned now.
  void reroute_reads(chan& c);

  // Whether a promise of a newer term to `from` must be refused: the node
  // this one promised to is alive and active (see history/service.hpp).
  bool holds_for_other(const chan& c, const std::string& from, clock::time_point now) const;

  void remote(const std::string& ch, bool is_pub, boost::json::object body, publish_done pd,
              read_done rd, clock::time_point deadline, const std::string& target);

  void send_request(std::uint64_t rid, const remote_req& r);

  // A remote request is answered "retry", timed out or its target died: try
  // again shortly, at whoever ranks first then (maybe this node).
  void retry_later(std::uint64_t rid, clock::time_point now);

  void resend(std::uint64_t rid, clock::time_point now);

  // ---------------------------------------------------------------- ownership

  void maybe_acquire(chan& c, clock::time_point now);

  void acquire(chan& c, clock::time_point now, std::uint64_t term);

  void finish_acquire(chan& c, clock::time_point now);

  void step_down(chan& c, std::uint64_t newer);

  // An acquisition stops: another node ranks first now. What waited for
  // it goes there.
  void give_up_acquire(chan& c);

  void ensure_replicas(chan& c, clock::time_point now);

  void send_sync(chan& c, replica& r, clock::time_point now);

  void try_commit(chan& c);

  std::uint64_t jitter();

  // ---------------------------------------------------------------- messages

  void on_message(const std::string& from, std::string_view payload);

  void on_view(std::vector<std::string> peers);
  void on_restart(const std::string& node);

  void tick(clock::time_point now);

  void update_gauges();

  history_options opts;
  clock::time_point started = clock::now();
  std::shared_ptr<const namespace_table> ns;
  metrics& m;
  history_hooks hooks;
  std::vector<std::string> live; // peers, sorted
  std::unordered_map<std::string, chan> chans;
  std::unordered_map<std::uint64_t, remote_req> requests;
  std::uint64_t next_rid = 1;
  std::uint64_t next_chk = 1;
  term_store terms{opts.state_file, opts.term_floor};
  clock::time_point last_expire{};
  std::int64_t gauge_channels = 0;
  std::int64_t gauge_messages = 0;
  std::int64_t gauge_bytes = 0;
};

} // namespace wsnode::actors
