// The history service's ownership of channels: acquisition with promises
// (terms), take-over of the best copy, replicas and commits, stepping down
// (see history/service.hpp for the rules).
#include "actors/history/service_impl.hpp"

#include "protocol/codec.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

namespace wsnode::actors {

using clock = history_service::clock;
using namespace history_detail;

void history_service::impl::maybe_acquire(chan& c, clock::time_point now) {
  if (c.r != role::none || now < c.no_acquire_before)
    return;
  acquire(c, now, std::max({c.promised, c.cterm, c.seen_term}) + 1);
}

void history_service::impl::acquire(chan& c, clock::time_point now, std::uint64_t term) {
  if (!terms.reserve(term)) { // not durable: no term may be used; retried by tick
    c.r = role::none;
    c.no_acquire_before = now + acquire_timeout;
    return;
  }
  spdlog::debug("history: {} acquiring {} (term {})", opts.node_id, c.name, term);
  c.r = role::acquiring;
  c.term = term;
  c.promised = std::max(c.promised, term);
  c.promised_to = opts.node_id;
  c.promised_at = now;
  c.promisers.clear();
  if (vouches(c, now)) // an empty node that just started cannot say "no copy"
    c.promisers.insert(opts.node_id);
  c.best.reset();
  c.acquire_deadline = now + acquire_timeout;
  if (!vouches(c, now)) // this node's own freshness ends first: try again then
    c.acquire_deadline = std::min(c.acquire_deadline, started + opts.fresh_window + 20ms);
  for (const auto& p : live)
    send(p, c, boost::json::object{{"t", "prom"}, {"term", term}});
  if (c.promisers.size() >= majority(opts.cluster_size))
    finish_acquire(c, now);
}

void history_service::impl::finish_acquire(chan& c, clock::time_point now) {
  bool had_copy = c.log != nullptr;
  bool theirs_better = c.best && (!c.log || std::pair{c.best->cterm, c.best->top} >
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
  c.promised_at = now;
  c.ready = false;
  c.rebroadcast_from = commit_known;
  c.commit = c.log->top(); // everything the best copy holds is kept
  c.replicas.clear();
  c.inflight.clear();
  spdlog::debug("history: {} owns {} (term {}, epoch {}, top {})", opts.node_id, c.name, c.term,
                c.log->epoch(), c.log->top());
  ensure_replicas(c, now);
}

void history_service::impl::give_up_acquire(chan& c) {
  c.r = role::none;
  c.promisers.clear();
  c.best.reset();
  auto waiting = std::move(c.waiting); // to the node that ranks first now
  c.waiting.clear();
  for (auto& w : waiting)
    w.run();
}

void history_service::impl::step_down(chan& c, std::uint64_t newer) {
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
  reroute_reads(c);
  // queued requests go where the channel is owned now
  auto waiting = std::move(c.waiting);
  c.waiting.clear();
  for (auto& w : waiting)
    w.run();
}

void history_service::impl::ensure_replicas(chan& c, clock::time_point now) {
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

void history_service::impl::send_sync(chan& c, replica& r, clock::time_point now) {
  r.sync_sent = now;
  auto msg = wire::encode_copy(copy_of(c, now));
  msg["t"] = "sync";
  msg["term"] = c.term;
  send(r.node, c, msg);
}

void history_service::impl::try_commit(chan& c) {
  if (c.r != role::owner)
    return;
  std::vector<std::uint64_t> acked; // of the synced replicas
  for (const auto& r : c.replicas)
    if (r.synced)
      acked.push_back(r.acked);
  if (acked.size() < replicas_needed())
    return; // not enough copies: nothing new is acknowledged
  // committed: what enough replicas hold (the needed-th highest position)
  std::uint64_t upto = c.log->top();
  if (replicas_needed() > 0) {
    std::sort(acked.begin(), acked.end(), std::greater<>{});
    upto = std::min(upto, acked[replicas_needed() - 1]);
  }
  if (!c.ready) {
    c.ready = true;
    if (c.commit > 0) // the new owner's top, for the other nodes' streams
      c.last_commit_at = clock::now();
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
    c.last_commit_at = clock::now();
    hooks.committed(c.name, c.log->epoch(), p.off, p.frame);
    for (auto& d : p.done)
      d({true, p.off, {}});
  }
}

std::uint64_t history_service::impl::jitter() {
  static thread_local std::mt19937 rng{std::random_device{}()};
  return rng();
}

} // namespace wsnode::actors
