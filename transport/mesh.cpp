#include "transport/mesh.hpp"

#include "transport/mesh_codec.hpp"
#include "transport/mesh_link.hpp"
#include "transport/mesh_peers.hpp"
#include "transport/mesh_queue.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <unistd.h>
#include <unordered_map>

namespace wsnode::transport {

namespace {

using clock = std::chrono::steady_clock;

std::string_view view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

} // namespace

struct zmq_mesh::impl {
  impl(mesh_options o, metrics& mm)
    : opts(std::move(o)), m(mm), commands(opts.queue_limit), peers(opts.heartbeat) {
    std::random_device rd;
    epoch = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
            static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
  }

  // ---------------------------------------------------------------- any thread

  void enqueue(mesh::command c) {
    if (!commands.push(std::move(c)))
      m.drop(drop_reason::mesh_hwm);
  }

  // ---------------------------------------------------------------- mesh thread

  void run() {
    auto next_heartbeat = clock::now();
    std::vector<mesh::command> batch;
    while (!stopping.load()) {
      auto now = clock::now();
      bool paused = inflight.load() >= static_cast<std::int64_t>(opts.max_inflight);
      auto wait = next_heartbeat - now;
      if (!pending.empty())
        wait = std::min(wait, pending.earliest_deadline() - now);
      if (paused)
        wait = std::min<clock::duration>(wait, std::chrono::milliseconds(5));
      auto ms =
          std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
      // [commands][xpub] then per link [monitor][sub]
      items.resize(2 + 2 * links.size());
      items[0] = {nullptr, commands.fd(), ZMQ_POLLIN, 0};
      items[1] = {pub.handle(), 0, ZMQ_POLLIN, 0};
      for (std::size_t i = 0; i < links.size(); ++i) {
        items[2 + 2 * i] = {links[i]->monitor().handle(), 0, ZMQ_POLLIN, 0};
        items[3 + 2 * i] = {links[i]->socket().handle(), 0,
                            static_cast<short>(paused ? 0 : ZMQ_POLLIN), 0};
      }
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(ms));
      if (items[0].revents & ZMQ_POLLIN) {
        commands.drain(batch);
        for (auto& c : batch)
          execute(c);
        batch.clear();
      }
      if (items[1].revents & ZMQ_POLLIN)
        read_subscriptions();
      bool lost_peer = false;
      for (std::size_t i = 0; i < links.size(); ++i) {
        // events before messages: a message read after a disconnect event
        // was queued before it, and must not make the peer look alive
        if (items[2 + 2 * i].revents & ZMQ_POLLIN)
          lost_peer |= link_events(*links[i]);
        if (items[3 + 2 * i].revents & ZMQ_POLLIN)
          read_messages(*links[i]);
      }
      now = clock::now();
      bool tick = now >= next_heartbeat || lost_peer || heartbeat_soon;
      if (now >= next_heartbeat || heartbeat_soon) {
        heartbeat_soon = false;
        heartbeat(now);
        next_heartbeat = now + opts.heartbeat;
      }
      if (!pending.empty())
        for (auto& d : pending.expire(peers, now, tick))
          subscribed(d.topic, d.timed_out);
    }
  }

  void execute(mesh::command& c) {
    using mesh::command;
    switch (c.op) {
    case command::sub: {
      for (auto& l : links)
        l->subscribe(c.topic);
      auto now = clock::now();
      if (pending.add(c.topic, now + opts.subscribe_timeout, peers, now))
        subscribed(c.topic, false);
      return;
    }
    case command::unsub:
      for (auto& l : links)
        l->unsubscribe(c.topic);
      tracker.forget_topic(c.topic);
      pending.remove(c.topic);
      return;
    case command::pub: {
      auto seq = remote_interest.next_seq(c.topic);
      if (!seq)
        return; // no peer wants it
      send(c.topic, *seq, *c.frame);
      bump(m.mesh_sent, 1);
      return;
    }
    }
  }

  void send(std::string_view topic, std::uint64_t seq, std::string_view payload) {
    auto env = mesh::encode_envelope({opts.node_id, epoch, seq});
    std::array<zmq::const_buffer, 3> parts{zmq::buffer(topic), zmq::buffer(env),
                                           zmq::buffer(payload)};
    if (!zmq::send_multipart(pub, parts, zmq::send_flags::dontwait))
      m.drop(drop_reason::mesh_hwm);
  }

  // XPUB: peers (un)subscribing. "\x01topic" subscribes, "\x00topic" leaves.
  // Each subscription is confirmed on the control topic; confirmations of
  // one read go out together (topics joined by '\n', which names never hold).
  void read_subscriptions() {
    zmq::message_t msg;
    std::string confirm;
    bool newcomer = false;
    while (pub.recv(msg, zmq::recv_flags::dontwait)) {
      auto v = view(msg);
      if (v.empty())
        continue;
      auto topic = v.substr(1);
      if (topic.starts_with(mesh::control_prefix)) {
        newcomer |= v[0] == 1; // a peer (re)connected to us
        continue;
      }
      if (v[0] == 1) {
        remote_interest.want(topic);
        if (!confirm.empty())
          confirm += '\n';
        confirm += topic;
        if (confirm.size() > 60000) {
          send(mesh::confirm_topic, 0, confirm);
          confirm.clear();
        }
      } else if (v[0] == 0) {
        remote_interest.unwant(topic, clock::now()); // its sequence is kept a while
      }
    }
    if (!confirm.empty())
      send(mesh::confirm_topic, 0, confirm);
    // a heartbeat at once, not within the interval: a node that just
    // (re)started learns who is alive, and that they hear it, in
    // milliseconds, and does not hold its first requests for a second
    if (newcomer)
      heartbeat_soon = true;
  }

