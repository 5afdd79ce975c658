// The commands the application's hooks decide (protocol v1.2): a `sub` in
// a namespace with subscribe_hook, a `pub` with publish_hook, every `rpc`;
// the refresh of a session the connect hook gave an expiry; the connect
// hook's server-side subscriptions.
//
// A command that waits for its hook blocks the session's input: the
// commands after it are read and kept (early_), and handled once the
// answer is in, so that they run and are answered in command order; the
// transport stops reading past max_pending_input of them (back-pressure).
// Fail closed: without a yes nothing is published or subscribed.
#include "actors/broker.hpp"
#include "actors/session_state.hpp"

#include <chrono>

namespace wsnode::actors {

using protocol::error_code;

namespace {

enum class purpose : std::uint8_t { command, refresh };

} // namespace

bool session_state::hook_on(hook_kind k) const noexcept {
  return env_->hooks && env_->hooks->has(k);
}

session_hook_state& session_state::hook_state() {
  if (!hooks_)
    hooks_ = std::make_unique<session_hook_state>();
  return *hooks_;
}

void session_state::ask(hook_kind k, const std::string& text, const protocol::command& cmd) {
  auto& hs = hook_state();
  hs.pending = text;
  hook_waiting_ = true;
  std::string_view target = k == hook_kind::rpc ? std::string_view{cmd.method} : cmd.ch;
  call(k, static_cast<std::uint8_t>(purpose::command), target, cmd.data, cmd.key);
}

// Calls hook `k` about this session; the answer comes back as hook_done
// with `p`.
void session_state::call(hook_kind k, std::uint8_t p, std::string_view target,
                         std::string_view data, std::string_view key) {
  auto sid = sid_text();
  auto body = protocol::encode_session_hook(k, {env_->cfg.node_id, sid, user_, hook_state().meta},
                                            target, data, key);
  env_->hooks->call(k, std::move(body), [a = handle(), p](hook_answer ans) {
    caf::anon_send(a, atoms::hook_done::value, p, std::move(ans));
  });
}

void session_state::on_hook_done(std::uint8_t p, hook_answer& a) {
  if (p == static_cast<std::uint8_t>(purpose::refresh))
    return answer_refresh(a);
  if ((p == server_subscribe_purpose || p == server_unsubscribe_purpose) && !a.channels.empty())
    return on_server_sub(a.channels.front(), p == server_subscribe_purpose);
  answer_command(a);
}

void session_state::answer_command(hook_answer& a) {
  if (!hook_waiting_)
    return;
  hook_waiting_ = false;
  auto text = std::exchange(hooks_->pending, {});
  auto parsed = protocol::parse_command(text, env_->cfg.limits); // it parsed before
  auto* cmd = std::get_if<protocol::command>(&parsed);
  if (cmd != nullptr && !closing_) {
    send_batch replies; // the answer and the commands behind it go out together
    switch (a.what) {
    case hook_answer::kind::result:
      if (cmd->kind == protocol::op::rpc)
        reply(make_frame(protocol::encode_rpc_reply(cmd->id, a.data ? *a.data : "null")));
      else
        dispatch(*cmd, &a);
      break;
    case hook_answer::kind::error:
      // the application's refusal: passed on as it wrote it, no error budget spent
      if (auto known = protocol::error_code_from(a.code))
        env_->m.error(*known);
      reply(make_frame(protocol::encode_err(cmd->id, a.code, a.msg)));
      break;
    case hook_answer::kind::disconnect: // refused by the parser for these hooks
    case hook_answer::kind::failed:
      env_->m.error(error_code::unavailable);
      reply(make_frame(
          protocol::encode_err(cmd->id, error_code::unavailable, "hook failed: " + a.why)));
      break;
    }
  }
  release_subscriptions();
  resume();
}

// Called at `exp` (and again a second later while the hook fails, until
// the grace runs out and on_expire closes with 4001).
void session_state::ask_refresh() {
  if (closing_ || !refresh_by_hook_)
    return;
  auto& hs = hook_state();
  if (hs.refreshing)
    return;
  hs.refreshing = true;
  call(hook_kind::refresh, static_cast<std::uint8_t>(purpose::refresh), {}, {}, {});
}

void session_state::answer_refresh(hook_answer& a) {
  hooks_->refreshing = false;
  if (closing_)
    return;
  auto now = std::chrono::system_clock::now();
  switch (a.what) {
  case hook_answer::kind::result: {
    auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    if (*a.expire_at <= now_s) { // the application says it has ended
      env_->m.refuse(refusal_reason::token_expired);
      return close(close_code::token_expired, "session expired");
    }
    exp_ = *a.expire_at;
    if (a.meta)
      hooks_->meta = std::move(*a.meta);
    return arm_expiry();
  }
  case hook_answer::kind::error:
    env_->m.refuse(refusal_reason::token_expired);
    return close(close_code::token_expired, a.msg.empty() ? "refresh refused" : a.msg);
  case hook_answer::kind::disconnect:
    return close(a.close_code, a.reason);
  case hook_answer::kind::failed:
    if (now + std::chrono::seconds(1) < expiry_deadline())
      self_->delayed_send(self_, std::chrono::seconds(1), atoms::note::value,
                          session_note::event_of(refresh_due_event, expiry_gen_));
    return; // else on_expire closes the session at the deadline
  }
}

// The server API subscribed (`on`) or unsubscribed this session: like the
// connect hook's channels, neither the subscribe hook nor a grant is asked.
// Before `joined` a subscription waits with the connect hook's.
void session_state::on_server_sub(const std::string& ch, bool on) {
  if (closing_)
    return;
  if (!on) {
    if (drop_channel(ch))
      reply(make_frame(protocol::encode_unsubscribed(ch)));
    return;
  }
  if (joined_)
    return subscribe_server_side({ch});
  if (!server_subs_)
    server_subs_ = std::make_unique<std::vector<std::string>>();
  server_subs_->push_back(ch);
}

// The channel of the `sub` in `slot` was full on this node: the
// subscription is undone and refused.
void session_state::on_full(std::uint64_t slot) {
  auto* r = slot_of(slot);
  if (r == nullptr)
    return;
  std::erase(subs_, r->ch);
  const auto& ns = env_->cfg.namespaces->of_channel(r->ch);
  if (ns.presence)
    caf::anon_send(env_->brokers->owner(r->ch), atoms::presence_remove::value, sid_, r->ch);
  auto msg = "channel is full: " + std::to_string(ns.max_subscribers) +
             " subscribers on this node (max_subscribers)";
  r->frame = make_frame(protocol::encode_err(
      r->server ? std::string_view{} : std::string_view{r->id}, protocol::error_code::forbidden,
      r->server ? "server-side subscription to " + r->ch + ": " + msg : msg));
  r->more.clear();
  r->release = false;
  // counted like any err, but not against the client's error budget: a
  // full channel is not its fault
  env_->m.error(protocol::error_code::forbidden);
  complete(*r);
}

// The connect hook's channels: joined without the subscribe hook or a
// grant (the application chose them), each answered `subscribed` once live.
void session_state::subscribe_server_side(std::vector<std::string> channels) {
  for (auto& ch : channels) {
    if (subscribed(ch))
      continue;
    if (subs_.size() >= env_->cfg.max_subscriptions) {
      env_->m.refuse(refusal_reason::subscription_limit);
      reply(make_frame(protocol::encode_err(
          {}, error_code::forbidden,
          "server-side subscription to " + ch + ": subscription limit reached (" +
              std::to_string(env_->cfg.max_subscriptions) + ")")));
      continue;
    }
    subscribe_live(ch, {}, nullptr, true);
  }
}

} // namespace wsnode::actors
