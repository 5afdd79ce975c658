#include "transport/nats_backbone.hpp"

#include "transport/js_client.hpp"
#include "transport/mesh_codec.hpp"
#include "transport/mesh_peers.hpp"
#include "transport/nats_subjects.hpp"

#include <fmt/ranges.h>
#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace wsnode::transport {

namespace {

using clock = std::chrono::steady_clock;

// The first byte of a message on a node's subject: a service's tag
// (core/backbone.hpp), or one of the barrier's two halves.
constexpr char barrier_ask = '?';    // "answer me": the topics just subscribed
constexpr char barrier_answer = '!'; // the same topics, back: the sender's server knows them

void check(natsStatus s, const char* what) {
  if (s != NATS_OK)
    throw std::runtime_error(fmt::format("nats: {}: {}", what, natsStatus_GetText(s)));
}

// [kind][origin length][origin][body]
std::string encode_node_message(char kind, std::string_view origin, std::string_view body) {
  std::string out;
  out.reserve(2 + origin.size() + body.size());
  out.push_back(kind);
  out.push_back(static_cast<char>(origin.size()));
  out.append(origin);
  out.append(body);
  return out;
}

} // namespace

struct nats_backbone::impl {
  impl(nats_options o, metrics& mm) : opts(std::move(o)), m(mm), peers(opts.heartbeat) {
    std::random_device rd;
    incarnation = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
                  static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
    hb_subject = nats::heartbeat_subject(opts.prefix);
    if (opts.history)
      history = std::make_shared<js_history>(*opts.history, m);
    my_subject = nats::node_subject(opts.prefix, opts.node_id);
    gone_prefix = opts.prefix + ".gone." + nats::encode_token(opts.node_id) + ".";
  }

  nats_options opts;
  metrics& m;
  std::uint64_t incarnation = 0;
  std::string hb_subject;
  std::string my_subject;
  // Barriers are sent as requests with a reply subject under this prefix
  // (+ the peer's token): the servers answer "no responders" there at once
  // when the peer's connection is gone, so a killed node leaves the view
  // when a sub asks for it, not 3 heartbeats later.
  std::string gone_prefix;
  natsSubscription* gone_sub = nullptr;
  std::shared_ptr<backbone_events> events;
  std::mutex events_mu; // events are reported one call at a time

  natsConnection* nc = nullptr;
  natsSubscription* hb_sub = nullptr;
  natsSubscription* node_sub = nullptr;
  // channel history in JetStream (when a namespace keeps history)
  std::shared_ptr<js_history> history;
  std::unique_ptr<js::client> jsc;
  std::vector<natsSubscription*> advisory_subs;
  std::atomic<bool> connected{false};
  std::atomic<bool> stopping{false};
  std::atomic<int> in_callback{0}; // nats.c threads inside one of ours

  // guarded by mu: interest, the view, confirmations
  mutable std::mutex mu;
  std::condition_variable wake;
  bool work = false;
  bool heartbeat_soon = true;
  std::unordered_map<std::string, natsSubscription*> subs; // by subject
  std::vector<std::string> barrier_topics;                 // subscribed since the last barrier
  std::vector<std::string> confirmed_now;                  // confirmed without waiting
  mesh::peer_table peers;
  mesh::confirmations pending;
  std::string peers_text = "[]";
  std::thread timer;

  // flow control: the delivery thread waits while the broker is behind
  std::atomic<std::int64_t> inflight{0};
  std::mutex flow_mu;
  std::condition_variable flow;

  // ---------------------------------------------------------------- nats.c callbacks

  struct callback_scope {
    explicit callback_scope(impl& i) : self(i) { self.in_callback.fetch_add(1); }
    ~callback_scope() { self.in_callback.fetch_sub(1); }
    impl& self;
  };

  static void on_topic(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    self.topic_message(msg);
    natsMsg_Destroy(msg);
  }
  static void on_node(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    self.node_message(msg);
    natsMsg_Destroy(msg);
  }
  static void on_heartbeat(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    self.heartbeat_message(msg);
    natsMsg_Destroy(msg);
  }
  static void on_advisory(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    natsMsg_Destroy(msg);
    // a stream's new leader republishes from its own point: what the old
    // one had stored but not republished yet is found by a check of the tops
    if (self.history && !self.stopping.load())
      self.history->suspect();
  }
  static void on_gone(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    if (natsMsg_IsNoResponders(msg)) {
      std::string_view subject = natsMsg_GetSubject(msg);
      if (auto peer = nats::decode_token(subject.substr(std::min(subject.size(),
                                                                 self.gone_prefix.size()))))
        self.peer_gone(*peer);
    }
    natsMsg_Destroy(msg);
  }
  static void on_disconnected(natsConnection*, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    self.link_changed(false);
  }
  static void on_connected(natsConnection*, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    self.link_changed(true);
  }
  static void on_error(natsConnection*, natsSubscription* sub, natsStatus err, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    if (err == NATS_SLOW_CONSUMER && sub != nullptr) {
      // nats.c dropped messages of this subscription (its pending limit)
      self.m.drop(drop_reason::backbone);
      spdlog::warn("nats: a subscription fell behind; messages were dropped");
    } else {
      spdlog::warn("nats: {}", natsStatus_GetText(err));
    }
  }

