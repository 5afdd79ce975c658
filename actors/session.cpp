#include "actors/session.hpp"

#include "actors/messages.hpp"
#include "actors/rate_limiter.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <deque>
#include <unordered_set>
#include <utility>
#include <vector>

namespace wsnode {

namespace {

using protocol::error_code;

struct session_state {
  std::shared_ptr<const session_config> cfg;
  metrics* m = nullptr;
  caf::actor broker;
  sink_ptr sink;
  std::uint64_t sid = 0;
  std::string user;
  std::unordered_set<std::string> subs;
  token_bucket rate{0, 1};
  token_bucket errors{0, 1};
  bool closing = false;
  bool joined = false;
  // Replies waiting behind a `sub` that is not live yet, in command order;
  // pending_base is the slot number of pending.front().
  struct held_reply {
    frame_ptr frame;
    bool ready = false;
  };
  std::deque<held_reply> pending;
  std::uint64_t pending_base = 0;
  // Commands received before `joined` (bounded: transport pauses reading
  // while received messages are unhandled).
  std::vector<std::pair<std::string, bool>> early;
  static inline const char* name = "wsnode.session";
};

using session_ptr = caf::stateful_actor<session_state>*;

// Replies go out in the order of the commands they answer. A `sub` is
// answered when the broker reports it live (at once on a single node, after
// the mesh confirmed it in a cluster); replies to later commands wait behind
// it in `pending`.
void send_in_order(session_state& st) {
  while (!st.pending.empty() && st.pending.front().ready) {
    st.sink->send(std::move(st.pending.front().frame));
    st.pending.pop_front();
    ++st.pending_base;
  }
}

void reply(session_state& st, frame_ptr f) {
  if (st.pending.empty()) {
    st.sink->send(std::move(f));
    return;
  }
  st.pending.push_back({std::move(f), true});
}

// Sends an err frame; closes the session with 1008 once the client has
// used up its error budget (repeated abuse).
void reply_error(session_ptr self, std::string_view id, error_code code, std::string_view msg) {
  auto& st = self->state;
  st.m->error(code);
  reply(st, make_frame(protocol::encode_err(id, code, msg)));
  if (!st.errors.take()) {
    st.closing = true;
    st.sink->close(close_code::policy, "too many errors");
    self->quit();
  }
}

bool readonly(const session_config& cfg, std::string_view ch) {
  auto ns = protocol::channel_namespace(ch);
  return std::find(cfg.readonly_namespaces.begin(), cfg.readonly_namespaces.end(), ns) !=
         cfg.readonly_namespaces.end();
}

void handle(session_ptr self, const std::string& text, bool binary) {
  auto& st = self->state;
  if (binary) {
    reply_error(self, {}, error_code::bad_request, "binary frames are not supported");
    return;
  }
  auto parsed = protocol::parse_command(text, st.cfg->limits);
  if (auto* err = std::get_if<protocol::command_error>(&parsed)) {
    reply_error(self, err->id, err->code, err->msg);
    return;
  }
  auto& cmd = std::get<protocol::command>(parsed);
  if (!st.rate.take()) {
    st.m->drop(drop_reason::rate_limited);
    reply_error(self, cmd.id, error_code::rate_limited, "too many messages; slow down");
    return;
  }
  switch (cmd.kind) {
  case protocol::op::sub:
    if (!st.subs.contains(cmd.ch)) {
      if (st.subs.size() >= st.cfg->max_subscriptions) {
        reply_error(self, cmd.id, error_code::forbidden,
                    "subscription limit reached (" + std::to_string(st.cfg->max_subscriptions) +
                        ")");
        return;
      }
      st.subs.insert(cmd.ch);
    }
    // answered once the broker reports the subscription live on every node
    st.pending.push_back({make_frame(protocol::encode_ack(cmd.id)), false});
    self->send(st.broker, atoms::sub::value, st.sid, cmd.ch,
               st.pending_base + st.pending.size() - 1);
    return;
  case protocol::op::unsub:
    if (st.subs.erase(cmd.ch) > 0)
      self->send(st.broker, atoms::unsub::value, st.sid, cmd.ch);
    reply(st, make_frame(protocol::encode_ack(cmd.id)));
    return;
  case protocol::op::pub:
    if (readonly(*st.cfg, cmd.ch)) {
      reply_error(self, cmd.id, error_code::forbidden, "clients may not publish to this namespace");
      return;
    }
    self->send(st.broker, atoms::pub::value, cmd.ch,
               make_frame(protocol::encode_msg(cmd.ch, st.user, cmd.data)));
    reply(st, make_frame(protocol::encode_ack(cmd.id)));
    return;
  case protocol::op::send:
    self->send(st.broker, atoms::dm::value, cmd.to,
               make_frame(protocol::encode_dm(st.user, cmd.data)));
    reply(st, make_frame(protocol::encode_ack(cmd.id)));
    return;
  case protocol::op::ping:
    reply(st, make_frame(protocol::encode_pong(cmd.id)));
    return;
  }
}

caf::behavior session_actor(session_ptr self, std::shared_ptr<const session_config> cfg, metrics* m,
                            caf::actor broker, std::string user, sink_ptr sink) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.m = m;
  st.broker = std::move(broker);
  st.sink = std::move(sink);
  st.sid = self->id();
  st.user = std::move(user);
  st.rate = token_bucket{st.cfg->messages_per_second, st.cfg->burst};
  double window_s = std::chrono::duration<double>(st.cfg->error_window).count();
  st.errors = token_bucket{window_s > 0 ? st.cfg->max_errors / window_s : 0, st.cfg->max_errors};
  // The broker sends hello once the user is reachable from every node, then
  // tells us `joined`; commands that arrive before are kept until then.
  self->send(st.broker, atoms::join::value, st.sid, st.user, st.sink,
             caf::actor_cast<caf::actor>(self),
             make_frame(protocol::encode_hello(st.cfg->node_id, st.user,
                                               st.cfg->node_id + "-" + std::to_string(st.sid))));
  // Without a broker a session is useless: end with it (node shutdown).
  self->monitor(st.broker);
  self->set_down_handler([=](caf::down_msg&) {
    self->state.sink->close(close_code::going_away, "node shutting down");
    self->quit();
  });
  auto input = [=](const std::string& text, bool binary) {
    bump(self->state.m->messages_in, 1);
    if (!self->state.closing)
      handle(self, text, binary);
    self->state.sink->input_done();
  };
  return {
      [=](atoms::ws_in, std::string& text, bool binary) {
        if (!self->state.joined) {
          self->state.early.emplace_back(std::move(text), binary);
          return;
        }
        input(text, binary);
      },
      [=](atoms::joined) {
        auto& st = self->state;
        st.joined = true;
        auto early = std::move(st.early);
        st.early.clear();
        for (auto& [text, binary] : early)
          input(text, binary);
      },
      [=](atoms::sub_ok, std::uint64_t slot) {
        auto& st = self->state;
        if (slot < st.pending_base || slot - st.pending_base >= st.pending.size())
          return;
        st.pending[slot - st.pending_base].ready = true;
        send_in_order(st);
      },
      [=](atoms::ws_closed) { self->quit(); },
  };
}

// Feeds one connection's input into its session actor. Holding the handler
// keeps the actor alive; dropping it (connection gone) lets the actor end.
class actor_handler final : public session_handler {
public:
  explicit actor_handler(caf::actor a) : actor_(std::move(a)) {}
  ~actor_handler() override {
    if (actor_)
      caf::anon_send(actor_, atoms::ws_closed::value);
  }
  void on_message(std::string text, bool binary) override {
    caf::anon_send(actor_, atoms::ws_in::value, std::move(text), binary);
  }
  void on_closed() override {
    caf::anon_send(actor_, atoms::ws_closed::value);
    actor_ = nullptr;
  }

private:
  caf::actor actor_;
};

} // namespace

spawned_session spawn_session(caf::actor_system& sys, std::shared_ptr<const session_config> cfg,
                              metrics& m, const caf::actor& broker, const session_identity& who,
                              sink_ptr sink) {
  auto a = sys.spawn(session_actor, std::move(cfg), &m, broker, who.user, std::move(sink));
  spawned_session s;
  s.sid = a.id();
  s.handler = std::make_unique<actor_handler>(std::move(a));
  return s;
}

} // namespace wsnode
