#include "actors/session.hpp"

#include "actors/broker.hpp"
#include "actors/messages.hpp"
#include "actors/rate_limiter.hpp"
#include "actors/reply_order.hpp"
#include "actors/session_policy.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

namespace wsnode::actors {

namespace {

using protocol::error_code;

std::atomic<std::uint64_t> next_sid{1};

/// Commands a session keeps while it waits for `joined` (hello).
constexpr std::size_t max_early = 256;
/// Users per presence page when the command gives no limit (the most a page holds).
constexpr std::uint64_t default_presence_limit = 1000;

// The state of one session actor: everything the session owns. Its
// handlers run one at a time on a CAF worker (the actor's mailbox orders
// them), so nothing here needs a lock.
class session_state {
public:
  explicit session_state(caf::event_based_actor* self) : self_(self) {}
  session_state(const session_state&) = delete;
  session_state& operator=(const session_state&) = delete;
  ~session_state() {
    leave(); // also when the actor ends without `closed` (system shutdown)
    if (env_)
      bump(env_->m.session_actors, -1);
  }

  static inline const char* name = "wsnode.session";

  void init(std::shared_ptr<const session_env> env, session_identity who, sink_ptr sink,
            std::uint64_t sid) {
    env_ = std::move(env);
    bump(env_->m.session_actors, 1);
    sink_ = std::move(sink);
    sid_ = sid;
    user_ = std::move(who.user);
    set_token(who.exp, std::move(who.channels));
    arm_expiry();
    rate_ = token_bucket{env_->rate};
    errors_ = token_bucket{env_->errors};
    // The broker sends hello once the user is reachable from every node,
    // then tells us `joined`; commands that arrive before are kept until then.
    const auto& node = env_->cfg.node_id;
    caf::anon_send(
        env_->brokers->owner(user_), atoms::join::value, sid_, user_, sink_,
        make_frame(protocol::encode_hello(node, user_, node + "-" + std::to_string(sid_))),
        handle());
  }

  void on_messages(client_messages& batch) {
    {
      send_batch replies; // the replies to one read reach the I/O thread together
      for (auto& msg : batch)
        on_message(std::move(msg.text), msg.binary);
    }
    release_subscriptions();
  }

  // ---- answers from the shards of history channels

  void on_sub_done(std::uint64_t slot, bool ok, const std::string& ep, std::uint64_t off,
                   std::int8_t recovered, frame_list& frames, const std::string& error) {
    auto* r = slot_of(slot);
    if (r == nullptr)
      return;
    if (ok) {
      std::optional<bool> rec;
      if (recovered >= 0) {
        rec = recovered == 1;
        bump(*rec ? env_->m.recoveries_ok : env_->m.recoveries_failed, 1);
      }
      r->frame = make_frame(protocol::encode_sub_ack(r->id, ep, off, rec));
      r->more = std::move(frames);
      r->release = true;
    } else {
      std::erase(subs_, r->ch);
      if (env_->cfg.namespaces->of_channel(r->ch).presence)
        caf::anon_send(env_->brokers->owner(r->ch), atoms::presence_remove::value, sid_, r->ch);
      r->frame = unavailable(r->id, error);
    }
    complete(*r);
  }

  void on_presence_done(std::uint64_t slot, std::string& frame) {
    if (auto* r = slot_of(slot)) {
      r->frame = make_frame(std::move(frame));
      complete(*r);
    }
  }

  // The token's exp plus the grace has passed, unless a refresh moved it.
  void on_expire(std::uint64_t generation) {
    if (generation != expiry_gen_ || exp_ == no_exp || closing_)
      return;
    if (std::chrono::system_clock::now() < expiry_deadline())
      return arm_expiry(); // woke early
    closing_ = true;
    env_->m.refuse(refusal_reason::token_expired);
    sink_->close(close_code::token_expired, "token expired");
  }