  // ---------------------------------------------------------------- delivery thread

  void wait_for_room() {
    auto max = static_cast<std::int64_t>(opts.max_inflight);
    if (inflight.load(std::memory_order_relaxed) < max)
      return;
    std::unique_lock<std::mutex> l{flow_mu};
    flow.wait(l, [&] { return inflight.load() < max || stopping.load(); });
  }

  void topic_message(natsMsg* msg) {
    auto t = nats::parse_topic_subject(opts.prefix, natsMsg_GetSubject(msg));
    if (!t) {
      bump(m.mesh_malformed, 1);
      return;
    }
    std::string data;
    if (js::reply r{msg}; history && !r.header("Nats-Stream").empty()) {
      // a history channel's message, republished by JetStream once stored
      auto wire = live_frame(r, t->name);
      if (!wire) {
        if (r.header_u64("Wsn-Off") != 0) // 0: an epoch's marker, not a message
          bump(m.mesh_malformed, 1);
        return;
      }
      data = std::move(*wire);
    } else {
      data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    }
    wait_for_room();
    if (stopping.load())
      return;
    bump(m.mesh_received, 1);
    inflight.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g{events_mu};
    events->on_remote(t->kind, std::move(t->name), make_frame(std::move(data)));
  }

  void node_message(natsMsg* msg) {
    std::string_view data{natsMsg_GetData(msg),
                          static_cast<std::size_t>(natsMsg_GetDataLength(msg))};
    if (data.size() < 2 || data.size() < 2 + std::size_t{static_cast<unsigned char>(data[1])} ||
        data[1] == 0) {
      bump(m.mesh_malformed, 1);
      return;
    }
    char kind = data[0];
    std::string origin{data.substr(2, static_cast<unsigned char>(data[1]))};
    auto body = data.substr(2 + origin.size());
    auto now = clock::now();
    if (kind == barrier_ask) {
      // our server routed their SUBs before this message: answer through it
      publish_raw(nats::node_subject(opts.prefix, origin),
                  encode_node_message(barrier_answer, opts.node_id, body));
      return;
    }
    if (kind == barrier_answer) {
      std::lock_guard<std::mutex> g{mu};
      std::size_t start = 0;
      while (start <= body.size()) {
        auto end = body.find('\n', start);
        if (end == std::string_view::npos)
          end = body.size();
        auto topic = body.substr(start, end - start);
        if (!topic.empty() && pending.confirm(topic, origin, peers, now))
          confirmed_now.emplace_back(topic);
        start = end + 1;
      }
      poke_locked();
      return;
    }
    service_tag tag{};
    if (!to_service_tag(static_cast<std::uint8_t>(kind), tag)) {
      bump(m.mesh_malformed, 1);
      return;
    }
    wait_for_room();
    if (stopping.load())
      return;
    bump(m.mesh_service_received, 1);
    inflight.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g{events_mu};
    events->on_service_message(std::move(origin), tag, std::string{body});
  }

  void heartbeat_message(natsMsg* msg) {
    std::string_view data{natsMsg_GetData(msg),
                          static_cast<std::size_t>(natsMsg_GetDataLength(msg))};
    // [envelope: origin and incarnation][the ids the sender hears]
    constexpr std::size_t fixed = 18; // the envelope without its origin
    std::size_t size = data.size() < fixed ? 0 : fixed + static_cast<unsigned char>(data[17]);
    auto env = size > 0 && size <= data.size() ? mesh::decode_envelope(data.substr(0, size))
                                               : std::nullopt;
    if (!env || env->origin == opts.node_id) {
      if (!env)
        bump(m.mesh_malformed, 1);
      return;
    }
    auto heard_by = data.substr(size);
    auto now = clock::now();
    std::string restarted;
    {
      std::lock_guard<std::mutex> g{mu};
      auto change = peers.heard(env->origin, env->epoch, now);
      bool mutual = peers.hears(env->origin, heard_by, opts.node_id);
      switch (change) {
      case mesh::peer_table::change::none:
        break;
      case mesh::peer_table::change::up:
        spdlog::info("nats: peer {} is up", env->origin);
        break;
      case mesh::peer_table::change::back:
        spdlog::info("nats: peer {} is back", env->origin);
        break;
      case mesh::peer_table::change::restarted:
        spdlog::info("nats: peer {} restarted", env->origin);
        restarted = env->origin;
        break;
      }
      if (change != mesh::peer_table::change::none || mutual)
        heartbeat_soon = true; // tell it at once that we hear it
      poke_locked();
    }
    if (!restarted.empty()) {
      std::lock_guard<std::mutex> g{events_mu};
      events->on_peer_restart(restarted); // it lost what it held
    }
  }

