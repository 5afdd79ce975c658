// The history service's messages between nodes, views and timers.
//
// Service messages between nodes are "CHANNEL\n" + a JSON object whose "t"
// names it (history/wire.hpp encodes and decodes them):
//   prom  {term}                      -> promr {term, ok, promised, copy?}
//   sync  {term, copy}                -> syncr {term, ok, promised, top}
//   app   {term, off, f, k}           -> appr  {term, ok, off, need, promised}
//   pub   {rid, from, data, key}      -> pubr  {rid, ok, off, error}
//   read  {rid, kind, since?, limit?} -> readr {rid, ok, ep, off, recovered?, f}
//   chk   {term, seq}                 -> chkr  {term, seq, ok, promised}
//   take  {}   (a hand-over hint: "you rank first for this channel now")
// A copy is {ep, cterm, top, commit, e: [[off, frame, age_ms]], k: [[key, off, age_ms]]}.
#include "actors/history/service_impl.hpp"

#include "protocol/codec.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

namespace wsnode::actors {

using clock = history_service::clock;
using namespace history_detail;

void history_service::impl::on_message(const std::string& from, std::string_view payload) {
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
    if (term > c.promised && !holds_for_other(c, from, now)) {
      if (!terms.reserve(term))
        return; // not durable: no answer (the acquirer times out)
      c.promised = term;
      c.promised_to = from;
      c.promised_at = now;
      if (c.r != role::none && c.term < term)
        step_down(c, term);
      reply["ok"] = true;
      if (c.log)
        reply["copy"] = wire::encode_copy(copy_of(c, now));
      else if (!vouches(c, now)) { // started too recently to say it holds no copy
        reply["fresh"] = true;
        reply["fresh_ms"] =
            std::chrono::duration_cast<std::chrono::milliseconds>(started + opts.fresh_window - now)
                .count();
      }
    } else {
      spdlog::debug("history: {} refuses {} term {} of {} (promised {} to {})", opts.node_id, from,
                    term, ch, c.promised, c.promised_to);
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
    if (!wire::flag(msg, "fresh")) // a vote that counts towards the majority
      c.promisers.insert(from);
    else // try again as soon as it can vouch, not a whole acquire_timeout later
      c.acquire_deadline =
          std::min(c.acquire_deadline, now +
                                           std::chrono::milliseconds(std::min<std::uint64_t>(
                                               wire::num(msg, "fresh_ms"), 10000)) +
                                           20ms);
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
    if (!terms.reserve(term)) {
      reply["ok"] = false;
      reply["promised"] = c.promised;
      return send(from, c, reply);
    }
    if (c.r != role::none && c.term < term)
      step_down(c, term);
    c.promised = term;
    c.promised_to = from;
    c.promised_at = now;
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
    if (wire::flag(msg, "ok"))
      c.promised_at = now; // a replica still follows this owner
    if (t == "syncr" && wire::flag(msg, "ok")) {
      r->synced = true;
      r->acked = wire::num(msg, "top");
      // what came after the copy, with its keys (a rare path: a few entries)
      std::unordered_map<std::uint64_t, std::string> keys;
      c.log->for_each_key([&](std::string_view k, std::uint64_t off, clock::time_point) {
        if (off > r->acked)
          keys[off] = std::string{k};
      });
      for (const auto& e : c.log->entries())
        if (e.off > r->acked)
          send(r->node, c, wire::encode_append(c.term, e.off, *e.frame, keys[e.off], c.commit));
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
      if (from == c.promised_to)
        c.promised_at = now;
      c.log->append(make_frame(wire::str(msg, "f")), wire::str(msg, "k"), now);
      c.commit = std::max(c.commit, std::min(wire::num(msg, "commit"), c.log->top()));
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
  if (t == "chk") { // does this node still back `term`'s owner?
    bool ok = term >= c.promised;
    if (ok && from == c.promised_to)
      c.promised_at = now;
    return send(from, c,
                boost::json::object{{"t", "chkr"},
                                    {"term", term},
                                    {"seq", wire::num(msg, "seq")},
                                    {"ok", ok},
                                    {"promised", c.promised}});
  }
  if (t == "chkr") {
    if (!wire::flag(msg, "ok") && wire::num(msg, "promised") > c.term)
      return step_down(c, wire::num(msg, "promised")); // replaced: the reads go elsewhere
    if (c.r != role::owner || term != c.term || wire::num(msg, "seq") != c.chk_seq ||
        c.reads_round.empty() || !wire::flag(msg, "ok"))
      return;
    c.chk_ok.insert(from);
    if (c.chk_ok.size() + 1 >= majority(opts.cluster_size))
      finish_check(c, now);
    return;
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

void history_service::impl::on_restart(const std::string& node) {
  // it lost its copies: the channels it replicates for us get them again
  auto now = clock::now();
  for (auto& [name, c] : chans)
    if (c.r == role::owner)
      for (auto& r : c.replicas)
        if (r.node == node) {
          r.synced = false;
          send_sync(c, r, now);
        }
}

void history_service::impl::on_view(std::vector<std::string> peers) {
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
    } else if (c.r == role::acquiring && first_live(name) != opts.node_id) {
      give_up_acquire(c); // a node that ranks before this one is back (or was not seen yet)
    }
  }
  for (auto& [rid, r] : requests)
    if (std::find(live.begin(), live.end(), r.target) == live.end())
      r.resend_at = std::min(r.resend_at, now);
}

void history_service::impl::tick(clock::time_point now) {
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
    for (auto* reads : {&c.reads_round, &c.reads_next})
      std::erase_if(*reads, [&](pending_read& r) {
        if (now < r.deadline)
          return false;
        r.done(read_failed("channel history unavailable"));
        return true;
      });
    if (c.r == role::owner && now - c.chk_sent >= attempt_timeout &&
        !(c.reads_round.empty() && c.reads_next.empty()))
      start_check(c, now); // a lost confirmation: ask again
    if (c.r == role::acquiring && now >= c.acquire_deadline) {
      if (first_live(name) == opts.node_id)
        acquire(c, now, std::max({c.promised, c.seen_term}) + 1);
      else
        give_up_acquire(c); // it ranks first no more (this node saw nobody when it began)
    } else if (c.r == role::none && !c.waiting.empty())
      maybe_acquire(c, now);
    if (c.r == role::owner) {
      if (c.ready && hooks.announce && now - c.last_commit_at <= opts.tail_window)
        hooks.announce(c.name, c.log->epoch(), c.term, c.commit);
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

void history_service::impl::update_gauges() {
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

} // namespace wsnode::actors
