// nats_backbone (nats_backbone_impl.hpp), the broker's calls: a topic's
// subscription on its first local interest and its end after the last
// (confirmed later by the node view's barrier, nats_backbone.cpp), the
// publishes to a topic or to one node's subject straight into nats.c's
// buffered, thread-safe publish, and handled(), which lets the delivery
// thread go on (nats_backbone_receive.cpp). The per-message path (publish,
// publish_raw) is all here, so its call stays within one file and inline.
#include "transport/nats_backbone_impl.hpp"

#include "transport/nats_subjects.hpp"

#include <spdlog/spdlog.h>

namespace wsnode::transport {

namespace {

using clock = std::chrono::steady_clock;

} // namespace

bool nats_backbone::impl::publish_raw(const std::string& subject, std::string_view data) {
  if (natsConnection_Publish(nc, subject.c_str(), data.data(), static_cast<int>(data.size())) !=
      NATS_OK) {
    m.drop(drop_reason::backbone); // disconnected and the reconnect buffer is full
    return false;
  }
  return true;
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

void nats_backbone::handled() noexcept {
  auto& i = *impl_;
  auto before = i.inflight.fetch_sub(1, std::memory_order_relaxed);
  if (before >= static_cast<std::int64_t>(i.opts.max_inflight)) {
    std::lock_guard<std::mutex> g{i.flow_mu};
    i.flow.notify_all();
  }
}

} // namespace wsnode::transport