  void on_pub_done(std::uint64_t slot, bool ok, std::uint64_t off, const std::string& error) {
    if (auto* r = slot_of(slot)) {
      r->frame = ok ? make_frame(protocol::encode_pub_ack(r->id, off)) : unavailable(r->id, error);
      complete(*r);
    }
  }

  void on_hist_done(std::uint64_t slot, bool ok, const std::string& ep, std::uint64_t off,
                    const frame_list& frames, const std::string& error) {
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

  void on_message(std::string text, bool binary) {
    if (!joined_) {
      // Kept until hello; transport stops reading at max_pending_input, but
      // one read can hold many small frames, so the count is capped here too.
      if (!early_)
        early_ = std::make_unique<client_messages>();
      if (early_->size() >= max_early) {
        if (!closing_) {
          closing_ = true;
          env_->m.drop(drop_reason::rate_limited);
          sink_->close(close_code::policy, "too many messages before hello");
        }
        sink_->input_done();
        return;
      }
      early_->push_back({std::move(text), binary});
      return;
    }
    input(text, binary);
  }

  // What arrives as `event`: the broker's session_events, and two of the
  // session's own (folded into that one handler: every handler of a
  // behavior costs each of the node's idle sessions some 45 bytes).
  static constexpr std::uint8_t input_end_event = 128;    // arg: the close code
  static constexpr std::uint8_t expiry_check_event = 129; // arg: the generation
  void on_event(std::uint8_t code, std::uint64_t arg) {
    if (code == input_end_event)
      return on_input_end(static_cast<std::uint16_t>(arg));
    if (code == expiry_check_event)
      return on_expire(arg);
    switch (static_cast<session_event>(code)) {
    case session_event::joined: {
      if (joined_)
        return;
      joined_ = true;
      if (auto early = std::move(early_))
        for (auto& msg : *early)
          input(msg.text, msg.binary);
      maybe_end_input();
      return;
    }
    case session_event::subscribed:
      if (auto* r = slot_of(arg))
        complete(*r);
      return;
    }
  }

  void on_input_end(std::uint16_t code) {
    end_code_ = code;
    maybe_end_input();
  }

  void leave() {
    if (left_ || !env_)
      return;
    left_ = true;
    for (const auto& shard : env_->brokers->all()) // it may have subscribed in any
      caf::anon_send(shard, atoms::leave::value, sid_);
  }

private:
  using held_reply = reply_order::held_reply;

  held_reply* slot_of(std::uint64_t slot) { return replies_.slot(slot); }

  // A held reply is ready: send what can go, in command order.
  void complete(held_reply& r) {
    r.ready = true;
    {
      send_batch batch; // not unused: while it lives, sends are handed over together
      replies_.flush(*sink_, releases_);
    }
    release_subscriptions();
    maybe_end_input();
  }

  std::uint64_t hold(std::string_view id, std::string_view ch) { return replies_.hold(id, ch); }

  frame_ptr unavailable(std::string_view id, const std::string& why) {
    bump(env_->m.history_unavailable, 1);
    env_->m.error(error_code::rate_limited);
    return make_frame(protocol::encode_err(id, error_code::rate_limited,
                                           "channel history unavailable; retry" +
                                               (why.empty() ? std::string{} : " (" + why + ")")));
  }

  // The acks (and replays) of these history subscriptions are handed to
  // the connection: their shards may deliver live messages now.
  void release_subscriptions() {
    for (auto& ch : releases_)
      caf::anon_send(env_->brokers->owner(ch), atoms::live::value, sid_, ch);
    releases_.clear();
  }

  caf::actor handle() const { return caf::actor_cast<caf::actor>(self_); }

  std::chrono::system_clock::time_point expiry_deadline() const {
    return std::chrono::system_clock::time_point{std::chrono::seconds{exp_}} +
           env_->cfg.expiry_grace;
  }

  // The connection token's (or the latest refresh's) exp and channels claim.
  void set_token(std::optional<std::int64_t> exp, std::vector<std::string> channels) {
    exp_ = exp.value_or(no_exp);
    if (channels.empty())
      grants_.reset();
    else
      grants_ = std::make_unique<session_grants>(session_grants{std::move(channels)});
  }
  const session_grants& grants() const {
    static const session_grants none;
    return grants_ ? *grants_ : none;
  }

  // Schedules the check of the token's expiry (a refresh schedules anew;
  // the older timer then finds another generation and does nothing; should
  // the 16-bit generation wrap onto a live one, on_expire still checks the
  // deadline, so a stale wake-up only re-arms).
  void arm_expiry() {
    ++expiry_gen_;
    if (exp_ == no_exp)
      return;
    auto left = expiry_deadline() - std::chrono::system_clock::now();
    auto delay =
        std::chrono::duration_cast<std::chrono::milliseconds>(left) + std::chrono::milliseconds(1);
    self_->delayed_send(self_, std::max(delay, std::chrono::milliseconds(1)), atoms::event::value,
                        expiry_check_event, std::uint64_t{expiry_gen_});
  }

  // An err for a command refused by policy, counted by reason.
  void refuse(std::string_view id, const refusal& r, error_code code = error_code::forbidden) {
    env_->m.refuse(r.reason);
    reply_error(id, code, r.msg);
  }

  bool subscribed(std::string_view ch) const {
    return std::find(subs_.begin(), subs_.end(), ch) != subs_.end();
  }

  // history and presence: allowed to whoever may subscribe
  std::optional<refusal> may_read(const namespace_options& ns, const protocol::command& cmd) const {
    if (subscribed(cmd.ch))
      return std::nullopt;
    return may_join(ns, cmd.ch, cmd.token, user_, grants(), env_->cfg.verifier.get());
  }

  void refresh(const protocol::command& cmd) {
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
      closing_ = true;
      sink_->close(close_code::token_expired, "refresh refused: " + v.msg);
      return;
    }
  }

