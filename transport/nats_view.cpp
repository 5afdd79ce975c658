#include "transport/nats_view.hpp"

#include "transport/mesh_codec.hpp"

#include <spdlog/spdlog.h>

namespace wsnode::transport::nats {

std::string encode_node_message(char kind, std::string_view origin, std::string_view body) {
  std::string out;
  out.reserve(2 + origin.size() + body.size());
  out.push_back(kind);
  out.push_back(static_cast<char>(origin.size()));
  out.append(origin);
  out.append(body);
  return out;
}

std::optional<node_message> decode_node_message(std::string_view data) {
  if (data.size() < 2)
    return std::nullopt;
  std::size_t n = static_cast<unsigned char>(data[1]);
  if (n == 0 || data.size() < 2 + n)
    return std::nullopt;
  return node_message{data[0], std::string{data.substr(2, n)}, data.substr(2 + n)};
}

std::string encode_heartbeat(std::string_view origin, std::uint64_t incarnation,
                             std::string_view heard_list) {
  auto body = mesh::encode_envelope(mesh::envelope{std::string{origin}, incarnation, 0});
  body.append(heard_list);
  return body;
}

std::optional<heartbeat> decode_heartbeat(std::string_view data) {
  constexpr std::size_t fixed = 18; // the envelope without its origin
  if (data.size() < fixed)
    return std::nullopt;
  std::size_t size = fixed + static_cast<unsigned char>(data[17]);
  if (size > data.size())
    return std::nullopt;
  auto env = mesh::decode_envelope(data.substr(0, size));
  if (!env)
    return std::nullopt;
  return heartbeat{std::move(env->origin), env->epoch, data.substr(size)};
}

mesh::peer_table::change node_view::heard(const heartbeat& hb, clock::time_point now) {
  std::lock_guard<std::mutex> g{mu_};
  auto change = peers_.heard(hb.origin, hb.incarnation, now);
  bool hears_changed = peers_.hears(hb.origin, hb.heard_by, self_);
  if (change != mesh::peer_table::change::none || hears_changed)
    heartbeat_soon_ = true; // tell it at once that we hear it (liveness is mutual)
  return change;
}

bool node_view::gone(std::string_view peer, clock::time_point now) {
  std::lock_guard<std::mutex> g{mu_};
  return peers_.lost(peer, now);
}

void node_view::link_lost(clock::time_point now) {
  std::lock_guard<std::mutex> g{mu_};
  for (const auto& id : peers_.live(now))
    peers_.lost(id, now);
  heartbeat_soon_ = true;
}

void node_view::heartbeat_soon() {
  std::lock_guard<std::mutex> g{mu_};
  heartbeat_soon_ = true;
}

void node_view::subscribed(std::string topic, clock::time_point deadline, clock::time_point now) {
  std::lock_guard<std::mutex> g{mu_};
  if (pending_.add(topic, deadline, peers_, now))
    confirmed_now_.push_back(std::move(topic));
  else
    barrier_topics_.push_back(std::move(topic));
}

void node_view::unsubscribed(std::string_view topic) {
  std::lock_guard<std::mutex> g{mu_};
  pending_.remove(topic);
}

void node_view::answered(std::string_view origin, std::string_view topics, clock::time_point now) {
  std::lock_guard<std::mutex> g{mu_};
  std::size_t start = 0;
  while (start <= topics.size()) {
    auto end = topics.find('\n', start);
    if (end == std::string_view::npos)
      end = topics.size();
    auto topic = topics.substr(start, end - start);
    if (!topic.empty() && pending_.confirm(topic, origin, peers_, now))
      confirmed_now_.emplace_back(topic);
    start = end + 1;
  }
}

node_view::step_result node_view::step(clock::time_point now, std::uint64_t incarnation,
                                       clock::time_point& next) {
  std::lock_guard<std::mutex> g{mu_};
  step_result r;
  if (heartbeat_soon_ || now >= next_heartbeat_) {
    heartbeat_soon_ = false;
    next_heartbeat_ = now + interval_;
    r.heartbeat_body = encode_heartbeat(self_, incarnation, peers_.heard_list(now));
  }
  if (!barrier_topics_.empty()) {
    for (const auto& t : barrier_topics_) {
      if (!r.barrier_body.empty())
        r.barrier_body.push_back('\n');
      r.barrier_body += t;
    }
    barrier_topics_.clear();
    r.barrier_peers = peers_.live(now);
  }
  r.ready.swap(confirmed_now_);
  for (auto& d : pending_.expire(peers_, now, true)) {
    if (d.timed_out)
      ++r.timed_out;
    r.ready.push_back(std::move(d.topic));
  }
  r.view = peers_.view_change(now);
  r.peers_json = peers_.json(now, r.live, [](const std::string& id, std::int64_t ms) {
    spdlog::warn("nats: peer {} silent for {} ms", id, ms);
  });
  next = std::min(next_heartbeat_, pending_.earliest_deadline());
  return r;
}

} // namespace wsnode::transport::nats