  void peer_gone(const std::string& peer) {
    std::lock_guard<std::mutex> g{mu};
    if (peers.lost(peer, clock::now())) {
      bump(m.mesh_peers_lost, 1);
      spdlog::info("nats: peer {} is gone (no subscriber on its subject)", peer);
      poke_locked(); // the view and the confirmations waiting for it
    }
  }

  void link_changed(bool up) {
    if (stopping.load())
      return;
    bool was = connected.exchange(up);
    m.backbone_up.store(up ? 1 : 0);
    if (up == was)
      return;
    if (up) {
      bump(m.backbone_reconnects, 1);
      spdlog::info("nats: connected to a server");
      if (history && jsc) { // streams may be new; live messages may have been missed
        history->connected(*jsc);
        history->suspect();
      }
    } else {
      bump(m.backbone_disconnects, 1);
      spdlog::warn("nats: connection to the server lost; reconnecting");
    }
    std::lock_guard<std::mutex> g{mu};
    if (!up) {
      // nobody is reachable until a server is: peers leave the view at
      // once instead of after 3 silent heartbeat intervals
      auto now = clock::now();
      for (const auto& id : peers.live(now))
        peers.lost(id, now);
    }
    heartbeat_soon = true;
    poke_locked();
  }

  // ---------------------------------------------------------------- any thread

  void poke_locked() {
    work = true;
    wake.notify_one();
  }