  // The client's input ended: once every earlier command is answered (held
  // before hello, or behind a `sub` not live yet), the connection closes.
  void maybe_end_input() {
    if (end_code_ == 0 || !joined_ || !replies_.empty())
      return;
    sink_->close(end_code_, {});
    end_code_ = 0;
  }

  void input(const std::string& text, bool binary) {
    bump(env_->m.messages_in, 1);
    if (!closing_)
      handle(text, binary);
    sink_->input_done();
  }

  // Replies go out in the order of the commands they answer (reply_order).
  // A `sub` is answered when the broker reports it live (at once on a
  // single node, after the mesh confirmed it in a cluster).
  void reply(frame_ptr f) { replies_.reply(*sink_, std::move(f)); }

  // Sends an err frame; closes the session with 1008 once the client has
  // used up its error budget (repeated abuse).
  void reply_error(std::string_view id, error_code code, std::string_view msg) {
    env_->m.error(code);
    reply(make_frame(protocol::encode_err(id, code, msg)));
    if (!errors_.take(env_->errors)) {
      closing_ = true;
      sink_->close(close_code::policy, "too many errors");
    }
  }

  void handle(const std::string& text, bool binary) {
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
    const auto& ns = env_->cfg.namespaces->of_channel(cmd.ch);
    switch (cmd.kind) {
    case protocol::op::sub:
      if (!subscribed(cmd.ch)) {
        if (auto no = may_join(ns, cmd.ch, cmd.token, user_, grants(), env_->cfg.verifier.get()))
          return refuse(cmd.id, *no);
        if (subs_.size() >= env_->cfg.max_subscriptions)
          return refuse(cmd.id, {refusal_reason::subscription_limit,
                                 "subscription limit reached (" +
                                     std::to_string(env_->cfg.max_subscriptions) + ")"});
        subs_.emplace_back(cmd.ch);
        if (ns.presence)
          caf::anon_send(env_->brokers->owner(cmd.ch), atoms::presence_add::value, sid_,
                         std::string{cmd.ch}, user_);
      }
      // answered once the broker reports the subscription live on every
      // node (and, with history, the channel's position is known)
      if (ns.has_history()) {
        auto slot = hold(cmd.id, cmd.ch);
        bool since = cmd.since.has_value();
        caf::anon_send(env_->brokers->owner(cmd.ch), atoms::history_subscribe::value, sid_,
                       std::string{cmd.ch}, slot, sink_, handle(), since,
                       since ? cmd.since->ep : std::string{}, since ? cmd.since->off : 0);
        return;
      }
      {
        auto slot = hold({}, {});
        slot_of(slot)->frame = make_frame(protocol::encode_ack(cmd.id));
        caf::anon_send(env_->brokers->owner(cmd.ch), atoms::sub::value, sid_, std::string{cmd.ch},
                       slot, sink_, handle());
      }
      return;
    case protocol::op::unsub:
      if (auto it = std::find(subs_.begin(), subs_.end(), cmd.ch); it != subs_.end()) {
        subs_.erase(it);
        caf::anon_send(env_->brokers->owner(cmd.ch), atoms::unsub::value, sid_,
                       std::string{cmd.ch});
        if (ns.presence)
          caf::anon_send(env_->brokers->owner(cmd.ch), atoms::presence_remove::value, sid_,
                         std::string{cmd.ch});
      }
      return reply(make_frame(protocol::encode_ack(cmd.id)));
    case protocol::op::pub: {
      if (auto no = may_publish(ns, subscribed(cmd.ch)))
        return refuse(cmd.id, *no);
      if (ns.has_history()) { // answered with its offset once it is held safely
        auto slot = hold(cmd.id, {});
        caf::anon_send(env_->brokers->owner(cmd.ch), atoms::history_publish::value,
                       std::string{cmd.ch}, user_, std::string{cmd.data}, std::move(cmd.key), slot,
                       handle());
        return;
      }
      caf::anon_send(env_->brokers->owner(cmd.ch), atoms::pub::value, std::string{cmd.ch},
                     make_frame(protocol::encode_msg(cmd.ch, user_, cmd.data)));
      return reply(make_frame(protocol::encode_ack(cmd.id)));
    }
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
        return refuse(
            cmd.id, {refusal_reason::presence_off, "presence is off for this channel's namespace"});
      if (auto no = may_read(ns, cmd))
        return refuse(cmd.id, *no);
      auto slot = hold(cmd.id, cmd.ch);
      caf::anon_send(env_->brokers->owner(cmd.ch), atoms::presence::value, std::string{cmd.ch},
                     std::uint64_t{cmd.limit.value_or(default_presence_limit)},
                     std::move(cmd.cursor), std::string{cmd.id}, slot, handle());
      return;
    }
    case protocol::op::refresh:
      return refresh(cmd);
    case protocol::op::ping:
      return reply(make_frame(protocol::encode_pong(cmd.id)));
    }
  }

