// How a session actor is made and fed: its behavior (three handlers, each
// starting with the node's current settings, session_state::sync_env),
// transport's side of it (session_link: what one read brought, in one
// actor message), make_session. What the actor does: session.cpp.
#include "actors/session.hpp"

#include "actors/session_state.hpp"

#include <atomic>
#include <utility>

namespace wsnode::actors {

namespace {

std::atomic<std::uint64_t> next_sid{1};

using session_actor = caf::stateful_actor<session_state>;

caf::behavior session_behavior(session_actor* self, std::shared_ptr<const session_env> env,
                               session_identity who, sink_ptr sink, std::uint64_t sid) {
  self->state.init(std::move(env), std::move(who), std::move(sink), sid);
  return {
      [=](atoms::input, client_input& in) {
        self->state.sync_env();
        if (!in.messages.empty())
          self->state.on_messages(in.messages);
        if (in.closed) {
          self->state.on_closed(in.code, in.reason);
          self->quit();
        }
      },
      [=](atoms::note, session_note& r) {
        auto& st = self->state;
        st.sync_env();
        switch (r.what) {
        case session_note::kind::sub:
          return st.on_sub_done(r.slot, r.ok, r.ep, r.off, r.recovered, r.frames, r.error);
        case session_note::kind::pub:
          return st.on_pub_done(r.slot, r.ok, r.off, r.error);
        case session_note::kind::history:
          return st.on_hist_done(r.slot, r.ok, r.ep, r.off, r.frames, r.error);
        case session_note::kind::presence:
          return st.on_presence_done(r.slot, r.frame);
        case session_note::kind::event:
          return st.on_event(r.code, r.slot);
        }
      },
      [=](atoms::hook_done, std::uint8_t purpose, hook_answer& a) {
        self->state.sync_env();
        self->state.on_hook_done(purpose, a);
      },
  };
}

// Transport's side of a session: hands what the connection reads to the
// session actor, in the order transport saw it, the messages of one read
// in one actor message. Holds the actor's handle: the actor lives as long
// as the connection (and quits at `closed`).
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
    caf::anon_send(actor_, atoms::note::value,
                   session_note::event_of(session_state::input_end_event, code));
  }
  void on_closed(std::uint16_t code, std::string_view reason) override { end(code, reason); }

private:
  void flush() {
    if (batch_.empty())
      return;
    caf::anon_send(actor_, atoms::input::value, client_input{std::move(batch_), false, 0, {}});
    batch_ = {};
  }
  // Dropped without on_closed: the connection went without a handshake.
  void end(std::uint16_t code = 1006, std::string_view reason = {}) {
    if (!actor_)
      return;
    // the last read's messages, then the end
    caf::anon_send(actor_, atoms::input::value,
                   client_input{std::move(batch_), true, code, std::string{reason}});
    batch_ = {};
    actor_ = nullptr;
  }

  caf::actor actor_;
  client_messages batch_;
};

} // namespace

session_env::session_env(session_config c, metrics& mm, std::shared_ptr<const broker_set> b,
                         std::shared_ptr<hook_port> h, std::shared_ptr<event_port> e)
  : cfg(std::move(c)), m(mm), brokers(std::move(b)), hooks(std::move(h)),
    events(std::move(e)), rate{cfg.messages_per_second, cfg.burst} {
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
