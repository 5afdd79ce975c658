#include "actors/shard_router.hpp"

#include "actors/broker.hpp"
#include "actors/messages.hpp"

#include <caf/all.hpp>

namespace wsnode::actors {

namespace {

class shard_router final : public backbone_events {
public:
  shard_router(std::shared_ptr<const broker_set> brokers, caf::actor desk)
    : brokers_(std::move(brokers)), desk_(std::move(desk)) {}

  void on_remote(topic_kind kind, std::string name, frame_ptr frame) override {
    const auto& shard = brokers_->owner(name);
    caf::anon_send(shard, atoms::remote::value, static_cast<std::uint8_t>(kind), std::move(name),
                   std::move(frame));
  }

  void on_subscribed(topic_kind kind, std::string name) override {
    const auto& shard = brokers_->owner(name);
    caf::anon_send(shard, atoms::mesh_ok::value, static_cast<std::uint8_t>(kind), std::move(name));
  }

  // A service message concerns one channel, named before its first '\n':
  // the shard of that channel holds the service's state for it.
  void on_service_message(std::string from, service_tag service, std::string payload) override {
    if (service == service_tag::cluster) {
      caf::anon_send(desk_, atoms::node_msg::value, std::move(from),
                     static_cast<std::uint8_t>(service), std::move(payload));
      return;
    }
    auto ch = std::string_view{payload}.substr(0, payload.find('\n'));
    const auto& shard = brokers_->owner(ch);
    caf::anon_send(shard, atoms::node_msg::value, std::move(from),
                   static_cast<std::uint8_t>(service), std::move(payload));
  }

  void on_view(std::vector<std::string> live) override {
    for (const auto& shard : brokers_->all())
      caf::anon_send(shard, atoms::view::value, live);
    caf::anon_send(desk_, atoms::view::value, std::move(live));
  }

  void on_peer_restart(std::string node) override {
    for (const auto& shard : brokers_->all())
      caf::anon_send(shard, atoms::restarted::value, node);
    caf::anon_send(desk_, atoms::restarted::value, std::move(node));
  }

private:
  std::shared_ptr<const broker_set> brokers_;
  caf::actor desk_;
};

} // namespace

std::shared_ptr<backbone_events> route_to_shards(std::shared_ptr<const broker_set> brokers,
                                                 caf::actor desk) {
  return std::make_shared<shard_router>(std::move(brokers), std::move(desk));
}

} // namespace wsnode::actors