  caf::event_based_actor* self_;
  std::shared_ptr<const session_env> env_;
  sink_ptr sink_; // the connection: released when the actor exits
  std::uint64_t sid_ = 0;
  std::string user_;
  // Kept small: an idle node holds one of these per connection.
  static constexpr std::int64_t no_exp = std::numeric_limits<std::int64_t>::min();
  std::int64_t exp_ = no_exp;              // see set_token
  std::unique_ptr<session_grants> grants_; // null: the token lists no channels
  std::vector<std::string> subs_;          // a few per session: a vector beats a hash set
  token_bucket rate_;                      // set by init()
  token_bucket errors_;                    // set by init()
  reply_order replies_;                    // replies waiting behind a `sub` that is not live yet
  // Commands received before `joined` (made on the first: most sessions
  // join before their first command, and an empty vector costs 24 bytes).
  std::unique_ptr<client_messages> early_;
  std::vector<std::string> releases_; // see release_subscriptions
  // The client's input ended (on_input_end) and this close is due.
  std::uint16_t end_code_ = 0;
  std::uint16_t expiry_gen_ = 0; // see arm_expiry
  bool joined_ = false;
  bool closing_ = false;
  bool left_ = false;
};

using session_actor = caf::stateful_actor<session_state>;

caf::behavior session_behavior(session_actor* self, std::shared_ptr<const session_env> env,
                               session_identity who, sink_ptr sink, std::uint64_t sid) {
  self->state.init(std::move(env), std::move(who), std::move(sink), sid);
  return {
      [=](atoms::input, client_messages& batch) { self->state.on_messages(batch); },
      [=](atoms::event, std::uint8_t e, std::uint64_t arg) { self->state.on_event(e, arg); },
      [=](atoms::sub_done, std::uint64_t slot, bool ok, const std::string& ep, std::uint64_t off,
          std::int8_t recovered, frame_list& frames, const std::string& error) {
        self->state.on_sub_done(slot, ok, ep, off, recovered, frames, error);
      },
      [=](atoms::pub_done, std::uint64_t slot, bool ok, std::uint64_t off,
          const std::string& error) { self->state.on_pub_done(slot, ok, off, error); },
      [=](atoms::hist_done, std::uint64_t slot, bool ok, const std::string& ep, std::uint64_t off,
          const frame_list& frames,
          const std::string& error) { self->state.on_hist_done(slot, ok, ep, off, frames, error); },
      [=](atoms::presence_done, std::uint64_t slot, std::string& frame) {
        self->state.on_presence_done(slot, frame);
      },
      [=](atoms::closed) {
        self->state.leave();
        self->quit();
      },
  };
}

// Transport's side of a session: hands what the connection reads to the
// session actor, in the order transport saw it,
// the messages of one read in one actor message. Holds the actor's handle:
// the actor lives as long as the connection (and quits at `closed`).
class session_link final : public session_handler {
public:
  explicit session_link(caf::actor a) : actor_(std::move(a)) {}
  session_link(const session_link&) = delete;
  session_link& operator=(const session_link&) = delete;
  ~session_link() override { end(); }

