// A session actor's life: start, input held until `hello` (or behind a
// hook), the shards' answers put in their place among the replies, token
// expiry, the end. What each command does: session_commands.cpp; the
// application's hooks: session_hooks.cpp; the actor's behavior and the
// handle transport feeds: session_spawn.cpp.
#include "actors/session.hpp"

#include "actors/broker.hpp"
#include "actors/session_state.hpp"
#include "protocol/json_scan.hpp"

#include <algorithm>
#include <utility>

namespace wsnode::actors {

using protocol::error_code;

namespace {

/// Commands a session keeps while it waits for `joined` (hello).
constexpr std::size_t max_early = 256;
/// Commands it keeps behind one waiting for its hook. Transport stops
/// reading once max_pending_input are unhandled, but only after a wakeup's
/// reads (up to 256 KiB, thousands of small frames), so this is a safety
/// net above that bound, not the bound itself.
constexpr std::size_t max_waiting = 65536;

} // namespace

session_state::~session_state() {
  leave(); // also when the actor ends without `closed` (system shutdown)
  if (env_)
    bump(env_->m.session_actors, -1);
}

void session_state::init(std::shared_ptr<const session_env> env, session_identity who,
                         sink_ptr sink, std::uint64_t sid) {
  env_ = std::move(env);
  bump(env_->m.session_actors, 1);
  sink_ = std::move(sink);
  sid_ = sid;
  if (who.close_code != 0) { // the connect hook said disconnect
    closing_ = true;
    sink_->close(who.close_code, std::move(who.close_reason));
    return;
  }
  user_ = std::move(who.user);
  set_token(who.exp, std::move(who.channels));
  refresh_by_hook_ = who.from_hook && hook_on(hook_kind::refresh);
  if (!who.meta.empty())
    hook_state().meta = std::move(who.meta);
  if (!who.subscribe.empty())
    server_subs_ = std::make_unique<std::vector<std::string>>(std::move(who.subscribe));
  arm_expiry();
  emit_connect();
  rate_ = token_bucket{env_->rate};
  errors_ = token_bucket{env_->errors};
  // The broker sends hello once the user is reachable from every node,
  // then tells us `joined`; commands that arrive before are kept until then.
  const auto& node = env_->cfg.node_id;
  caf::anon_send(env_->brokers->owner(user_), atoms::join::value, sid_, user_, sink_,
                 make_frame(protocol::encode_hello(node, user_, sid_text())), handle());
}

void session_state::sync_env() {
  const auto* now = env_->current;
  if (now != nullptr && now->peek() != env_.get())
    if (auto next = now->get())
      env_ = std::move(next);
}

void session_state::on_messages(client_messages& batch) {
  {
    send_batch replies; // the replies to one read reach the I/O thread together
    for (auto& msg : batch)
      on_message(std::move(msg.text), msg.binary);
  }
  release_subscriptions();
}

void session_state::on_sub_done(std::uint64_t slot, bool ok, const std::string& ep,
                                std::uint64_t off, std::int8_t recovered, frame_list& frames,
                                const std::string& error) {
  auto* r = slot_of(slot);
  if (r == nullptr)
    return;
  if (ok) {
    std::optional<bool> rec;
    if (recovered >= 0) {
      rec = recovered == 1;
      bump(*rec ? env_->m.recoveries_ok : env_->m.recoveries_failed, 1);
    }
    r->frame = make_frame(r->server ? protocol::encode_subscribed(r->ch, ep, off)
                                    : protocol::encode_sub_ack(r->id, ep, off, rec));
    r->more = std::move(frames);
    r->release = true;
  } else {
    std::erase(subs_, r->ch);
    if (env_->cfg.namespaces->of_channel(r->ch).presence)
      caf::anon_send(env_->brokers->owner(r->ch), atoms::presence_remove::value, sid_, r->ch);
    r->frame = unavailable(r->id, r->server ? "server-side subscription to " + r->ch + ": " + error
                                            : error);
  }
  complete(*r);
}

void session_state::on_presence_done(std::uint64_t slot, std::string& frame) {
  if (auto* r = slot_of(slot)) {
    r->frame = make_frame(std::move(frame));
    complete(*r);
  }
}

// The token's exp plus the grace has passed, unless a refresh moved it.
void session_state::on_expire(std::uint64_t generation) {
  if (generation != expiry_gen_ || exp_ == no_exp || closing_)
    return;
  if (std::chrono::system_clock::now() < expiry_deadline())
    return arm_expiry(); // woke early
  env_->m.refuse(refusal_reason::token_expired);
  close(close_code::token_expired, refresh_by_hook_ ? "session expired" : "token expired");
}

void session_state::on_pub_done(std::uint64_t slot, bool ok, std::uint64_t off,
                                const std::string& error) {
  if (auto* r = slot_of(slot)) {
    r->frame = ok ? make_frame(protocol::encode_pub_ack(r->id, off)) : unavailable(r->id, error);
    complete(*r);
  }
}

void session_state::on_hist_done(std::uint64_t slot, bool ok, const std::string& ep,
                                 std::uint64_t off, const frame_list& frames,
                                 const std::string& error) {
  auto* r = slot_of(slot);
  if (r == nullptr)
    return;
  if (ok) {
    r->frame = make_frame(protocol::encode_history(r->id, r->ch, ep, off, frames, false));
  } else {
    r->frame = unavailable(r->id, error);
  }
  complete(*r);
}

void session_state::on_message(std::string text, bool binary) {
  if (blocked()) {
    // Kept until hello (or the hook's answer); transport stops reading at
    // max_pending_input, but one read can hold many small frames, so the
    // count is capped here too.
    if (!early_)
      early_ = std::make_unique<client_messages>();
    if (early_->size() >= (joined_ ? max_waiting : max_early)) {
      if (!closing_) {
        env_->m.drop(drop_reason::rate_limited);
        close(close_code::policy,
              joined_ ? "too many messages waiting for a hook" : "too many messages before hello");
      }
      sink_->input_done();
      return;
    }
    early_->push_back({std::move(text), binary});
    return;
  }
  input(text, binary);
}

void session_state::on_event(std::uint8_t code, std::uint64_t arg) {
  if (code == input_end_event)
    return on_input_end(static_cast<std::uint16_t>(arg));
  if (code == expiry_check_event)
    return on_expire(arg);
  if (code == refresh_due_event) {
    if (arg == expiry_gen_)
      ask_refresh();
    return;
  }
  switch (static_cast<session_event>(code)) {
  case session_event::joined: {
    if (joined_)
      return;
    joined_ = true;
    if (auto subs = std::move(server_subs_))
      subscribe_server_side(std::move(*subs));
    resume();
    return;
  }
  case session_event::subscribed:
    if (auto* r = slot_of(arg))
      complete(*r);
    return;
  case session_event::full:
    return on_full(arg);
  }
}

// Handles the commands kept while blocked(), in order, until one blocks
// again (it waits for its hook).
void session_state::resume() {
  if (early_) {
    auto waiting = std::move(early_);
    std::size_t i = 0;
    while (i < waiting->size() && !blocked()) {
      auto& msg = (*waiting)[i++];
      input(msg.text, msg.binary);
    }
    if (i < waiting->size()) { // nothing arrived meanwhile: the rest goes back as it was
      waiting->erase(waiting->begin(), waiting->begin() + static_cast<std::ptrdiff_t>(i));
      early_ = std::move(waiting);
    }
  }
  maybe_end_input();
}

void session_state::on_input_end(std::uint16_t code) {
  end_code_ = code;
  maybe_end_input();
}

// Events for the application (webhooks): one connect per session, and
// one disconnect once it is gone (a session the connect hook turned away
// at once had neither).
// The members every event about this session has.
std::string session_state::event_fields() const {
  std::string fields = "\"sid\":";
  protocol::json::append_string(fields, sid_text());
  fields += ",\"user\":";
  protocol::json::append_string(fields, user_);
  return fields;
}

void session_state::emit_connect() {
  if (!env_->events)
    return;
  announced_ = true;
  if (!env_->events->wants(event_kind::connect))
    return;
  env_->events->emit(event_kind::connect, event_fields());
}

void session_state::on_closed(std::uint16_t code, const std::string& reason) {
  leave();
  if (!announced_ || !env_->events->wants(event_kind::disconnect))
    return;
  announced_ = false;
  auto fields = event_fields();
  fields += ",\"code\":" + std::to_string(code) + ",\"reason\":";
  protocol::json::append_string(fields, reason);
  env_->events->emit(event_kind::disconnect, std::move(fields));
}

void session_state::leave() {
  if (left_ || !env_)
    return;
  left_ = true;
  for (const auto& shard : env_->brokers->all()) // it may have subscribed in any
    caf::anon_send(shard, atoms::leave::value, sid_);
}

// A held reply is ready: send what can go, in command order.
void session_state::complete(held_reply& r) {
  r.ready = true;
  {
    send_batch batch; // not unused: while it lives, sends are handed over together
    replies_.flush(*sink_, releases_);
  }
  release_subscriptions();
  maybe_end_input();
}

frame_ptr session_state::unavailable(std::string_view id, const std::string& why) {
  bump(env_->m.history_unavailable, 1);
  env_->m.error(error_code::rate_limited);
  return make_frame(protocol::encode_err(id, error_code::rate_limited,
                                         "channel history unavailable; retry" +
                                             (why.empty() ? std::string{} : " (" + why + ")")));
}

// The acks (and replays) of these history subscriptions are handed to the
// connection: their shards may deliver live messages now.
void session_state::release_subscriptions() {
  for (auto& ch : releases_)
    caf::anon_send(env_->brokers->owner(ch), atoms::live::value, sid_, ch);
  releases_.clear();
}

std::chrono::system_clock::time_point session_state::expiry_deadline() const {
  return std::chrono::system_clock::time_point{std::chrono::seconds{exp_}} + env_->cfg.expiry_grace;
}

// The connection token's (or the latest refresh's) exp and channels claim.
void session_state::set_token(std::optional<std::int64_t> exp, std::vector<std::string> channels) {
  exp_ = exp.value_or(no_exp);
  if (channels.empty())
    grants_.reset();
  else
    grants_ = std::make_unique<session_grants>(session_grants{std::move(channels)});
}

const session_grants& session_state::grants() const {
  static const session_grants none;
  return grants_ ? *grants_ : none;
}

// Schedules the check of the token's expiry (a refresh schedules anew; the
// older timer then finds another generation and does nothing; should the
// 16-bit generation wrap onto a live one, on_expire still checks the
// deadline, so a stale wake-up only re-arms). A session the connect hook
// gave an expiry asks the refresh hook at `exp`, within the grace.
void session_state::arm_expiry() {
  ++expiry_gen_;
  if (exp_ == no_exp)
    return;
  auto now = std::chrono::system_clock::now();
  auto after = [&](std::chrono::system_clock::time_point t) {
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(t - now) +
             std::chrono::milliseconds(1);
    return std::max(d, std::chrono::milliseconds(1));
  };
  self_->delayed_send(self_, after(expiry_deadline()), atoms::note::value,
                      session_note::event_of(expiry_check_event, expiry_gen_));
  if (refresh_by_hook_)
    self_->delayed_send(self_,
                        after(std::chrono::system_clock::time_point{std::chrono::seconds{exp_}}),
                        atoms::note::value, session_note::event_of(refresh_due_event, expiry_gen_));
}

// An err for a command refused by policy, counted by reason.
void session_state::refuse(std::string_view id, const refusal& r, error_code code) {
  env_->m.refuse(r.reason);
  reply_error(id, code, r.msg);
}

// The client's input ended: once every earlier command is answered (held
// before hello, behind a hook, or behind a `sub` not live yet), the
// connection closes.
void session_state::maybe_end_input() {
  if (end_code_ == 0 || blocked() || early_ || !replies_.empty())
    return;
  sink_->close(end_code_, {});
  end_code_ = 0;
}

void session_state::input(const std::string& text, bool binary) {
  bump(env_->m.messages_in, 1);
  if (!closing_)
    handle(text, binary);
  sink_->input_done();
}

// Sends an err frame; closes the session with 1008 once the client has
// used up its error budget (repeated abuse).
void session_state::reply_error(std::string_view id, error_code code, std::string_view msg) {
  env_->m.error(code);
  reply(make_frame(protocol::encode_err(id, code, msg)));
  if (!errors_.take(env_->errors))
    close(close_code::policy, "too many errors");
}

void session_state::close(std::uint16_t code, std::string reason) {
  closing_ = true;
  sink_->close(code, std::move(reason));
}

} // namespace wsnode::actors