  // A peer's connection reset: it is dead now (its process died, or the
  // link broke); true when that changed the view.
  bool link_events(mesh::link& l) {
    bool changed = false;
    for (auto ev : l.read_events()) {
      if (ev != mesh::link::event::disconnected || l.node().empty())
        continue;
      auto now = clock::now();
      if (peers.lost(l.node(), now)) {
        spdlog::warn("mesh: peer {} lost its connection ({})", l.node(), l.endpoint());
        bump(m.mesh_peers_lost, 1);
        report_view(now);
        changed = true;
      }
    }
    return changed;
  }

  void read_messages(mesh::link& l) {
    std::vector<zmq::message_t> parts;
    for (int i = 0; i < 1024; ++i) {
      parts.clear();
      auto n =
          zmq::recv_multipart(l.socket(), std::back_inserter(parts), zmq::recv_flags::dontwait);
      if (!n)
        return;
      if (parts.size() != 3) {
        bump(m.mesh_malformed, 1);
        continue;
      }
      auto topic = view(parts[0]);
      auto env = mesh::decode_envelope(view(parts[1]));
      if (!env) {
        bump(m.mesh_malformed, 1);
        continue;
      }
      if (env->origin == opts.node_id) {
        // our own (a config listing ourselves as a peer), or a clash
        if (env->epoch != epoch && !warned_clash) {
          spdlog::error("mesh: another node also uses the id {}; ids must be unique", opts.node_id);
          warned_clash = true;
        }
        continue;
      }
      auto now = clock::now();
      l.set_node(env->origin);
      if (l.connected())
        heard(*env, now);
      if (topic == mesh::heartbeat_topic) { // it lists the peers it hears
        if (l.connected() && peers.hears(env->origin, view(parts[2]), opts.node_id)) {
          spdlog::debug("mesh: {} hears [{}]", env->origin, view(parts[2]));
          report_view(now);
        }
        continue;
      }
      if (topic == mesh::confirm_topic) {
        std::string_view list = view(parts[2]);
        while (!list.empty()) {
          auto nl = list.find('\n');
          auto one = list.substr(0, nl);
          list = nl == std::string_view::npos ? std::string_view{} : list.substr(nl + 1);
          if (pending.confirm(one, env->origin, peers, now))
            subscribed(one, false);
        }
        continue;
      }
      if (topic == node_topic) { // a service message for us: tag byte, then payload
        auto body = view(parts[2]);
        service_tag service{};
        if (body.empty() || !to_service_tag(static_cast<std::uint8_t>(body[0]), service)) {
          bump(m.mesh_malformed, 1);
          continue;
        }
        bump(m.mesh_service_received, 1);
        inflight.fetch_add(1);
        events->on_service_message(env->origin, service, std::string{body.substr(1)});
        continue;
      }
      auto t = mesh::decode_topic(topic);
      if (!t) {
        bump(m.mesh_malformed, 1);
        continue;
      }
      auto verdict = tracker.observe(env->origin, env->epoch, topic, env->seq);
      if (verdict.missed > 0)
        bump(m.mesh_gaps, verdict.missed);
      if (!verdict.deliver)
        continue;
      bump(m.mesh_received, 1);
      inflight.fetch_add(1);
      events->on_remote(t->kind, std::string{t->name},
                        std::make_shared<const std::string>(view(parts[2])));
      if (inflight.load() >= static_cast<std::int64_t>(opts.max_inflight))
        return; // let the broker catch up; ZeroMQ's HWM pushes back meanwhile
    }
  }

  // ---------------------------------------------------------------- peers

  void heard(const mesh::envelope& e, clock::time_point now) {
    auto c = peers.heard(e.origin, e.epoch, now);
    switch (c) {
    case mesh::peer_table::change::none:
      return;
    case mesh::peer_table::change::up:
      spdlog::info("mesh: peer {} is up", e.origin);
      break;
    case mesh::peer_table::change::back:
      spdlog::info("mesh: peer {} is back", e.origin);
      break;
    case mesh::peer_table::change::restarted:
      spdlog::info("mesh: peer {} restarted", e.origin);
      events->on_peer_restart(e.origin); // it lost what it held
      break;
    }
    heartbeat_soon = true; // tell it at once that we hear it (liveness is mutual)
    report_view(now);
  }

  // Tells the brokers the live peers when they changed.
  void report_view(clock::time_point now) {
    if (auto live = peers.view_change(now)) {
      spdlog::debug("mesh: live peers now {}", fmt::join(*live, ","));
      events->on_view(std::move(*live));
      publish_peers(now); // /readyz and the gauge agree with the view at once
    }
  }