  void on_message(std::string text, bool binary) override {
    batch_.push_back({std::move(text), binary});
  }
  void on_read_end() override { flush(); }
  void on_input_end(std::uint16_t code) override {
    flush();
    caf::anon_send(actor_, atoms::event::value, session_state::input_end_event,
                   std::uint64_t{code});
  }
  void on_closed() override { end(); }

private:
  void flush() {
    if (batch_.empty())
      return;
    caf::anon_send(actor_, atoms::input::value, std::move(batch_));
    batch_ = {};
  }
  void end() {
    if (!actor_)
      return;
    flush();
    caf::anon_send(actor_, atoms::closed::value);
    actor_ = nullptr;
  }

  caf::actor actor_;
  client_messages batch_;
};

} // namespace

session_env::session_env(session_config c, metrics& mm, std::shared_ptr<const broker_set> b)
  : cfg(std::move(c)), m(mm), brokers(std::move(b)), rate{cfg.messages_per_second, cfg.burst} {
  double window_s = std::chrono::duration<double>(cfg.error_window).count();
  errors = {window_s > 0 ? cfg.max_errors / window_s : 0, cfg.max_errors};
}

new_session make_session(caf::actor_system& sys, std::shared_ptr<const session_env> env,
                         const session_identity& who, sink_ptr sink) {
  new_session s;
  s.sid = next_sid.fetch_add(1, std::memory_order_relaxed);
  s.handler = std::make_unique<session_link>(
      sys.spawn(session_behavior, std::move(env), who, std::move(sink), s.sid));
  return s;
}

} // namespace wsnode::actors
