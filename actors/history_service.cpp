// The history service's state machine (see history_service.hpp).
//
// Service messages between nodes are "CHANNEL\n" + a JSON object whose "t"
// names it (history_wire.hpp encodes and decodes them):
//   prom  {term}                      -> promr {term, ok, promised, copy?}
//   sync  {term, copy}                -> syncr {term, ok, promised, top}
//   app   {term, off, f, k}           -> appr  {term, ok, off, need, promised}
//   pub   {rid, from, data, key}      -> pubr  {rid, ok, off, error}
//   read  {rid, kind, since?, limit?} -> readr {rid, ok, ep, off, recovered?, f}
//   take  {}   (a hand-over hint: "you rank first for this channel now")
// A copy is {ep, cterm, top, commit, e: [[off, frame, age_ms]], k: [[key, off, age_ms]]}.
#include "actors/history_service.hpp"

#include "actors/history_wire.hpp"
#include "protocol/codec.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <random>
#include <set>

namespace wsnode {

namespace {

using clock = history_service::clock;
using namespace std::chrono_literals;

constexpr auto attempt_timeout = 1000ms; // one try of a remote request
constexpr auto retry_delay = 100ms;
constexpr auto acquire_timeout = 1000ms;
constexpr auto resync_interval = 1000ms;

read_outcome read_failed(std::string why) {
  read_outcome o;
  o.error = std::move(why);
  return o;
}

std::uint64_t fnv1a(std::string_view a, std::string_view b) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(a);
  mix(std::string_view{"\0", 1});
  mix(b);
  return h;
}

} // namespace

