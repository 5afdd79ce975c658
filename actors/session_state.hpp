// The state of one session actor (actors/session.hpp), private to the
// session's files: session.cpp (its life, the shards' answers, replies in
// order, token expiry), session_commands.cpp (what each client command
// does) and session_hooks.cpp (the commands the application's hooks
// decide, refresh by hook, server-side subscriptions).
//
// Its handlers run one at a time on a CAF worker (the actor's mailbox
// orders them), so nothing here needs a lock.
#pragma once

#include "actors/messages.hpp"
#include "actors/rate_limiter.hpp"
#include "actors/reply_order.hpp"
#include "actors/session.hpp"
#include "actors/session_policy.hpp"

#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace wsnode::actors {

/// What a session holds for the application's hooks (made when first
/// needed: most sessions of a node without hooks never have one).
struct session_hook_state {
  std::string meta;        ///< the connect (or refresh) answer's meta, raw JSON; "" = none
  std::string pending;     ///< the command waiting for its hook (frame text)
  bool refreshing = false; ///< a refresh call is out
};

class session_state {
public:
  explicit session_state(caf::event_based_actor* self) : self_(self) {}
  session_state(const session_state&) = delete;
  session_state& operator=(const session_state&) = delete;
  ~session_state();

  static inline const char* name = "wsnode.session";

  void init(std::shared_ptr<const session_env> env, session_identity who, sink_ptr sink,
            std::uint64_t sid);
  /// Moves to the node's current settings when a reload made new ones
  /// (called when a handler starts; see session_env::current).
  void sync_env();
  void on_messages(client_messages& batch);
  void on_event(std::uint8_t code, std::uint64_t arg);
  void leave();
  /// The connection is gone (close code and reason): leave, and tell the
  /// application (a disconnect event) if it was told of the connect.
  void on_closed(std::uint16_t code, const std::string& reason);
  /// The server API (un)subscribed the session (see server_subscribe_purpose).
  void on_server_sub(const std::string& ch, bool on);

  // ---- answers from the shards of history channels (session.cpp)
  void on_sub_done(std::uint64_t slot, bool ok, const std::string& ep, std::uint64_t off,
                   std::int8_t recovered, frame_list& frames, const std::string& error);
  void on_pub_done(std::uint64_t slot, bool ok, std::uint64_t off, const std::string& error);
  void on_hist_done(std::uint64_t slot, bool ok, const std::string& ep, std::uint64_t off,
                    const frame_list& frames, const std::string& error);
  void on_presence_done(std::uint64_t slot, std::string& frame);

  // ---- the application's answers (session_hooks.cpp)
  void on_hook_done(std::uint8_t purpose, hook_answer& a);

  // What arrives as `event`: the broker's session_events, and the
  // session's own (folded into that one handler: every handler of a
  // behavior costs each of the node's idle sessions some 45 bytes).
  static constexpr std::uint8_t input_end_event = 128;    // arg: the close code
  static constexpr std::uint8_t expiry_check_event = 129; // arg: the generation
  static constexpr std::uint8_t refresh_due_event = 130;  // arg: the generation

private:
  using held_reply = reply_order::held_reply;

  // session.cpp
  void on_message(std::string text, bool binary);
  void on_input_end(std::uint16_t code);
  void on_expire(std::uint64_t generation);
  held_reply* slot_of(std::uint64_t slot) { return replies_.slot(slot); }
  void complete(held_reply& r);
  std::uint64_t hold(std::string_view id, std::string_view ch) { return replies_.hold(id, ch); }
  frame_ptr unavailable(std::string_view id, const std::string& why);
  void release_subscriptions();
  caf::actor handle() const { return caf::actor_cast<caf::actor>(self_); }
  std::chrono::system_clock::time_point expiry_deadline() const;
  void set_token(std::optional<std::int64_t> exp, std::vector<std::string> channels);
  const session_grants& grants() const;
  void arm_expiry();
  void refuse(std::string_view id, const refusal& r,
              protocol::error_code code = protocol::error_code::forbidden);
  void maybe_end_input();
  void input(const std::string& text, bool binary);
  bool blocked() const noexcept { return !joined_ || hook_waiting_; }
  void resume();
  void reply(frame_ptr f) { replies_.reply(*sink_, std::move(f)); }
  void reply_error(std::string_view id, protocol::error_code code, std::string_view msg);
  void close(std::uint16_t code, std::string reason);

  // session_commands.cpp
  void handle(const std::string& text, bool binary);
  /// `pass`: the application's hook said yes to this command (its answer).
  void dispatch(protocol::command& cmd, const hook_answer* pass);
  void subscribe(const protocol::command& cmd, const hook_answer* pass);
  void subscribe_live(const std::string& ch, std::string_view id, const protocol::command* cmd,
                      bool server);
  void unsubscribe(const protocol::command& cmd);
  bool drop_channel(const std::string& ch);
  void publish(protocol::command& cmd, const hook_answer* pass);
  void refresh(const protocol::command& cmd);
  bool subscribed(std::string_view ch) const;
  std::optional<refusal> may_read(const namespace_options& ns, const protocol::command& cmd) const;

  // session_hooks.cpp
  bool hook_on(hook_kind k) const noexcept;
  session_hook_state& hook_state();
  /// Asks the application about `cmd` (frame `text`); the session's later
  /// commands wait until it answers.
  void ask(hook_kind k, const std::string& text, const protocol::command& cmd);
  void call(hook_kind k, std::uint8_t purpose, std::string_view target, std::string_view data,
            std::string_view key);
  void answer_command(hook_answer& a);
  void ask_refresh();
  void answer_refresh(hook_answer& a);
  void subscribe_server_side(std::vector<std::string> channels);
  void on_full(std::uint64_t slot);
  void emit_connect();
  std::string event_fields() const;
  std::string sid_text() const { return env_->cfg.node_id + "-" + std::to_string(sid_); }

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
  // Commands received while blocked(): before `joined`, or while one waits
  // for its hook (made on the first: most sessions join before their first
  // command and use no hook, and an empty vector costs 24 bytes).
  std::unique_ptr<client_messages> early_;
  std::vector<std::string> releases_;                     // see release_subscriptions
  std::unique_ptr<session_hook_state> hooks_;             // see hook_state()
  std::unique_ptr<std::vector<std::string>> server_subs_; // connect hook's channels, until joined
  // The client's input ended (on_input_end) and this close is due.
  std::uint16_t end_code_ = 0;
  std::uint16_t expiry_gen_ = 0; // see arm_expiry
  bool joined_ = false;
  bool closing_ = false;
  bool left_ = false;
  bool hook_waiting_ = false;    // a command waits for its hook: later ones wait in early_
  bool refresh_by_hook_ = false; // exp_ came from the connect hook and refresh_url is set
  bool announced_ = false;       // the application may expect a disconnect event
};

} // namespace wsnode::actors
