// What each client command does in a session (protocol v1, v1.1, v1.2):
// parse, rate limit, policy, then the broker shards; the commands the
// application's hooks decide go through session_hooks.cpp first and come
// back here with its answer (`pass`).
#include "actors/broker.hpp"
#include "actors/session_state.hpp"

#include <algorithm>

namespace wsnode::actors {

using protocol::error_code;

namespace {

/// Users per presence page when the command gives no limit (the most a page holds).
constexpr std::uint64_t default_presence_limit = 1000;

} // namespace

bool session_state::subscribed(std::string_view ch) const {
  return std::find(subs_.begin(), subs_.end(), ch) != subs_.end();
}

// history and presence: allowed to whoever may subscribe
std::optional<refusal> session_state::may_read(const namespace_options& ns,
                                               const protocol::command& cmd) const {
  if (subscribed(cmd.ch))
    return std::nullopt;
  return may_join(ns, cmd.ch, cmd.token, user_, grants(), env_->cfg.verifier.get());
}

void session_state::refresh(const protocol::command& cmd) {
  auto v = check_refresh(cmd.token, user_, env_->cfg.verifier.get());
  switch (v.what) {
  case refresh_verdict::kind::ok:
    set_token(v.exp, std::move(v.channels));
    arm_expiry();
    return reply(make_frame(protocol::encode_refresh_ack(cmd.id, v.exp)));
  case refresh_verdict::kind::other_user:
    return refuse(cmd.id, {refusal_reason::refresh_other_user, v.msg});
  case refresh_verdict::kind::no_auth:
    return refuse(cmd.id, {refusal_reason::refresh_no_auth, v.msg}, error_code::bad_request);
  case refresh_verdict::kind::bad_token:
    refuse(cmd.id, {refusal_reason::refresh_bad_token, v.msg});
    close(close_code::token_expired, "refresh refused: " + v.msg);
    return;
  }
}

void session_state::handle(const std::string& text, bool binary) {
  if (binary)
    return reply_error({}, error_code::bad_request, "binary frames are not supported");
  auto parsed = protocol::parse_command(text, env_->cfg.limits);
  if (auto* err = std::get_if<protocol::command_error>(&parsed))
    return reply_error(err->id, err->code, err->msg);
  auto& cmd = std::get<protocol::command>(parsed);
  if (!rate_.take(env_->rate)) {
    env_->m.drop(drop_reason::rate_limited);
    return reply_error(cmd.id, error_code::rate_limited, "too many messages; slow down");
  }
  if (cmd.kind == protocol::op::rpc) {
    if (!hook_on(hook_kind::rpc))
      return reply_error(cmd.id, error_code::unknown_op, "rpc is not configured on this node");
    return ask(hook_kind::rpc, text, cmd);
  }
  // The hooks see the command as the client sent it: the command waits
  // here, and dispatch() runs it with the answer (session_hooks.cpp).
  const auto& ns = env_->cfg.namespaces->of_channel(cmd.ch);
  if (cmd.kind == protocol::op::sub && ns.subscribe_hook && !subscribed(cmd.ch) &&
      hook_on(hook_kind::subscribe)) {
    // a grant (subscription token, the token's channels claim) wins without the hook
    if (check_grant(cmd.ch, cmd.token, user_, grants(), env_->cfg.verifier.get()))
      return ask(hook_kind::subscribe, text, cmd);
  }
  if (cmd.kind == protocol::op::pub && ns.publish_hook && hook_on(hook_kind::publish)) {
    if (auto no = may_publish(ns, subscribed(cmd.ch)))
      return refuse(cmd.id, *no);
    return ask(hook_kind::publish, text, cmd);
  }
  dispatch(cmd, nullptr);
}

void session_state::dispatch(protocol::command& cmd, const hook_answer* pass) {
  const auto& ns = env_->cfg.namespaces->of_channel(cmd.ch);
  switch (cmd.kind) {
  case protocol::op::sub:
    return subscribe(cmd, pass);
  case protocol::op::unsub:
    return unsubscribe(cmd);
  case protocol::op::pub:
    return publish(cmd, pass);
  case protocol::op::history: {
    if (!ns.has_history())
      return reply_error(cmd.id, error_code::bad_request,
                         "this channel's namespace keeps no history");
    if (auto no = may_read(ns, cmd))
      return refuse(cmd.id, *no);
    auto slot = hold(cmd.id, cmd.ch);
    bool since = cmd.since.has_value();
    caf::anon_send(env_->brokers->owner(cmd.ch), atoms::history_read::value, std::string{cmd.ch},
                   since, since ? cmd.since->ep : std::string{}, since ? cmd.since->off : 0,
                   cmd.limit.has_value(), std::uint64_t{cmd.limit.value_or(0)}, slot, handle());
    return;
  }
  case protocol::op::send:
    caf::anon_send(env_->brokers->owner(cmd.to), atoms::dm::value, std::string{cmd.to},
                   make_frame(protocol::encode_dm(user_, cmd.data)));
    return reply(make_frame(protocol::encode_ack(cmd.id)));
  case protocol::op::presence: {
    if (!ns.presence)
      return refuse(cmd.id,
                    {refusal_reason::presence_off, "presence is off for this channel's namespace"});
    if (auto no = may_read(ns, cmd))
      return refuse(cmd.id, *no);
    auto slot = hold(cmd.id, cmd.ch);
    caf::anon_send(env_->brokers->owner(cmd.ch), atoms::presence::value, std::string{cmd.ch},
                   std::uint64_t{cmd.limit.value_or(default_presence_limit)}, std::move(cmd.cursor),
                   std::string{cmd.id}, slot, handle());
    return;
  }
  case protocol::op::refresh:
    return refresh(cmd);
  case protocol::op::ping:
    return reply(make_frame(protocol::encode_pong(cmd.id)));
  case protocol::op::rpc: // answered by session_hooks.cpp
    return;
  }
}

void session_state::subscribe(const protocol::command& cmd, const hook_answer* pass) {
  const auto& ns = env_->cfg.namespaces->of_channel(cmd.ch);
  if (!subscribed(cmd.ch)) {
    if (pass == nullptr) // the hook's yes is a grant
      if (auto no = may_join(ns, cmd.ch, cmd.token, user_, grants(), env_->cfg.verifier.get()))
        return refuse(cmd.id, *no);
    if (subs_.size() >= env_->cfg.max_subscriptions)
      return refuse(cmd.id, {refusal_reason::subscription_limit,
                             "subscription limit reached (" +
                                 std::to_string(env_->cfg.max_subscriptions) + ")"});
  }
  subscribe_live(cmd.ch, cmd.id, &cmd, false);
}

// Joins `ch` (already allowed) and answers once the broker reports the
// subscription live on every node (and, with history, the channel's
// position is known): an ack to `id`, or for a server-side subscription a
// `subscribed` frame.
void session_state::subscribe_live(const std::string& ch, std::string_view id,
                                   const protocol::command* cmd, bool server) {
  const auto& ns = env_->cfg.namespaces->of_channel(ch);
  if (!subscribed(ch)) {
    subs_.emplace_back(ch);
    if (ns.presence)
      caf::anon_send(env_->brokers->owner(ch), atoms::presence_add::value, sid_, ch, user_);
  }
  if (ns.has_history()) {
    auto slot = hold(id, ch);
    slot_of(slot)->server = server;
    bool since = cmd != nullptr && cmd->since.has_value();
    caf::anon_send(env_->brokers->owner(ch), atoms::history_subscribe::value, sid_, ch, slot, sink_,
                   handle(), since, since ? cmd->since->ep : std::string{},
                   since ? cmd->since->off : 0);
    return;
  }
  auto slot = hold(id, ch);
  slot_of(slot)->server = server;
  slot_of(slot)->frame =
      make_frame(server ? protocol::encode_subscribed(ch, {}, 0) : protocol::encode_ack(id));
  caf::anon_send(env_->brokers->owner(ch), atoms::sub::value, sid_, ch, slot, sink_, handle());
}

void session_state::unsubscribe(const protocol::command& cmd) {
  drop_channel(cmd.ch);
  reply(make_frame(protocol::encode_ack(cmd.id)));
}

// Leaves `ch` here and in its shard; false when the session was not in it.
bool session_state::drop_channel(const std::string& ch) {
  auto it = std::find(subs_.begin(), subs_.end(), ch);
  if (it == subs_.end())
    return false;
  subs_.erase(it);
  const auto& shard = env_->brokers->owner(ch);
  caf::anon_send(shard, atoms::unsub::value, sid_, ch);
  if (env_->cfg.namespaces->of_channel(ch).presence)
    caf::anon_send(shard, atoms::presence_remove::value, sid_, ch);
  return true;
}

// `pass`: the publish hook allowed it; its `data`, when given, replaces the
// client's (what subscribers get and history keeps).
void session_state::publish(protocol::command& cmd, const hook_answer* pass) {
  const auto& ns = env_->cfg.namespaces->of_channel(cmd.ch);
  if (pass == nullptr)
    if (auto no = may_publish(ns, subscribed(cmd.ch)))
      return refuse(cmd.id, *no);
  std::string_view data = pass != nullptr && pass->data ? std::string_view{*pass->data} : cmd.data;
  if (ns.has_history()) { // answered with its offset once it is held safely
    auto slot = hold(cmd.id, {});
    caf::anon_send(env_->brokers->owner(cmd.ch), atoms::history_publish::value, std::string{cmd.ch},
                   user_, std::string{data}, std::move(cmd.key), slot, handle());
    return;
  }
  caf::anon_send(env_->brokers->owner(cmd.ch), atoms::pub::value, std::string{cmd.ch},
                 make_frame(protocol::encode_msg(cmd.ch, user_, data)));
  reply(make_frame(protocol::encode_ack(cmd.id)));
}

} // namespace wsnode::actors
