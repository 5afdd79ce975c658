// nats_backbone (nats_backbone_impl.hpp), the connection's life and the
// node view: the start (connect, the fixed subscriptions, JetStream), the
// stop that waits nats.c's threads out, nats.c's connection callbacks, and
// the timer thread that sends heartbeats and barriers and reports the view
// and the confirmed subscriptions. Nothing here is on a per-message path;
// the broker's calls are in nats_backbone_publish.cpp, what nats.c
// delivers in nats_backbone_receive.cpp.
#include "transport/nats_backbone_impl.hpp"

#include "transport/nats_connect.hpp"
#include "transport/nats_subjects.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <random>
#include <stdexcept>

namespace wsnode::transport {

namespace {

using clock = std::chrono::steady_clock;

} // namespace

nats_backbone::impl::impl(nats_options o, metrics& mm)
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

// ---------------------------------------------------------------- nats.c callbacks

void nats_backbone::impl::on_disconnected(natsConnection*, void* closure) {
  auto& self = *static_cast<impl*>(closure);
  callback_scope scope{self};
  self.link_changed(false);
}

void nats_backbone::impl::on_connected(natsConnection*, void* closure) {
  auto& self = *static_cast<impl*>(closure);
  callback_scope scope{self};
  self.link_changed(true);
}

// nats.c calls the connection's callbacks from its own thread, after
// natsConnection_Close returned: stop() waits for this last one.
void nats_backbone::impl::on_closed(natsConnection*, void* closure) {
  auto& self = *static_cast<impl*>(closure);
  callback_scope scope{self};
  std::lock_guard<std::mutex> g{self.mu};
  self.closed = true;
  self.wake.notify_all();
}

void nats_backbone::impl::on_error(natsConnection*, natsSubscription* sub, natsStatus err,
                                   void* closure) {
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

inline void nats_backbone::impl::link_changed(bool up) {
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

void nats_backbone::impl::poke() {
  std::lock_guard<std::mutex> g{mu};
  work = true;
  wake.notify_one();
}

// ---------------------------------------------------------------- timer thread

inline void nats_backbone::impl::run() {
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

void nats_backbone::impl::subscribe_fixed(const std::string& subject, natsMsgHandler cb) {
  natsSubscription* sub = nullptr;
  check(natsConnection_Subscribe(&sub, nc, subject.c_str(), cb, this), "subscribe");
  fixed_subs.push_back(sub);
}

// ---------------------------------------------------------------- nats_backbone

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

std::shared_ptr<history_engine> nats_backbone::history() const {
  return impl_->history;
}

} // namespace wsnode::transport