std::vector<std::string> rank_nodes(std::string_view ch, std::vector<std::string> nodes) {
  std::sort(nodes.begin(), nodes.end(), [&](const std::string& x, const std::string& y) {
    auto hx = fnv1a(ch, x);
    auto hy = fnv1a(ch, y);
    return hx != hy ? hx > hy : x < y;
  });
  return nodes;
}

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
    std::uint64_t commit = 0;         // offsets up to this are committed
    role r = role::none;
    std::uint64_t term = 0;           // while acquiring or owning
    // acquiring
    std::set<std::string> promisers;
    std::optional<wire::copy> best; // the best copy a promiser sent
    std::uint64_t seen_term = 0;
    clock::time_point acquire_deadline;
    clock::time_point no_acquire_before;
    // owning
    bool ready = false; // replicas synced once since the acquisition
    std::uint64_t rebroadcast_from = 0;
    std::vector<replica> replicas;
    std::deque<pending_pub> inflight;
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

  std::vector<std::string> live_nodes() const {
    std::vector<std::string> all = live;
    all.push_back(opts.node_id);
    return all;
  }

  std::string first_live(std::string_view ch) const { return rank_nodes(ch, live_nodes()).front(); }

  chan& chan_of(const std::string& ch) {
    auto it = chans.find(ch);
    if (it == chans.end()) {
      it = chans.emplace(ch, chan{}).first;
      it->second.name = ch;
      it->second.ns = &ns->of_channel(ch);
    }
    return it->second;
  }

  history_log::limits limits_of(const chan& c) const {
    history_log::limits l;
    l.size = c.ns->history_size;
    l.ttl = c.ns->history_ttl;
    l.key_window = opts.idempotency_window;
    return l;
  }

  void send(const std::string& node, const chan& c, const boost::json::object& msg) {
    hooks.send(node, wire::payload(c.name, msg));
  }

  wire::copy copy_of(const chan& c, clock::time_point now) const {
    wire::copy cp;
    cp.ep = c.log->epoch();
    cp.cterm = c.cterm;
    cp.top = c.log->top();
    cp.commit = c.commit;
    for (const auto& e : c.log->entries())
      cp.entries.push_back({e.off, e.frame, now - e.at});
    c.log->for_each_key([&](std::string_view k, std::uint64_t off, clock::time_point at) {
      cp.keys.push_back({std::string{k}, off, now - at});
    });
    return cp;
  }

  void adopt(chan& c, wire::copy cp, clock::time_point now) {
    if (!c.log)
      c.log = std::make_unique<history_log>(cp.ep, limits_of(c));
    std::deque<history_log::entry> entries;
    for (auto& e : cp.entries)
      entries.push_back({e.off, std::move(e.frame), now - e.age});
    c.log->reset(std::move(cp.ep), cp.top, std::move(entries));
    for (auto& k : cp.keys)
      c.log->remember_key(std::move(k.key), k.off, now - k.age);
    c.commit = std::min(cp.commit, cp.top);
  }

  // ---------------------------------------------------------------- requests

  // may_forward: the request started here (a session or the API), so it
  // may go to the owner; one from another node is answered "retry" instead.
  void publish(const std::string& ch, std::string from, std::string data, std::string key,
               publish_done done, clock::time_point deadline, bool may_forward) {
    auto& c = chan_of(ch);
    if (c.r == role::owner)
      return serve_publish(c, from, data, key, std::move(done), deadline);
    auto first = first_live(ch);
    if (first != opts.node_id) {
      if (!may_forward)
        return done({false, 0, "retry"});
      // a key makes the owner drop a repeat of this request (a re-send
      // after a lost reply); the client's own key, or one of ours
      if (key.empty())
        key = "~" + opts.node_id + "." + std::to_string(next_rid);
      boost::json::object body{{"t", "pub"}, {"from", from}, {"data", data}, {"key", key}};
      return remote(ch, true, std::move(body), std::move(done), {}, deadline, first);
    }
    auto shared_done = std::make_shared<publish_done>(std::move(done));
    c.waiting.push_back(
        {deadline,
         [this, ch, from, data, key, shared_done, deadline, may_forward] {
           publish(ch, from, data, key, std::move(*shared_done), deadline, may_forward);
         },
         [shared_done](std::string why) { (*shared_done)({false, 0, std::move(why)}); }});
    maybe_acquire(c, clock::now());
  }

  void read(const std::string& ch, read_request req, read_done done, clock::time_point deadline,
            bool may_forward) {
    auto& c = chan_of(ch);
    if (c.r == role::owner && c.ready)
      return done(serve_read(c, req));
    auto first = first_live(ch);
    if (c.r != role::owner && first != opts.node_id) {
      if (!may_forward)
        return done(read_failed("retry"));
      return remote(ch, false, wire::encode_read(req), {}, std::move(done), deadline, first);
    }
    auto shared_done = std::make_shared<read_done>(std::move(done));
    c.waiting.push_back({deadline,
                         [this, ch, req, shared_done, deadline, may_forward] {
                           read(ch, req, std::move(*shared_done), deadline, may_forward);
                         },
                         [shared_done](std::string why) {
                           (*shared_done)(read_failed(std::move(why)));
                         }});
    maybe_acquire(c, clock::now());
  }

  void serve_publish(chan& c, const std::string& from, const std::string& data,
                     const std::string& key, publish_done done, clock::time_point deadline) {
    auto now = clock::now();
    if (!key.empty()) {
      if (auto off = c.log->find_key(key)) {
        if (*off <= c.commit)
          return done({true, *off, {}});
        for (auto& p : c.inflight)
          if (p.off == *off) {
            p.done.push_back(std::move(done));
            return;
          }
      }
    }
    auto off = c.log->top() + 1;
    auto frame = make_frame(protocol::encode_msg(c.name, from, off, data));
    c.log->append(frame, key, now);
    c.inflight.push_back({off, frame, {}, deadline});
    c.inflight.back().done.push_back(std::move(done));
    for (auto& r : c.replicas)
      if (r.synced)
        send(r.node, c, wire::encode_append(c.term, off, *frame, key));
    try_commit(c);
  }

  read_outcome serve_read(const chan& c, const read_request& req) const {
    read_outcome o;
    o.ok = true;
    o.ep = c.log->epoch();
    o.off = c.commit;
    if (req.kind == read_request::purpose::subscribe) {
      if (req.since_ep) {
        o.recovered = *req.since_ep == o.ep &&
                      c.log->read_since(req.since_off, c.ns->recovery_max, c.commit, o.frames);
        if (!*o.recovered)
          o.frames.clear();
      }
      return o;
    }
    auto limit = req.limit.value_or(c.ns->history_size);
    std::optional<std::uint64_t> after;
    if (req.since_ep && *req.since_ep == o.ep)
      after = req.since_off;
    c.log->newest(limit, c.commit, o.frames, after);
    return o;
  }

  void remote(const std::string& ch, bool is_pub, boost::json::object body, publish_done pd,
              read_done rd, clock::time_point deadline, const std::string& target) {
    auto rid = next_rid++;
    remote_req r{ch, is_pub, boost::json::serialize(body), std::move(pd), std::move(rd), target,
                 deadline, clock::now() + attempt_timeout};
    send_request(rid, r);
    requests.emplace(rid, std::move(r));
  }

  void send_request(std::uint64_t rid, const remote_req& r) {
    auto body = boost::json::parse(r.body).as_object();
    body["rid"] = rid;
    hooks.send(r.target, wire::payload(r.ch, body));
  }

  // A remote request is answered "retry", timed out or its target died: try
  // again shortly, at whoever ranks first then (maybe this node).
  void retry_later(std::uint64_t rid, clock::time_point now) {
    auto it = requests.find(rid);
    if (it != requests.end())
      it->second.resend_at = std::min(it->second.resend_at, now + retry_delay);
  }

  void resend(std::uint64_t rid, clock::time_point now) {
    auto it = requests.find(rid);
    auto& r = it->second;
    auto first = first_live(r.ch);
    if (first == opts.node_id) { // route it here now
      auto req = std::move(r);
      requests.erase(it);
      auto body = boost::json::parse(req.body).as_object();
      if (req.is_pub)
        publish(req.ch, wire::str(body, "from"), wire::str(body, "data"), wire::str(body, "key"),
                std::move(req.pdone), req.deadline, true);
      else
        read(req.ch, wire::decode_read(body), std::move(req.rdone), req.deadline, true);
      return;
    }
    r.target = first;
    r.resend_at = now + attempt_timeout;
    send_request(rid, r);
  }

  // ---------------------------------------------------------------- ownership

  void maybe_acquire(chan& c, clock::time_point now) {
    if (c.r != role::none || now < c.no_acquire_before)
      return;
    acquire(c, now, std::max({c.promised, c.cterm, c.seen_term}) + 1);
  }

  void acquire(chan& c, clock::time_point now, std::uint64_t term) {
    c.r = role::acquiring;
    c.term = term;
    c.promised = std::max(c.promised, term);
    c.promisers = {opts.node_id};
    c.best.reset();
    c.acquire_deadline = now + acquire_timeout;
    for (const auto& p : live)
      send(p, c, boost::json::object{{"t", "prom"}, {"term", term}});
    if (c.promisers.size() >= majority(opts.cluster_size))
      finish_acquire(c, now);
  }

  void finish_acquire(chan& c, clock::time_point now) {
    bool had_copy = c.log != nullptr;
    bool theirs_better =
        c.best && (!c.log || std::pair{c.best->cterm, c.best->top} >
                                 std::pair{c.cterm, c.log->top()});
    std::uint64_t commit_known = c.commit;
    if (theirs_better) {
      commit_known = c.best->commit;
      adopt(c, std::move(*c.best), now);
    }
    c.best.reset();
    if (!c.log) { // no copy on a majority: a new epoch
      c.log = std::make_unique<history_log>(make_epoch(), limits_of(c));
      commit_known = 0;
      bump(m.history_new_epochs, 1);
    } else if (had_copy || theirs_better) {
      bump(m.history_takeovers, 1);
    }
    c.cterm = c.term;
    c.r = role::owner;
    c.ready = false;
    c.rebroadcast_from = commit_known;
    c.commit = c.log->top(); // everything the best copy holds is kept
    c.replicas.clear();
    c.inflight.clear();
    spdlog::debug("history: {} owns {} (term {}, epoch {}, top {})", opts.node_id, c.name, c.term,
                  c.log->epoch(), c.log->top());
    ensure_replicas(c, now);
  }

  void step_down(chan& c, std::uint64_t newer) {
    c.seen_term = std::max(c.seen_term, newer);
    if (c.r == role::none)
      return;
    if (c.r == role::owner)
      bump(m.history_handovers, 1);
    c.r = role::none;
    c.ready = false;
    c.replicas.clear();
    for (auto& p : c.inflight)
      for (auto& d : p.done)
        d({false, 0, "the channel's owner changed; retry"});
    c.inflight.clear();
    c.no_acquire_before = clock::now() + 200ms + std::chrono::milliseconds(jitter() % 200);
    // queued requests go where the channel is owned now
    auto waiting = std::move(c.waiting);
    c.waiting.clear();
    for (auto& w : waiting)
      w.run();
  }

  void ensure_replicas(chan& c, clock::time_point now) {
    auto ranked = rank_nodes(c.name, live_nodes());
    std::vector<std::string> want;
    for (const auto& n : ranked)
      if (n != opts.node_id && want.size() < replicas_needed())
        want.push_back(n);
    std::erase_if(c.replicas, [&](const replica& r) {
      return std::find(want.begin(), want.end(), r.node) == want.end();
    });
    for (const auto& n : want)
      if (std::none_of(c.replicas.begin(), c.replicas.end(),
                       [&](const replica& r) { return r.node == n; })) {
        c.replicas.push_back({n, false, 0, now});
        send_sync(c, c.replicas.back(), now);
      }
    try_commit(c);
  }

  void send_sync(chan& c, replica& r, clock::time_point now) {
    r.sync_sent = now;
    auto msg = wire::encode_copy(copy_of(c, now));
    msg["t"] = "sync";
    msg["term"] = c.term;
    send(r.node, c, msg);
  }

  void try_commit(chan& c) {
    if (c.r != role::owner)
      return;
    std::uint64_t upto = c.log->top();
    std::size_t synced = 0;
    for (const auto& r : c.replicas)
      if (r.synced) {
        ++synced;
        upto = std::min(upto, r.acked);
      }
    if (synced < replicas_needed())
      return; // not enough copies: nothing new is acknowledged
    if (!c.ready) {
      c.ready = true;
      for (const auto& e : c.log->entries()) // the old owner may not have sent these
        if (e.off > c.rebroadcast_from && e.off <= c.commit)
          hooks.committed(c.name, c.log->epoch(), e.off, e.frame);
      auto waiting = std::move(c.waiting);
      c.waiting.clear();
      for (auto& w : waiting)
        w.run();
    }
    while (!c.inflight.empty() && c.inflight.front().off <= upto) {
      auto p = std::move(c.inflight.front());
      c.inflight.pop_front();
      c.commit = p.off;
      hooks.committed(c.name, c.log->epoch(), p.off, p.frame);
      for (auto& d : p.done)
        d({true, p.off, {}});
    }
  }

  std::uint64_t jitter() {
    static thread_local std::mt19937 rng{std::random_device{}()};
    return rng();
  }

  // ---------------------------------------------------------------- messages

  void on_message(const std::string& from, std::string_view payload) {
    auto parsed = wire::parse(payload);
    if (!parsed) {
      bump(m.history_bad_messages, 1);
      return;
    }
    auto& [ch, msg] = *parsed;
    if (!ns->of_channel(ch).has_history())
      return;
    auto& c = chan_of(ch);
    auto t = wire::str(msg, "t");
    auto now = clock::now();
    auto term = wire::num(msg, "term");
    if (t == "prom") {
      boost::json::object reply{{"t", "promr"}, {"term", term}};
      if (term > c.promised) {
        c.promised = term;
        if (c.r != role::none && c.term < term)
          step_down(c, term);
        reply["ok"] = true;
        if (c.log)
          reply["copy"] = wire::encode_copy(copy_of(c, now));
      } else {
        reply["ok"] = false;
        reply["promised"] = c.promised;
      }
      return send(from, c, reply);
    }
    if (t == "promr") {
      if (c.r != role::acquiring || term != c.term)
        return;
      if (!wire::flag(msg, "ok")) {
        auto p = wire::num(msg, "promised");
        c.seen_term = std::max(c.seen_term, p);
        if (p >= c.term) // someone is ahead: try again above it
          acquire(c, now, p + 1);
        return;
      }
      c.promisers.insert(from);
      if (auto* cp = msg.if_contains("copy")) {
        auto theirs = wire::decode_copy(cp->as_object());
        if (!c.best || std::pair{theirs.cterm, theirs.top} > std::pair{c.best->cterm, c.best->top})
          c.best = std::move(theirs);
      }
      if (c.promisers.size() >= majority(opts.cluster_size))
        finish_acquire(c, now);
      return;
    }
    if (t == "sync") {
      boost::json::object reply{{"t", "syncr"}, {"term", term}};
      if (term < c.promised) {
        reply["ok"] = false;
        reply["promised"] = c.promised;
        return send(from, c, reply);
      }
      if (c.r != role::none && c.term < term)
        step_down(c, term);
      c.promised = term;
      adopt(c, wire::decode_copy(msg), now);
      c.cterm = term;
      reply["ok"] = true;
      reply["top"] = c.log->top();
      return send(from, c, reply);
    }
    if (t == "syncr" || t == "appr") {
      if (!wire::flag(msg, "ok") && wire::num(msg, "promised") > c.term)
        return step_down(c, wire::num(msg, "promised"));
      if (c.r != role::owner || term != c.term)
        return;
      auto r = std::find_if(c.replicas.begin(), c.replicas.end(),
                            [&](const replica& x) { return x.node == from; });
      if (r == c.replicas.end())
        return;
      if (t == "syncr" && wire::flag(msg, "ok")) {
        r->synced = true;
        r->acked = wire::num(msg, "top");
        for (const auto& e : c.log->entries()) // what came after the copy
          if (e.off > r->acked)
            send(r->node, c, wire::encode_append(c.term, e.off, *e.frame, {}));
      } else if (t == "appr" && wire::flag(msg, "ok")) {
        r->acked = std::max(r->acked, wire::num(msg, "off"));
      } else if (t == "appr" && wire::flag(msg, "need") && r->synced) {
        r->synced = false;
        send_sync(c, *r, now);
      }
      return try_commit(c);
    }
    if (t == "app") {
      boost::json::object reply{{"t", "appr"}, {"term", term}};
      auto off = wire::num(msg, "off");
      if (term < c.promised) {
        reply["ok"] = false;
        reply["promised"] = c.promised;
      } else if (term == c.cterm && c.log && off == c.log->top() + 1) {
        c.log->append(make_frame(wire::str(msg, "f")), wire::str(msg, "k"), now);
        reply["ok"] = true;
        reply["off"] = off;
      } else if (term == c.cterm && c.log && off <= c.log->top()) {
        reply["ok"] = true; // a repeat
        reply["off"] = off;
      } else {
        reply["ok"] = false;
        reply["need"] = true;
      }
      return send(from, c, reply);
    }
    if (t == "pub") {
      auto rid = wire::num(msg, "rid");
      publish(
          ch, wire::str(msg, "from"), wire::str(msg, "data"), wire::str(msg, "key"),
          [this, from, rid, ch](publish_outcome o) {
            boost::json::object reply{
                {"t", "pubr"}, {"rid", rid}, {"ok", o.ok}, {"off", o.off}, {"error", o.error}};
            hooks.send(from, wire::payload(ch, reply));
          },
          now + opts.timeout, false);
      return;
    }
    if (t == "read") {
      auto rid = wire::num(msg, "rid");
      read(
          ch, wire::decode_read(msg),
          [this, from, rid, ch](read_outcome o) {
            auto reply = wire::encode_read_outcome(o);
            reply["t"] = "readr";
            reply["rid"] = rid;
            hooks.send(from, wire::payload(ch, reply));
          },
          now + opts.timeout, false);
      return;
    }
    if (t == "pubr" || t == "readr") {
      auto it = requests.find(wire::num(msg, "rid"));
      if (it == requests.end())
        return;
      bool ok = wire::flag(msg, "ok");
      if (!ok && wire::str(msg, "error") == "retry")
        return retry_later(it->first, now);
      auto r = std::move(it->second);
      requests.erase(it);
      if (r.is_pub)
        r.pdone({ok, wire::num(msg, "off"), wire::str(msg, "error")});
      else
        r.rdone(wire::decode_read_outcome(msg));
      return;
    }
    if (t == "take") {
      if (first_live(ch) == opts.node_id)
        maybe_acquire(c, now);
      return;
    }
  }

  void on_view(std::vector<std::string> peers) {
    std::sort(peers.begin(), peers.end());
    if (peers == live)
      return;
    live = std::move(peers);
    auto now = clock::now();
    for (auto& [name, c] : chans) {
      if (c.r == role::owner) {
        ensure_replicas(c, now);
        auto first = first_live(name);
        if (first != opts.node_id)
          send(first, c, boost::json::object{{"t", "take"}});
      } else if (c.r == role::none && c.log && first_live(name) == opts.node_id) {
        maybe_acquire(c, now); // take over from an owner that is gone
      }
    }
    for (auto& [rid, r] : requests)
      if (std::find(live.begin(), live.end(), r.target) == live.end())
        r.resend_at = std::min(r.resend_at, now);
  }

  void tick(clock::time_point now) {
    std::vector<std::uint64_t> due;
    for (auto it = requests.begin(); it != requests.end();) {
      if (now >= it->second.deadline) {
        auto r = std::move(it->second);
        it = requests.erase(it);
        if (r.is_pub)
          r.pdone({false, 0, "channel history unavailable"});
        else
          r.rdone(read_failed("channel history unavailable"));
        continue;
      }
      if (now >= it->second.resend_at)
        due.push_back(it->first);
      ++it;
    }
    for (auto rid : due)
      resend(rid, now);
    bool expire = now - last_expire >= 1s;
    if (expire)
      last_expire = now;
    for (auto& [name, c] : chans) {
      if (expire && c.log)
        c.log->expire(now);
      std::erase_if(c.waiting, [&](waiting_op& w) {
        if (now < w.deadline)
          return false;
        w.fail("channel history unavailable");
        return true;
      });
      if (c.r == role::acquiring && now >= c.acquire_deadline)
        acquire(c, now, std::max({c.promised, c.seen_term}) + 1);
      else if (c.r == role::none && !c.waiting.empty())
        maybe_acquire(c, now);
      if (c.r == role::owner) {
        for (auto& r : c.replicas)
          if (!r.synced && now - r.sync_sent >= resync_interval)
            send_sync(c, r, now);
        for (auto& p : c.inflight)
          if (now >= p.deadline && !p.done.empty()) {
            for (auto& d : p.done)
              d({false, 0, "not enough nodes hold the channel's history"});
            p.done.clear();
          }
      }
    }
    update_gauges();
  }

  void update_gauges() {
    std::int64_t channels = 0;
    std::int64_t messages = 0;
    std::int64_t bytes = 0;
    for (const auto& [name, c] : chans)
      if (c.log) {
        ++channels;
        messages += static_cast<std::int64_t>(c.log->size());
        bytes += static_cast<std::int64_t>(c.log->bytes());
      }
    bump(m.history_channels, channels - gauge_channels);
    bump(m.history_messages, messages - gauge_messages);
    bump(m.history_bytes, bytes - gauge_bytes);
    gauge_channels = channels;
    gauge_messages = messages;
    gauge_bytes = bytes;
  }

  history_options opts;
  std::shared_ptr<const namespace_table> ns;
  metrics& m;
  history_hooks hooks;
  std::vector<std::string> live; // peers, sorted
  std::unordered_map<std::string, chan> chans;
  std::unordered_map<std::uint64_t, remote_req> requests;
  std::uint64_t next_rid = 1;
  clock::time_point last_expire{};
  std::int64_t gauge_channels = 0;
  std::int64_t gauge_messages = 0;
  std::int64_t gauge_bytes = 0;
};

