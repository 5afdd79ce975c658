#include "transport/nats_backbone.hpp"

#include "transport/js_client.hpp"
#include "transport/js_wire.hpp"
#include "transport/nats_connect.hpp"
#include "transport/nats_subjects.hpp"
#include "transport/nats_view.hpp"

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

std::string_view data_of(natsMsg* msg) {
  return {natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))};
}

} // namespace

struct nats_backbone::impl {
  impl(nats_options o, metrics& mm)
    : opts(std::move(o)), m(mm), view(opts.node_id, opts.heartbeat) {
    std::random_device rd;
    incarnation = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
                  static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
    hb_subject = nats::heartbeat_subject(opts.prefix);
    my_subject = nats::node_subject(opts.prefix, opts.node_id);
    gone_prefix = opts.prefix + ".gone." + nats::encode_token(opts.node_id) + ".";
    if (opts.history)
      history = std::make_shared<js_history>(*opts.history, m);
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
  std::shared_ptr<backbone_events> events;
  std::mutex events_mu; // events are reported one call at a time

  natsConnection* nc = nullptr;
  std::vector<natsSubscription*> fixed_subs; // heartbeats, our subject, "gone", advisories
  // channel history in JetStream (when a namespace keeps history)
  std::shared_ptr<js_history> history;
  std::unique_ptr<js::client> jsc;
  std::atomic<bool> connected{false};
  std::atomic<bool> stopping{false};
  std::atomic<int> in_callback{0}; // nats.c threads inside one of ours

  nats::node_view view;
  std::mutex mu; // subs, work, peers_text
  std::condition_variable wake;
  bool work = false;
  bool closed = false; // nats.c made its last connection callback
  std::unordered_map<std::string, natsSubscription*> subs; // topic subscriptions by subject
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

  // Runs (self.*f)(msg) for a message callback, then frees the message.
  template <void (impl::*F)(natsMsg*)>
  static void on(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    if (!self.stopping.load())
      (self.*F)(msg);
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
  // nats.c calls the connection's callbacks from its own thread, after
  // natsConnection_Close returned: stop() waits for this last one.
  static void on_closed(natsConnection*, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    callback_scope scope{self};
    std::lock_guard<std::mutex> g{self.mu};
    self.closed = true;
    self.wake.notify_all();
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

  // Waits while the broker has too many messages of ours unhandled: nats.c
  // queues behind (bounded per subscription; past it, dropped and counted).
  bool take_room() {
    auto max = static_cast<std::int64_t>(opts.max_inflight);
    if (inflight.load(std::memory_order_relaxed) >= max) {
      std::unique_lock<std::mutex> l{flow_mu};
      flow.wait(l, [&] { return inflight.load() < max || stopping.load(); });
    }
    if (stopping.load())
      return false;
    inflight.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void topic_message(natsMsg* msg) {
    auto t = nats::parse_topic_subject(opts.prefix, natsMsg_GetSubject(msg));
    if (!t) {
      bump(m.mesh_malformed, 1);
      return;
    }
    js::reply r{msg};
    if (history && !r.header("Nats-Stream").empty()) {
      // a history channel's record, republished by JetStream once stored
      auto frames = js::live_frames(r, t->name);
      if (!frames) {
        bump(m.mesh_malformed, 1);
        return;
      }
      for (auto& f : *frames) // none for an epoch's marker
        deliver(t->kind, t->name, std::move(f));
      return;
    }
    deliver(t->kind, std::move(t->name), std::string{data_of(msg)});
  }

  void deliver(topic_kind kind, std::string name, std::string data) {
    if (!take_room())
      return;
    bump(m.mesh_received, 1);
    std::lock_guard<std::mutex> g{events_mu};
    events->on_remote(kind, std::move(name), make_frame(std::move(data)));
  }

  void node_message(natsMsg* msg) {
    auto nm = nats::decode_node_message(data_of(msg));
    if (!nm) {
      bump(m.mesh_malformed, 1);
      return;
    }
    if (nm->kind == nats::barrier_ask) {
      // our server routed their SUBs before this message: answer through it
      publish_raw(nats::node_subject(opts.prefix, nm->origin),
                  nats::encode_node_message(nats::barrier_answer, opts.node_id, nm->body));
      return;
    }
    if (nm->kind == nats::barrier_answer) {
      view.answered(nm->origin, nm->body, clock::now());
      poke();
      return;
    }
    service_tag tag{};
    if (!to_service_tag(static_cast<std::uint8_t>(nm->kind), tag)) {
      bump(m.mesh_malformed, 1);
      return;
    }
    if (!take_room())
      return;
    bump(m.mesh_service_received, 1);
    std::lock_guard<std::mutex> g{events_mu};
    events->on_service_message(std::move(nm->origin), tag, std::string{nm->body});
  }

  void heartbeat_message(natsMsg* msg) {
    auto hb = nats::decode_heartbeat(data_of(msg));
    if (!hb) {
      bump(m.mesh_malformed, 1);
      return;
    }
    if (hb->origin == opts.node_id)
      return;
    using change = mesh::peer_table::change;
    auto c = view.heard(*hb, clock::now());
    if (c == change::up)
      spdlog::info("nats: peer {} is up", hb->origin);
    else if (c == change::back)
      spdlog::info("nats: peer {} is back", hb->origin);
    else if (c == change::restarted)
      spdlog::info("nats: peer {} restarted", hb->origin);
    poke();
    if (c == change::restarted) {
      std::lock_guard<std::mutex> g{events_mu};
      events->on_peer_restart(hb->origin); // it lost what it held
    }
  }

  void gone_message(natsMsg* msg) {
    if (!natsMsg_IsNoResponders(msg))
      return;
    std::string_view subject = natsMsg_GetSubject(msg);
    auto peer = nats::decode_token(subject.substr(std::min(subject.size(), gone_prefix.size())));
    if (peer && view.gone(*peer, clock::now())) {
      bump(m.mesh_peers_lost, 1);
      spdlog::info("nats: peer {} is gone (no subscriber on its subject)", *peer);
      poke(); // the view and the confirmations waiting for it
    }
  }

  // A stream's new leader republishes from its own point: what the old one
  // had stored but not republished yet is found by a check of the tops.
  void advisory_message(natsMsg*) {
    if (history)
      history->suspect();
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
      view.heartbeat_soon();
      if (history && jsc) { // streams may be new; live messages may have been missed
        history->connected(*jsc);
        history->suspect();
      }
    } else {
      bump(m.backbone_disconnects, 1);
      spdlog::warn("nats: connection to the server lost; reconnecting");
      view.link_lost(clock::now()); // nobody is reachable until a server is
    }
    poke();
  }

  // ---------------------------------------------------------------- any thread

  void poke() {
    std::lock_guard<std::mutex> g{mu};
    work = true;
    wake.notify_one();
  }

  bool publish_raw(const std::string& subject, std::string_view data) {
    if (natsConnection_Publish(nc, subject.c_str(), data.data(), static_cast<int>(data.size())) !=
        NATS_OK) {
      m.drop(drop_reason::backbone); // disconnected and the reconnect buffer is full
      return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- timer thread

  void run() {
    auto next = clock::now();
    while (!stopping.load()) {
      {
        std::unique_lock<std::mutex> l{mu};
        wake.wait_until(l, next, [&] { return work || stopping.load(); });
        work = false;
      }
      if (stopping.load())
        break;
      auto r = view.step(clock::now(), incarnation, next);
      if (r.heartbeat_body)
        publish_raw(hb_subject, *r.heartbeat_body);
      if (!r.barrier_peers.empty()) {
        auto msg = nats::encode_node_message(nats::barrier_ask, opts.node_id, r.barrier_body);
        for (const auto& peer : r.barrier_peers) {
          auto subject = nats::node_subject(opts.prefix, peer);
          auto reply = gone_prefix + nats::encode_token(peer);
          if (natsConnection_PublishRequest(nc, subject.c_str(), reply.c_str(), msg.data(),
                                            static_cast<int>(msg.size())) != NATS_OK)
            m.drop(drop_reason::backbone);
        }
      }
      bump(m.mesh_confirm_timeouts, r.timed_out);
      m.mesh_peers.store(r.live);
      {
        std::lock_guard<std::mutex> g{mu};
        peers_text = std::move(r.peers_json);
      }
      if (r.view)
        spdlog::debug("nats: live peers now {}", fmt::join(*r.view, ","));
      std::lock_guard<std::mutex> g{events_mu};
      for (auto& topic : r.ready)
        if (auto t = nats::parse_topic_subject(opts.prefix, topic))
          events->on_subscribed(t->kind, std::move(t->name));
      if (r.view)
        events->on_view(std::move(*r.view));
    }
  }

  void subscribe_fixed(const std::string& subject, natsMsgHandler cb) {
    natsSubscription* sub = nullptr;
    check(natsConnection_Subscribe(&sub, nc, subject.c_str(), cb, this), "subscribe");
    fixed_subs.push_back(sub);
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
  nats_callbacks cb{impl::on_disconnected, impl::on_connected, impl::on_error, impl::on_closed, &i};
  std::unique_ptr<natsOptions, decltype(&natsOptions_Destroy)> o{make_nats_options(i.opts, cb),
                                                                 natsOptions_Destroy};
  natsStatus s = natsConnection_Connect(&i.nc, o.get());
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
  i.subscribe_fixed(i.hb_subject, impl::on<&impl::heartbeat_message>);
  i.subscribe_fixed(i.my_subject, impl::on<&impl::node_message>);
  i.subscribe_fixed(i.gone_prefix + "*", impl::on<&impl::gone_message>);
  if (i.history) {
    i.jsc = std::make_unique<js::client>(i.nc);
    i.jsc->start();
    for (const auto& subject : i.history->advisory_subjects())
      i.subscribe_fixed(subject, impl::on<&impl::advisory_message>);
    i.history->connected(*i.jsc);
  }
  i.timer = std::thread([&i] { i.run(); });
}

void nats_backbone::stop() {
  auto& i = *impl_;
  if (i.stopping.exchange(true))
    return;
  i.poke();
  {
    std::lock_guard<std::mutex> g{i.flow_mu};
    i.flow.notify_all();
  }
  if (i.timer.joinable())
    i.timer.join();
  if (i.jsc)
    i.jsc->stop(); // what still waits is answered as timed out
  if (i.nc != nullptr) {
    natsConnection_Close(i.nc);
    std::unique_lock<std::mutex> l{i.mu};
    i.wake.wait_for(l, std::chrono::seconds(5), [&] { return i.closed; });
  }
  // nats.c's threads may be inside a callback of ours: wait them out
  while (i.in_callback.load() > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::lock_guard<std::mutex> g{i.mu};
  for (auto& [subject, sub] : i.subs)
    natsSubscription_Destroy(sub);
  i.subs.clear();
  for (auto* sub : i.fixed_subs)
    natsSubscription_Destroy(sub);
  i.fixed_subs.clear();
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
  {
    std::lock_guard<std::mutex> g{i.mu};
    if (i.stopping.load() || i.nc == nullptr)
      return;
    auto [it, fresh] = i.subs.try_emplace(subject, nullptr);
    if (fresh) {
      natsSubscription* sub = nullptr;
      natsStatus s =
          natsConnection_Subscribe(&sub, i.nc, subject.c_str(), impl::on<&impl::topic_message>, &i);
      if (s != NATS_OK) {
        spdlog::warn("nats: subscribe {}: {}", subject, natsStatus_GetText(s));
        i.subs.erase(it);
      } else {
        // nats.c holds at most this much per subscription; past it: dropped, counted
        natsSubscription_SetPendingLimits(sub, 1 << 20, 256 << 20);
        it->second = sub;
      }
    }
  }
  i.view.subscribed(std::move(subject), now + i.opts.subscribe_timeout, now);
  i.poke();
}

void nats_backbone::unsubscribe(topic_kind kind, std::string_view name) {
  auto& i = *impl_;
  auto subject = nats::topic_subject(i.opts.prefix, kind, name);
  i.view.unsubscribed(subject);
  std::lock_guard<std::mutex> g{i.mu};
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
                nats::encode_node_message(static_cast<char>(service), i.opts.node_id, payload));
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