  bool publish_raw(const std::string& subject, std::string_view data) {
    if (nc == nullptr)
      return false;
    natsStatus s =
        natsConnection_Publish(nc, subject.c_str(), data.data(), static_cast<int>(data.size()));
    if (s != NATS_OK) {
      m.drop(drop_reason::backbone);
      return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- timer thread

  void run() {
    auto next_heartbeat = clock::now();
    while (!stopping.load()) {
      std::vector<std::string> ready;
      std::optional<std::vector<std::string>> view;
      {
        std::unique_lock<std::mutex> l{mu};
        auto until = std::min(next_heartbeat, pending.earliest_deadline());
        wake.wait_until(l, until, [&] { return work || stopping.load(); });
        work = false;
        if (stopping.load())
          break;
        auto now = clock::now();
        if (heartbeat_soon || now >= next_heartbeat) {
          heartbeat_soon = false;
          next_heartbeat = now + opts.heartbeat;
          send_heartbeat_locked(now);
        }
        send_barriers_locked(now);
        ready.swap(confirmed_now);
        for (auto& d : pending.expire(peers, now, true)) {
          if (d.timed_out)
            bump(m.mesh_confirm_timeouts, 1);
          ready.push_back(std::move(d.topic));
        }
        view = peers.view_change(now);
        if (view)
          spdlog::debug("nats: live peers now {}", fmt::join(*view, ","));
        std::int64_t up = 0;
        auto json = peers.json(now, up, [](const std::string& id, std::int64_t ms) {
          spdlog::warn("nats: peer {} silent for {} ms", id, ms);
        });
        m.mesh_peers.store(up);
        peers_text = std::move(json);
      }
      std::lock_guard<std::mutex> g{events_mu};
      for (auto& topic : ready)
        if (auto t = nats::parse_topic_subject(opts.prefix, topic))
          events->on_subscribed(t->kind, std::move(t->name));
      if (view)
        events->on_view(std::move(*view));
    }
  }

  void send_heartbeat_locked(clock::time_point now) {
    mesh::envelope e{opts.node_id, incarnation, 0};
    auto body = mesh::encode_envelope(e);
    body += peers.heard_list(now);
    publish_raw(hb_subject, body);
  }

  // Each live peer answers the topics subscribed since the last round;
  // its answer comes back through its server after our SUBs did.
  void send_barriers_locked(clock::time_point now) {
    if (barrier_topics.empty())
      return;
    std::string body;
    for (const auto& t : barrier_topics) {
      if (!body.empty())
        body.push_back('\n');
      body += t;
    }
    barrier_topics.clear();
    auto msg = encode_node_message(barrier_ask, opts.node_id, body);
    for (const auto& peer : peers.live(now)) {
      auto subject = nats::node_subject(opts.prefix, peer);
      auto reply = gone_prefix + nats::encode_token(peer);
      if (natsConnection_PublishRequest(nc, subject.c_str(), reply.c_str(), msg.data(),
                                        static_cast<int>(msg.size())) != NATS_OK)
        m.drop(drop_reason::backbone);
    }
  }
};

nats_backbone::nats_backbone(nats_options opts, metrics& m)
  : impl_(std::make_unique<impl>(std::move(opts), m)) {}

nats_backbone::~nats_backbone() {
  stop();
}

void nats_backbone::start(std::shared_ptr<backbone_events> events) {
  auto& i = *impl_;
  i.events = std::move(events);
  i.m.backbone_kind = "nats";
  i.m.backbone_up.store(0);
  natsOptions* o = nullptr;
  check(natsOptions_Create(&o), "options");
  std::unique_ptr<natsOptions, decltype(&natsOptions_Destroy)> guard{o, natsOptions_Destroy};
  std::vector<const char*> urls;
  for (const auto& s : i.opts.servers)
    urls.push_back(s.c_str());
  check(natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size())), "servers");
  check(natsOptions_SetNoRandomize(o, true), "servers");
  check(natsOptions_SetName(o, ("wsnode " + i.opts.node_id).c_str()), "name");
  if (!i.opts.user.empty())
    check(natsOptions_SetUserInfo(o, i.opts.user.c_str(), i.opts.password.c_str()), "user");
  if (!i.opts.token.empty())
    check(natsOptions_SetToken(o, i.opts.token.c_str()), "token");
  if (!i.opts.creds_file.empty())
    check(natsOptions_SetUserCredentialsFromFiles(o, i.opts.creds_file.c_str(), nullptr),
          "creds_file");
  check(natsOptions_SetNoEcho(o, true), "no echo"); // the broker delivers its own locally
  // one delivery thread for every subscription, not one each
  check(natsOptions_UseGlobalMessageDelivery(o, true), "delivery");
  check(natsOptions_SetTimeout(o, 2000), "timeout");
  check(natsOptions_SetMaxReconnect(o, -1), "reconnect");
  check(natsOptions_SetReconnectWait(o, 100), "reconnect");
  check(natsOptions_SetReconnectJitter(o, 100, 1000), "reconnect");
  check(natsOptions_SetReconnectBufSize(o, i.opts.reconnect_buffer), "reconnect buffer");
  // a silent server (no RST: a partition) is left after ~3 missed pings
  auto ping = std::max<std::int64_t>(1000, 2 * i.opts.heartbeat.count());
  check(natsOptions_SetPingInterval(o, ping), "ping");
  check(natsOptions_SetMaxPingsOut(o, 3), "ping");
  check(natsOptions_SetDisconnectedCB(o, impl::on_disconnected, &i), "callbacks");
  check(natsOptions_SetReconnectedCB(o, impl::on_connected, &i), "callbacks");
  check(natsOptions_SetErrorHandler(o, impl::on_error, &i), "callbacks");
  check(natsOptions_SetRetryOnFailedConnect(o, true, impl::on_connected, &i), "retry");
  natsStatus s = natsConnection_Connect(&i.nc, o);
  if (s == NATS_OK) {
    i.connected.store(true);
    i.m.backbone_up.store(1);
    spdlog::info("nats: connected ({})", fmt::join(i.opts.servers, ","));
  } else if (s == NATS_NOT_YET_CONNECTED) {
    spdlog::warn("nats: no server answers yet ({}); retrying in the background",
                 fmt::join(i.opts.servers, ","));
  } else {
    throw std::runtime_error(fmt::format("nats: connect: {}", natsStatus_GetText(s)));
  }
  check(natsConnection_Subscribe(&i.hb_sub, i.nc, i.hb_subject.c_str(), impl::on_heartbeat, &i),
        "subscribe");
  check(natsConnection_Subscribe(&i.node_sub, i.nc, i.my_subject.c_str(), impl::on_node, &i),
        "subscribe");
  check(natsConnection_Subscribe(&i.gone_sub, i.nc, (i.gone_prefix + "*").c_str(), impl::on_gone,
                                 &i),
        "subscribe");
  if (i.history) {
    i.jsc = std::make_unique<js::client>(i.nc);
    i.jsc->start();
    for (const auto& subject : i.history->advisory_subjects()) {
      natsSubscription* sub = nullptr;
      check(natsConnection_Subscribe(&sub, i.nc, subject.c_str(), impl::on_advisory, &i),
            "subscribe");
      i.advisory_subs.push_back(sub);
    }
    i.history->connected(*i.jsc);
  }
  i.timer = std::thread([&i] { i.run(); });
}