history_service::history_service(history_options opts, std::shared_ptr<const namespace_table> ns,
                                 metrics& m, history_hooks hooks)
  : impl_(std::make_unique<impl>(std::move(opts), std::move(ns), m, std::move(hooks))) {}

history_service::~history_service() = default;

void history_service::publish(const std::string& ch, std::string from, std::string data,
                              std::string key, publish_done done) {
  impl_->publish(ch, std::move(from), std::move(data), std::move(key), std::move(done),
                 clock::now() + impl_->opts.timeout, true);
}

void history_service::read(const std::string& ch, read_request req, read_done done) {
  impl_->read(ch, std::move(req), std::move(done), clock::now() + impl_->opts.timeout, true);
}

void history_service::on_message(const std::string& from, std::string_view payload) {
  impl_->on_message(from, payload);
}

void history_service::on_view(std::vector<std::string> live_peers) {
  impl_->on_view(std::move(live_peers));
}

void history_service::tick(clock::time_point now) {
  impl_->tick(now);
}

std::size_t history_service::channel_count() const noexcept {
  return static_cast<std::size_t>(impl_->gauge_channels);
}

std::size_t history_service::owned_count() const noexcept {
  std::size_t n = 0;
  for (const auto& [name, c] : impl_->chans)
    if (c.r == impl::role::owner)
      ++n;
  return n;
}

const std::string& history_service::first_live(std::string_view ch) const {
  thread_local std::string out;
  out = impl_->first_live(ch);
  return out;
}

} // namespace wsnode
