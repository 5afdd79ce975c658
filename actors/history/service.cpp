// The history service: routing of publishes and reads to a channel's
// owner, and the public interface (see history/service.hpp; the state
// machine's other parts: history/ownership.cpp, history/messages.cpp).
#include "actors/history/service_impl.hpp"

#include "protocol/codec.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

namespace wsnode::actors {

using clock = history_service::clock;
using namespace history_detail;

std::vector<std::string> history_service::impl::live_nodes() const {
  std::vector<std::string> all = live;
  all.push_back(opts.node_id);
  return all;
}

auto history_service::impl::chan_of(const std::string& ch) -> chan& {
  auto it = chans.find(ch);
  if (it == chans.end()) {
    it = chans.emplace(ch, chan{}).first;
    it->second.name = ch;
    it->second.ns = &ns->of_channel(ch);
    it->second.promised = terms.floor(); // what an earlier process may have promised
  }
  return it->second;
}

history_log::limits history_service::impl::limits_of(const chan& c) const {
  history_log::limits l;
  l.size = c.ns->history_size;
  l.ttl = c.ns->history_ttl;
  l.key_window = opts.idempotency_window;
  return l;
}

void history_service::impl::send(const std::string& node, const chan& c,
                                 const boost::json::object& msg) {
  hooks.send(node, wire::payload(c.name, msg));
}

wire::copy history_service::impl::copy_of(const chan& c, clock::time_point now) const {
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

void history_service::impl::adopt(chan& c, wire::copy cp, clock::time_point now) {
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

void history_service::impl::publish(const std::string& ch, std::string from, std::string data,
                                    std::string key, publish_done done, clock::time_point deadline,
                                    bool may_forward) {
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
  c.waiting.push_back({deadline,
                       [this, ch, from, data, key, shared_done, deadline, may_forward] {
                         publish(ch, from, data, key, std::move(*shared_done), deadline,
                                 may_forward);
                       },
                       [shared_done](std::string why) {
                         (*shared_done)({false, 0, std::move(why)});
                       }});
  maybe_acquire(c, clock::now());
}

void history_service::impl::read(const std::string& ch, read_request req, read_done done,
                                 clock::time_point deadline, bool may_forward) {
  auto& c = chan_of(ch);
  if (c.r == role::owner && c.ready) {
    if (majority(opts.cluster_size) <= 1)
      return done(serve_read(c, req));
    c.reads_next.push_back({std::move(req), std::move(done), deadline, may_forward});
    if (c.reads_round.empty())
      start_check(c, clock::now());
    return;
  }
  auto first = first_live(ch);
  if (c.r != role::owner && first != opts.node_id) {
    if (!may_forward)
      return done(read_failed("retry"));
    return remote(ch, false, wire::encode_read(req), {}, std::move(done), deadline, first);
  }
  auto shared_done = std::make_shared<read_done>(std::move(done));
  c.waiting.push_back(
      {deadline,
       [this, ch, req, shared_done, deadline, may_forward] {
         read(ch, req, std::move(*shared_done), deadline, may_forward);
       },
       [shared_done](std::string why) { (*shared_done)(read_failed(std::move(why))); }});
  maybe_acquire(c, clock::now());
}

void history_service::impl::serve_publish(chan& c, const std::string& from, const std::string& data,
                                          const std::string& key, publish_done done,
                                          clock::time_point deadline) {
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
      send(r.node, c, wire::encode_append(c.term, off, *frame, key, c.commit));
  try_commit(c);
}

read_outcome history_service::impl::serve_read(const chan& c, const read_request& req) const {
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

void history_service::impl::start_check(chan& c, clock::time_point now) {
  c.reads_round.insert(c.reads_round.end(), std::make_move_iterator(c.reads_next.begin()),
                       std::make_move_iterator(c.reads_next.end()));
  c.reads_next.clear();
  c.chk_seq = next_chk++;
  c.chk_ok.clear();
  c.chk_sent = now;
  for (const auto& p : live)
    send(p, c, boost::json::object{{"t", "chk"}, {"term", c.term}, {"seq", c.chk_seq}});
}

void history_service::impl::finish_check(chan& c, clock::time_point now) {
  c.promised_at = now; // a majority still backs this owner
  auto reads = std::move(c.reads_round);
  c.reads_round.clear();
  for (auto& r : reads)
    r.done(serve_read(c, r.req));
  if (!c.reads_next.empty() && c.r == role::owner)
    start_check(c, now);
}

void history_service::impl::reroute_reads(chan& c) {
  auto reads = std::move(c.reads_round);
  c.reads_round.clear();
  reads.insert(reads.end(), std::make_move_iterator(c.reads_next.begin()),
               std::make_move_iterator(c.reads_next.end()));
  c.reads_next.clear();
  for (auto& r : reads)
    read(c.name, std::move(r.req), std::move(r.done), r.deadline, r.may_forward);
}

bool history_service::impl::holds_for_other(const chan& c, const std::string& from,
                                            clock::time_point now) const {
  if (c.promised_to.empty() || c.promised_to == from || now - c.promised_at >= opts.term_hold)
    return false;
  if (c.promised_to == opts.node_id && c.r != role::owner)
    return false; // an acquisition of this node's that did not finish holds nothing
  // the holder keeps the channel against nodes that rank after it in this
  // node's view (or that it cannot see); a better-ranked node takes it
  // over (a node back from a restart, a hand-over): so in a bridge the
  // ownership settles once, on the best-ranked side, instead of flapping
  auto ranked = rank_nodes(c.name, live_nodes());
  auto holder = std::find(ranked.begin(), ranked.end(), c.promised_to);
  return holder != ranked.end() && std::find(ranked.begin(), ranked.end(), from) > holder;
}

void history_service::impl::remote(const std::string& ch, bool is_pub, boost::json::object body,
                                   publish_done pd, read_done rd, clock::time_point deadline,
                                   const std::string& target) {
  auto rid = next_rid++;
  remote_req r{ch,     is_pub,   boost::json::serialize(body),  std::move(pd), std::move(rd),
               target, deadline, clock::now() + attempt_timeout};
  send_request(rid, r);
  requests.emplace(rid, std::move(r));
}

void history_service::impl::send_request(std::uint64_t rid, const remote_req& r) {
  auto body = boost::json::parse(r.body).as_object();
  body["rid"] = rid;
  hooks.send(r.target, wire::payload(r.ch, body));
}

void history_service::impl::retry_later(std::uint64_t rid, clock::time_point now) {
  auto it = requests.find(rid);
  if (it != requests.end())
    it->second.resend_at = std::min(it->second.resend_at, now + retry_delay);
}

void history_service::impl::resend(std::uint64_t rid, clock::time_point now) {
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

void history_service::on_restart(const std::string& node) {
  impl_->on_restart(node);
}

void history_service::tick(clock::time_point now) {
  impl_->tick(now);
}

} // namespace wsnode::actors