void nats_backbone::stop() {
  auto& i = *impl_;
  if (i.stopping.exchange(true))
    return;
  {
    std::lock_guard<std::mutex> g{i.mu};
    i.wake.notify_all();
  }
  {
    std::lock_guard<std::mutex> g{i.flow_mu};
    i.flow.notify_all();
  }
  if (i.timer.joinable())
    i.timer.join();
  if (i.jsc)
    i.jsc->stop(); // what still waits is answered as timed out
  if (i.nc != nullptr)
    natsConnection_Close(i.nc);
  // nats.c's threads may be inside a callback of ours: wait them out
  while (i.in_callback.load() > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::lock_guard<std::mutex> g{i.mu};
  for (auto& [subject, sub] : i.subs)
    natsSubscription_Destroy(sub);
  i.subs.clear();
  for (auto* sub : i.advisory_subs)
    natsSubscription_Destroy(sub);
  i.advisory_subs.clear();
  natsSubscription_Destroy(i.hb_sub);
  natsSubscription_Destroy(i.node_sub);
  natsSubscription_Destroy(i.gone_sub);
  i.hb_sub = i.node_sub = i.gone_sub = nullptr;
  natsConnection_Destroy(i.nc);
  i.nc = nullptr;
}

bool nats_backbone::up() const noexcept {
  return impl_->connected.load() && !impl_->stopping.load();
}

std::string nats_backbone::peers_json() const {
  std::lock_guard<std::mutex> g{impl_->mu};
  return impl_->peers_text;
}

void nats_backbone::subscribe(topic_kind kind, std::string_view name) {
  auto& i = *impl_;
  auto subject = nats::topic_subject(i.opts.prefix, kind, name);
  auto now = clock::now();
  std::lock_guard<std::mutex> g{i.mu};
  if (i.stopping.load() || i.nc == nullptr)
    return;
  auto [it, fresh] = i.subs.try_emplace(subject, nullptr);
  if (fresh) {
    natsSubscription* sub = nullptr;
    natsStatus s = natsConnection_Subscribe(&sub, i.nc, subject.c_str(), impl::on_topic, &i);
    if (s != NATS_OK) {
      spdlog::warn("nats: subscribe {}: {}", subject, natsStatus_GetText(s));
      i.subs.erase(it);
    } else {
      // nats.c holds at most this much per subscription; past it: dropped, counted
      natsSubscription_SetPendingLimits(sub, 1 << 20, 256 << 20);
      it->second = sub;
    }
  }
  if (i.pending.add(subject, now + i.opts.subscribe_timeout, i.peers, now))
    i.confirmed_now.push_back(subject);
  else
    i.barrier_topics.push_back(subject);
  i.poke_locked();
}

void nats_backbone::unsubscribe(topic_kind kind, std::string_view name) {
  auto& i = *impl_;
  auto subject = nats::topic_subject(i.opts.prefix, kind, name);
  std::lock_guard<std::mutex> g{i.mu};
  i.pending.remove(subject);
  auto it = i.subs.find(subject);
  if (it == i.subs.end())
    return;
  natsSubscription_Unsubscribe(it->second);
  natsSubscription_Destroy(it->second);
  i.subs.erase(it);
}

void nats_backbone::publish(topic_kind kind, std::string_view name, const frame_ptr& frame) {
  auto& i = *impl_;
  if (i.publish_raw(nats::topic_subject(i.opts.prefix, kind, name), *frame))
    bump(i.m.mesh_sent, 1);
}

void nats_backbone::send_to_node(std::string_view node, service_tag service, std::string payload) {
  auto& i = *impl_;
  i.publish_raw(nats::node_subject(i.opts.prefix, node),
                encode_node_message(static_cast<char>(service), i.opts.node_id, payload));
}

std::shared_ptr<history_engine> nats_backbone::history() const {
  return impl_->history;
}

void nats_backbone::handled() noexcept {
  auto& i = *impl_;
  auto before = i.inflight.fetch_sub(1, std::memory_order_relaxed);
  if (before >= static_cast<std::int64_t>(i.opts.max_inflight)) {
    std::lock_guard<std::mutex> g{i.flow_mu};
    i.flow.notify_all();
  }
}

} // namespace wsnode::transport