  void publish_peers(clock::time_point now) {
    std::int64_t up = 0;
    auto json = peers.json(now, up, [](const std::string& id, std::int64_t ms) {
      spdlog::warn("mesh: peer {} silent for {} ms", id, ms);
    });
    m.mesh_peers.store(up);
    std::lock_guard<std::mutex> g{peers_mu};
    peers_text = std::move(json);
  }

  void heartbeat(clock::time_point now) {
    remote_interest.forget(now);
    send(mesh::heartbeat_topic, ++heartbeat_seq, peers.heard_list(now));
    publish_peers(now);
    report_view(now);
  }

  // ---------------------------------------------------------------- subscription confirmation

  // Every live peer confirmed `topic` (or its time ran out): the broker may ack.
  void subscribed(std::string_view topic, bool timed_out) {
    if (timed_out)
      bump(m.mesh_confirm_timeouts, 1);
    if (auto t = mesh::decode_topic(topic))
      events->on_subscribed(t->kind, std::string{t->name});
  }

  mesh_options opts;
  metrics& m;
  std::shared_ptr<backbone_events> events;
  std::uint64_t epoch = 0;
  std::uint64_t heartbeat_seq = 0;
  bool heartbeat_soon = false; // a peer came (back): heartbeat now, not at the interval
  bool warned_clash = false;
  std::atomic<bool> stopping{false};
  std::atomic<bool> running{false};
  std::atomic<std::int64_t> inflight{0};
  mesh::command_queue commands;
  mutable std::mutex peers_mu;
  std::string peers_text = "[]";
  // mesh thread only
  zmq::context_t ctx{1};
  zmq::socket_t pub{ctx, zmq::socket_type::xpub};
  std::vector<std::unique_ptr<mesh::link>> links; // one per peer
  std::vector<zmq::pollitem_t> items;
  mesh::interest_table remote_interest; // what the peers want from us
  mesh::peer_table peers;
  mesh::confirmations pending;
  mesh::seq_tracker tracker;
  std::string node_topic; // "n:<our id>|": service messages to this node
  std::thread thread;
};

zmq_mesh::zmq_mesh(mesh_options opts, metrics& m)
  : impl_(std::make_unique<impl>(std::move(opts), m)) {}

zmq_mesh::~zmq_mesh() {
  stop();
}

void zmq_mesh::start(std::shared_ptr<backbone_events> events) {
  auto& d = *impl_;
  d.events = std::move(events);
  d.commands.open();
  d.pub.set(zmq::sockopt::linger, 0);
  d.pub.set(zmq::sockopt::sndhwm, d.opts.hwm);
  d.pub.set(zmq::sockopt::xpub_verbose, 1); // every subscription, to confirm each
  try {
    d.pub.bind(d.opts.bind);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("mesh: cannot bind " + d.opts.bind + ": " + e.what());
  }
  d.node_topic = "n:" + d.opts.node_id + "|";
  for (const auto& p : d.opts.peers) {
    if (p == d.opts.bind)
      continue;
    auto l = std::make_unique<mesh::link>(d.ctx, p, d.opts.hwm, d.links.size());
    l->subscribe(mesh::control_prefix);
    l->subscribe(d.node_topic);
    l->connect(); // reconnects by itself when the peer restarts
    d.links.push_back(std::move(l));
  }
  d.running = true;
  d.thread = std::thread([&d] {
    try {
      d.run();
    } catch (const std::exception& e) {
      spdlog::critical("mesh thread stopped: {}", e.what());
    }
    d.running = false;
  });
}

void zmq_mesh::stop() {
  auto& d = *impl_;
  if (!d.thread.joinable())
    return;
  d.stopping = true;
  d.commands.wake();
  d.thread.join();
  d.pub.close();
  for (auto& l : d.links)
    l->close();
  d.links.clear();
  d.commands.close();
}

bool zmq_mesh::up() const noexcept {
  return impl_->running.load();
}

std::string zmq_mesh::peers_json() const {
  std::lock_guard<std::mutex> g{impl_->peers_mu};
  return impl_->peers_text;
}

void zmq_mesh::subscribe(topic_kind kind, std::string_view name) {
  impl_->enqueue({mesh::command::sub, mesh::encode_topic(kind, name), nullptr});
}

void zmq_mesh::unsubscribe(topic_kind kind, std::string_view name) {
  impl_->enqueue({mesh::command::unsub, mesh::encode_topic(kind, name), nullptr});
}

void zmq_mesh::publish(topic_kind kind, std::string_view name, const frame_ptr& frame) {
  impl_->enqueue({mesh::command::pub, mesh::encode_topic(kind, name), frame});
}

void zmq_mesh::send_to_node(std::string_view node, service_tag service, std::string payload) {
  payload.insert(payload.begin(), static_cast<char>(service));
  impl_->enqueue(
      {mesh::command::pub, "n:" + std::string{node} + "|", make_frame(std::move(payload))});
}

void zmq_mesh::handled() noexcept {
  impl_->inflight.fetch_sub(1);
}

} // namespace wsnode::transport
