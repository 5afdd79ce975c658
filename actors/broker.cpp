#include "actors/broker.hpp"

#include "actors/messages.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <stdexcept>

namespace wsnode::actors {

namespace {

std::string interest_key(topic_kind kind, std::string_view name) {
  std::string k;
  k.reserve(name.size() + 1);
  k += kind == topic_kind::channel ? 'c' : 'u';
  k += name;
  return k;
}

} // namespace

// ---------------------------------------------------------------- broker_core

broker_core::broker_core(metrics& m, std::shared_ptr<backbone> bb, clock::duration linger,
                         std::shared_ptr<const namespace_table> ns)
  : metrics_(m), backbone_(std::move(bb)), linger_(linger), namespaces_(std::move(ns)) {
  if (!backbone_) // a single node has a local_backbone, never none
    throw std::invalid_argument("broker_core: no backbone");
}

bool broker_core::join(sid_type sid, std::string user, sink_ptr sink, ready_fn ready,
                       caf::actor actor) {
  if (sessions_.count(sid) != 0)
    return false;
  auto u = users_.find(user);
  if (u == users_.end()) {
    u = users_.emplace(std::move(user), devices{}).first;
    if (occupancy_)
      occupancy_(topic_kind::user, u->first, true);
  }
  auto it =
      sessions_.try_emplace(sid, session_rec{&u->first, std::move(sink), std::move(actor)}).first;
  ++joined_;
  u->second.emplace_back(sid, it->second.sink.get());
  want(topic_kind::user, u->first, std::move(ready));
  update_gauges();
  return true;
}

bool broker_core::attach(sid_type sid, sink_ptr sink) {
  return sessions_.try_emplace(sid, session_rec{nullptr, std::move(sink), {}}).second;
}

void broker_core::leave(sid_type sid, clock::time_point now) {
  auto it = sessions_.find(sid);
  if (it == sessions_.end())
    return;
  channels_.remove_all(sid, [&](std::string_view ch) { unwant(topic_kind::channel, ch, now); });
  held_.erase(sid);
  if (it->second.user != nullptr) {
    --joined_;
    auto u = users_.find(*it->second.user);
    auto& d = u->second;
    d.erase(std::remove_if(d.begin(), d.end(), [&](const auto& e) { return e.first == sid; }),
            d.end());
    if (d.empty()) {
      std::string user = u->first; // the key goes with the entry
      users_.erase(u);
      unwant(topic_kind::user, user, now);
      if (occupancy_)
        occupancy_(topic_kind::user, user, false);
    }
  }
  sessions_.erase(it);
  update_gauges();
}

bool broker_core::subscribe(sid_type sid, std::string_view ch, ready_fn ready) {
  auto it = sessions_.find(sid);
  if (it == sessions_.end())
    return false;
  if (it->second.sink->batched())
    flush_window(ch); // what was published before it is not its to get
  if (channels_.add(ch, sid, it->second.sink.get()) && occupancy_)
    occupancy_(topic_kind::channel, ch, true);
  want(topic_kind::channel, ch, std::move(ready));
  update_gauges();
  return true;
}

bool broker_core::unsubscribe(sid_type sid, std::string_view ch, clock::time_point now) {
  auto* subs = channels_.find(ch);
  if (subs == nullptr)
    return false;
  auto sub = subs->find(sid);
  if (sub == subs->end())
    return false;
  if (sub->second->batched())
    flush_window(ch); // what was published before the unsub is still its to get
  erase_held(sid, ch);
  if (channels_.remove(ch, sid))
    unwant(topic_kind::channel, ch, now);
  update_gauges();
  return true;
}

void broker_core::want(topic_kind kind, std::string_view name, ready_fn ready) {
  if (!backbone_->clustered()) {
    if (ready)
      ready();
    return;
  }
  auto key = interest_key(kind, name);
  auto it = interest_.find(key);
  if (it == interest_.end()) {
    it = interest_.emplace(std::move(key), interest{}).first;
    if (ready)
      it->second.waiting.push_back(std::move(ready));
    backbone_->subscribe(kind, name);
    return;
  }
  it->second.empty.reset();
  if (!ready)
    return;
  if (it->second.live)
    ready();
  else
    it->second.waiting.push_back(std::move(ready));
}

// The last local subscriber of `name` is gone (each caller saw it go).
void broker_core::unwant(topic_kind kind, std::string_view name, clock::time_point now) {
  if (kind == topic_kind::channel) { // no local subscriber: the order starts afresh
    if (auto s = streams_.find(name); s != streams_.end())
      streams_.erase(s);
    if (auto w = windows_.find(name); w != windows_.end())
      windows_.erase(w);
    if (occupancy_)
      occupancy_(topic_kind::channel, name, false);
  }
  if (!backbone_->clustered())
    return;
  auto key = interest_key(kind, name);
  auto it = interest_.find(key);
  if (it == interest_.end())
    return;
  if (linger_ <= clock::duration::zero()) {
    backbone_->unsubscribe(kind, name);
    interest_.erase(it);
    return;
  }
  it->second.empty = now;
  lingering_.emplace_back(std::move(key), now);
}

void broker_core::confirmed(topic_kind kind, std::string_view name) {
  auto it = interest_.find(interest_key(kind, name));
  if (it == interest_.end() || it->second.live)
    return;
  it->second.live = true;
  auto waiting = std::move(it->second.waiting);
  it->second.waiting.clear();
  for (auto& ready : waiting)
    ready();
}

void broker_core::expire(clock::time_point now) {
  while (!lingering_.empty() && now - lingering_.front().second >= linger_) {
    auto [key, since] = std::move(lingering_.front());
    lingering_.pop_front();
    auto it = interest_.find(key);
    // Still without local interest since that moment (not re-wanted)?
    if (it == interest_.end() || !it->second.empty || *it->second.empty != since)
      continue;
    auto kind = key[0] == 'c' ? topic_kind::channel : topic_kind::user;
    backbone_->unsubscribe(kind, std::string_view{key}.substr(1));
    interest_.erase(it);
  }
}

const broker_core::devices* broker_core::devices_of(std::string_view user) const {
  auto it = users_.find(user);
  return it == users_.end() ? nullptr : &it->second;
}

template <class Subscribers>
std::size_t broker_core::fan_out(const Subscribers* subs, const frame_ptr& frame, bool lossy) {
  if (subs == nullptr)
    return 0;
  std::size_t queued = 0;
  send_batch batch; // one hand-over per I/O thread for the whole fan-out
  if (lossy) {
    for (const auto& [sid, sink] : *subs)
      if (sink->send_lossy(frame) == send_result::queued)
        ++queued;
  } else {
    for (const auto& [sid, sink] : *subs)
      if (sink->send(frame) == send_result::queued)
        ++queued;
  }
  bump(metrics_.deliveries, queued);
  return queued;
}

// the channels' fan-out (broker_merge.cpp) needs it too
template std::size_t broker_core::fan_out(const topic_registry<frame_sink*>::subscribers*,
                                          const frame_ptr&, bool);

std::size_t broker_core::publish(std::string_view ch, const frame_ptr& frame) {
  bump(metrics_.publishes, 1);
  auto n = fan_out_channel(ch, frame);
  backbone_->publish(topic_kind::channel, ch, frame);
  return n;
}

std::size_t broker_core::send_to_user(std::string_view user, const frame_ptr& frame) {
  bump(metrics_.direct_messages, 1);
  auto n = fan_out(devices_of(user), frame);
  backbone_->publish(topic_kind::user, user, frame);
  return n;
}

std::size_t broker_core::deliver_local(topic_kind kind, std::string_view name,
                                       const frame_ptr& frame) {
  return kind == topic_kind::channel ? fan_out_channel(name, frame)
                                     : fan_out(devices_of(name), frame);
}

sink_ptr broker_core::sink_of(sid_type sid) const {
  auto it = sessions_.find(sid);
  return it == sessions_.end() ? nullptr : it->second.sink;
}

void broker_core::close_all(std::uint16_t code, const std::string& reason) {
  for (auto& [sid, rec] : sessions_)
    rec.sink->close(code, reason);
}

std::vector<caf::actor> broker_core::sessions_of(std::string_view user) const {
  std::vector<caf::actor> out;
  if (const auto* d = devices_of(user))
    for (const auto& [sid, sink] : *d)
      if (auto it = sessions_.find(sid); it != sessions_.end())
        out.push_back(it->second.actor);
  return out;
}

std::size_t broker_core::close_user(std::string_view user, std::uint16_t code,
                                    const std::string& reason) {
  const auto* d = devices_of(user);
  if (d == nullptr)
    return 0;
  for (const auto& [sid, sink] : *d)
    sink->close(code, reason);
  return d->size();
}

bool broker_core::channel_page(std::string_view prefix, std::string_view cursor, std::size_t limit,
                               std::vector<std::pair<std::string, std::uint64_t>>& out) const {
  std::vector<std::pair<std::string_view, std::uint64_t>> all;
  channels_.for_each_topic([&](std::string_view ch, std::size_t n) {
    if (ch.starts_with(prefix) && ch > cursor)
      all.emplace_back(ch, n);
  });
  bool more = all.size() > limit;
  auto end = all.begin() + static_cast<std::ptrdiff_t>(std::min(limit, all.size()));
  std::partial_sort(all.begin(), end, all.end());
  for (auto it = all.begin(); it != end; ++it)
    out.emplace_back(std::string{it->first}, it->second);
  return more;
}

std::size_t broker_core::subscriber_count(std::string_view ch) const {
  auto* subs = channels_.find(ch);
  return subs == nullptr ? 0 : subs->size();
}

void broker_core::update_gauges() noexcept {
  // deltas: the shards of a node add up into the same gauges
  auto ch = static_cast<std::int64_t>(channels_.topic_count());
  auto us = static_cast<std::int64_t>(users_.size());
  bump(metrics_.channels, ch - gauge_channels_);
  bump(metrics_.users, us - gauge_users_);
  gauge_channels_ = ch;
  gauge_users_ = us;
}

broker_set::broker_set(std::vector<caf::actor> shards) : shards_(std::move(shards)) {
  if (shards_.empty())
    throw std::invalid_argument("broker_set: no broker");
}

const caf::actor& broker_set::owner(std::string_view name) const noexcept {
  if (shards_.size() == 1)
    return shards_.front();
  return shards_[std::hash<std::string_view>{}(name) % shards_.size()];
}

broker_set spawn_brokers(caf::actor_system& sys, std::size_t n, metrics& m,
                         std::shared_ptr<backbone> bb, broker_options opts) {
  std::vector<caf::actor> shards;
  auto state_file = opts.history.state_file;
  for (std::size_t i = 0; i < std::max<std::size_t>(n, 1); ++i) {
    if (!state_file.empty()) // one file per shard: each writes its own
      opts.history.state_file = state_file + "-" + std::to_string(i);
    shards.push_back(spawn_broker(sys, m, bb, opts));
  }
  return broker_set{std::move(shards)};
}

} // namespace wsnode::actors
