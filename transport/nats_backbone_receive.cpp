// nats_backbone (nats_backbone_impl.hpp), what nats.c delivers, on its one
// delivery thread for every subscription: the message callback and its
// handlers (topic messages and history records to the broker, service
// messages and barriers on our subject, heartbeats, "no responders" for a
// gone peer, JetStream's leader advisories), and the wait while the broker
// is behind (released by handled(), nats_backbone_publish.cpp). The
// per-message path (on, topic_message, deliver, take_room) is all here, so
// its calls stay within one file and inline.
#include "transport/nats_backbone_impl.hpp"

#include "transport/js_wire.hpp"
#include "transport/nats_subjects.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace wsnode::transport {

namespace {

using clock = std::chrono::steady_clock;

std::string_view data_of(natsMsg* msg) {
  return {natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))};
}

} // namespace

template <void (nats_backbone::impl::*F)(natsMsg*)>
void nats_backbone::impl::on(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto& self = *static_cast<impl*>(closure);
  callback_scope scope{self};
  if (!self.stopping.load())
    (self.*F)(msg);
  natsMsg_Destroy(msg);
}

// Waits while the broker has too many messages of ours unhandled: nats.c
// queues behind (bounded per subscription; past it, dropped and counted).
inline bool nats_backbone::impl::take_room() {
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

void nats_backbone::impl::topic_message(natsMsg* msg) {
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

inline void nats_backbone::impl::deliver(topic_kind kind, std::string name, std::string data) {
  if (!take_room())
    return;
  bump(m.mesh_received, 1);
  std::lock_guard<std::mutex> g{events_mu};
  events->on_remote(kind, std::move(name), make_frame(std::move(data)));
}

void nats_backbone::impl::node_message(natsMsg* msg) {
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

void nats_backbone::impl::heartbeat_message(natsMsg* msg) {
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

void nats_backbone::impl::gone_message(natsMsg* msg) {
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
void nats_backbone::impl::advisory_message(natsMsg*) {
  if (history)
    history->suspect();
}

// Every message callback registered with nats.c, instantiated here beside
// its handler (nats_backbone.cpp and nats_backbone_publish.cpp register them).
template void nats_backbone::impl::on<&nats_backbone::impl::topic_message>(natsConnection*,
                                                                           natsSubscription*,
                                                                           natsMsg*, void*);
template void nats_backbone::impl::on<&nats_backbone::impl::node_message>(natsConnection*,
                                                                          natsSubscription*,
                                                                          natsMsg*, void*);
template void nats_backbone::impl::on<&nats_backbone::impl::heartbeat_message>(natsConnection*,
                                                                               natsSubscription*,
                                                                               natsMsg*, void*);
template void nats_backbone::impl::on<&nats_backbone::impl::gone_message>(natsConnection*,
                                                                          natsSubscription*,
                                                                          natsMsg*, void*);
template void nats_backbone::impl::on<&nats_backbone::impl::advisory_message>(natsConnection*,
                                                                              natsSubscription*,
                                                                              natsMsg*, void*);

} // namespace wsnode::transport
