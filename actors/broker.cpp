#include "actors/broker.hpp"

#include "actors/messages.hpp"

#include <spdlog/spdlog.h>

namespace wsnode {

// ---------------------------------------------------------------- broker_core

broker_core::broker_core(metrics& m, std::shared_ptr<backbone> bb)
  : metrics_(m), backbone_(std::move(bb)) {
  // nop
}

bool broker_core::join(sid_type sid, std::string user, sink_ptr sink) {
  auto [it, inserted] = sessions_.try_emplace(sid, session_rec{std::move(user), std::move(sink)});
  if (!inserted)
    return false;
  if (users_.add(it->second.user, sid, it->second.sink.get()) && backbone_)
    backbone_->subscribe(topic_kind::user, it->second.user);
  update_gauges();
  return true;
}

void broker_core::leave(sid_type sid) {
  auto it = sessions_.find(sid);
  if (it == sessions_.end())
    return;
  channels_.remove_all(sid, [this](std::string_view ch) {
    if (backbone_)
      backbone_->unsubscribe(topic_kind::channel, ch);
  });
  if (users_.remove(it->second.user, sid) && backbone_)
    backbone_->unsubscribe(topic_kind::user, it->second.user);
  sessions_.erase(it);
  update_gauges();
}

bool broker_core::subscribe(sid_type sid, std::string_view ch) {
  auto it = sessions_.find(sid);
  if (it == sessions_.end())
    return false;
  if (channels_.add(ch, sid, it->second.sink.get()) && backbone_)
    backbone_->subscribe(topic_kind::channel, ch);
  update_gauges();
  return true;
}

bool broker_core::unsubscribe(sid_type sid, std::string_view ch) {
  auto* subs = channels_.find(ch);
  if (subs == nullptr || subs->count(sid) == 0)
    return false;
  if (channels_.remove(ch, sid) && backbone_)
    backbone_->unsubscribe(topic_kind::channel, ch);
  update_gauges();
  return true;
}

std::size_t broker_core::fan_out(const topic_registry<frame_sink*>::subscribers* subs,
                                 const frame_ptr& frame) {
  if (subs == nullptr)
    return 0;
  std::size_t queued = 0;
  for (const auto& [sid, sink] : *subs)
    if (sink->send(frame) == send_result::queued)
      ++queued;
  bump(metrics_.deliveries, queued);
  return queued;
}

std::size_t broker_core::publish(std::string_view ch, const frame_ptr& frame) {
  bump(metrics_.publishes, 1);
  auto n = fan_out(channels_.find(ch), frame);
  if (backbone_)
    backbone_->publish(topic_kind::channel, ch, frame);
  return n;
}

std::size_t broker_core::send_to_user(std::string_view user, const frame_ptr& frame) {
  bump(metrics_.direct_messages, 1);
  auto n = fan_out(users_.find(user), frame);
  if (backbone_)
    backbone_->publish(topic_kind::user, user, frame);
  return n;
}

std::size_t broker_core::deliver_remote(topic_kind kind, std::string_view name,
                                        const frame_ptr& frame) {
  return fan_out(kind == topic_kind::channel ? channels_.find(name) : users_.find(name), frame);
}

void broker_core::close_all(std::uint16_t code, const std::string& reason) {
  for (auto& [sid, rec] : sessions_)
    rec.sink->close(code, reason);
}

std::size_t broker_core::subscriber_count(std::string_view ch) const {
  auto* subs = channels_.find(ch);
  return subs == nullptr ? 0 : subs->size();
}

void broker_core::update_gauges() noexcept {
  metrics_.channels.store(static_cast<std::int64_t>(channels_.topic_count()),
                          std::memory_order_relaxed);
  metrics_.users.store(static_cast<std::int64_t>(users_.topic_count()), std::memory_order_relaxed);
}

// ---------------------------------------------------------------- broker actor

namespace {

struct broker_state {
  std::unique_ptr<broker_core> core;
  std::unordered_map<caf::actor_id, caf::actor> actors; // session actors by sid
  bool draining = false;
  static inline const char* name = "wsnode.broker";
};

caf::behavior broker_actor(caf::stateful_actor<broker_state>* self, metrics* m,
                           std::shared_ptr<backbone> bb) {
  self->state.core = std::make_unique<broker_core>(*m, std::move(bb));
  self->set_down_handler([=](caf::down_msg& dm) {
    auto sid = dm.source.id();
    self->state.core->leave(sid);
    self->state.actors.erase(sid);
  });
  auto done = [](const api_completion& c, bool ok) {
    if (c.fn)
      c.fn(ok);
  };
  return {
      [=](atoms::join, std::uint64_t sid, std::string& user, sink_ptr& sink, caf::actor& who) {
        if (self->state.draining)
          sink->close(close_code::going_away, "node draining");
        if (!self->state.core->join(sid, std::move(user), std::move(sink)))
          return;
        self->monitor(who);
        self->state.actors.emplace(sid, std::move(who));
      },
      [=](atoms::sub, std::uint64_t sid, const std::string& ch) {
        self->state.core->subscribe(sid, ch);
      },
      [=](atoms::unsub, std::uint64_t sid, const std::string& ch) {
        self->state.core->unsubscribe(sid, ch);
      },
      [=](atoms::pub, const std::string& ch, const frame_ptr& frame) {
        self->state.core->publish(ch, frame);
      },
      [=](atoms::dm, const std::string& user, const frame_ptr& frame) {
        self->state.core->send_to_user(user, frame);
      },
      [=](atoms::pub, const std::string& ch, const frame_ptr& frame, const api_completion& c) {
        self->state.core->publish(ch, frame);
        done(c, true);
      },
      [=](atoms::dm, const std::string& user, const frame_ptr& frame, const api_completion& c) {
        self->state.core->send_to_user(user, frame);
        done(c, true);
      },
      [=](atoms::remote, std::uint8_t kind, const std::string& name, const frame_ptr& frame) {
        self->state.core->deliver_remote(static_cast<topic_kind>(kind), name, frame);
      },
      [=](atoms::drain) {
        self->state.draining = true;
        spdlog::info("draining: closing {} sessions with 1001", self->state.core->session_count());
        self->state.core->close_all(close_code::going_away, "node draining");
      },
      [=](atoms::shutdown) {
        for (auto& [sid, a] : self->state.actors)
          self->send_exit(a, caf::exit_reason::user_shutdown);
        self->quit(caf::exit_reason::user_shutdown);
      },
      [=](atoms::stats) {
        auto& c = *self->state.core;
        return caf::result<std::uint64_t, std::uint64_t, std::uint64_t>{
            c.session_count(), c.channel_count(), c.user_count()};
      },
  };
}

} // namespace

caf::actor spawn_broker(caf::actor_system& sys, metrics& m, std::shared_ptr<backbone> bb) {
  return sys.spawn(broker_actor, &m, std::move(bb));
}

} // namespace wsnode
