// Atoms and message types exchanged between wsnode's actors (CAF 0.17).
#pragma once

#include "core/hooks.hpp"
#include "core/ports.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wsnode::actors {
class namespace_table;
}

namespace wsnode::actors {

/// One message read from a client (transport -> session actor).
struct client_message {
  std::string text;
  bool binary = false;
};
/// The messages of one read, in order.
using client_messages = std::vector<client_message>;

/// What transport hands a session actor (atoms::input): the messages of
/// one read or, last, the connection's end with its close code and reason
/// (after the messages it carries). One message type for both, so one
/// handler: every handler costs each idle session's behavior some 45 bytes.
struct client_input {
  client_messages messages;
  bool closed = false; ///< the connection is gone
  std::uint16_t code = 0;
  std::string reason;
};

/// An HTTP API call's completion, carried through mailboxes. It answers
/// once; when every copy of it is gone unanswered (its shard has quit and
/// dropped the message, or a handler lost it), it answers `unavailable`
/// there and then, so that no HTTP client waits for a reply that cannot come.
class api_completion {
public:
  api_completion() = default;
  explicit api_completion(api_done fn) : state_(std::make_shared<state>(std::move(fn))) {}
  /// Answers `o`; later calls do nothing.
  void operator()(api_outcome o) const {
    if (state_)
      state_->finish(std::move(o));
  }

private:
  struct state {
    explicit state(api_done f) : fn(std::move(f)) {}
    state(const state&) = delete;
    state& operator=(const state&) = delete;
    ~state() { finish(api_failed(api_status::unavailable, "node cannot take messages")); }
    void finish(api_outcome o) {
      if (auto f = std::exchange(fn, nullptr))
        f(std::move(o));
    }
    api_done fn;
  };
  std::shared_ptr<state> state_;
};
/// What the desk asks a user's shard to do with the user's sessions here.
enum class user_op : std::uint8_t { close, subscribe, unsubscribe };

/// The shard passes a server API (un)subscribe to each session as an
/// atoms::hook_done with one of these purposes and the channel in
/// `channels[0]`: the session's handler of hook answers takes it, since
/// every handler of a behavior costs each idle session some 45 bytes.
inline constexpr std::uint8_t server_subscribe_purpose = 200;
inline constexpr std::uint8_t server_unsubscribe_purpose = 201;

/// What the broker tells a session actor (a session_note event) once the session's
/// interest is live on every node.
enum class session_event : std::uint8_t {
  joined,     ///< DMs to the session's user reach it; `hello` was sent
  subscribed, ///< the subscription in the argument's reply slot is live
  full,       ///< the channel of that slot's sub holds its max_subscribers here
};

/// Frames handed from a broker to a session (a recovery's messages).
using frame_list = std::vector<frame_ptr>;

/// What a session actor learns (atoms::note): a shard's answer to one of
/// its commands, or an event (from a shard: joined, a subscription live, a
/// channel full; from transport: the client's input ended; from its own
/// timers). One message type, so one handler in the session's behavior:
/// every handler costs each idle session some 45 bytes.
struct session_note {
  enum class kind : std::uint8_t {
    sub,      ///< a history channel's sub: ok, ep, off, recovered, frames (the replay), error
    pub,      ///< a history channel's pub: ok, off, error
    history,  ///< a history read: ok, ep, off, frames, error
    presence, ///< a presence page: frame
    event,    ///< code (a session_event, or the session's own), slot: its argument
  };
  kind what = kind::sub;
  std::uint64_t slot = 0; ///< the command's reply slot (an event's argument)
  bool ok = false;
  std::uint8_t code = 0; ///< an event's code
  std::string ep{};
  std::uint64_t off = 0;
  std::int8_t recovered = -1; ///< -1: none, 0, 1
  frame_list frames{};
  std::string error{};
  std::string frame{};

  static session_note event_of(std::uint8_t code, std::uint64_t arg) {
    session_note n;
    n.what = kind::event;
    n.code = code;
    n.slot = arg;
    return n;
  }
};

/// Work another thread hands a broker shard (an external history engine's
/// answers, actors/history/engine_store.hpp), run on the shard's thread.
struct shard_task {
  std::function<void()> fn;
};

} // namespace wsnode::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::frame_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::sink_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::actors::api_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::actors::client_input)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::actors::frame_list)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::actors::shard_task)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::actors::session_note)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::hook_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const wsnode::actors::namespace_table>)

namespace wsnode::actors::atoms {

// session -> broker
using join = caf::atom_constant<caf::atom("join")>;   ///< (sid, user, sink, hello frame, session)
using leave = caf::atom_constant<caf::atom("leave")>; ///< (sid)
using sub = caf::atom_constant<caf::atom("sub")>;     ///< (sid, ch, reply slot, sink, session)
using unsub = caf::atom_constant<caf::atom("unsub")>; ///< (sid, ch)
using pub = caf::atom_constant<caf::atom("pub")>;     ///< (ch, frame[, completion])
using dm = caf::atom_constant<caf::atom("dm")>;       ///< (user, frame[, completion])

// history channels (namespaces with history_size > 0; see history/service.hpp)
/// session -> shard: (sid, ch, slot, sink, session, has_since, ep, off)
using history_subscribe = caf::atom_constant<caf::atom("hsub")>;
/// session -> shard: (sid, ch) the sub's ack and replay are out: go live
using live = caf::atom_constant<caf::atom("live")>;
/// session -> shard: (ch, from, data, key, slot, session); API: (ch, data, key,
/// api_completion)
using history_publish = caf::atom_constant<caf::atom("hpub")>;
/// session -> shard: (ch, has_since, ep, off, has_limit, limit, slot, session); API: (...,
/// api_completion)
using history_read = caf::atom_constant<caf::atom("hist")>;
/// shards, transport, the session's timers -> session: (session_note)
using note = caf::atom_constant<caf::atom("note")>;
// presence (namespaces with presence = true; see presence.hpp)
/// session -> shard: (sid, ch, user) subscribed; (sid, ch) unsubscribed
using presence_add = caf::atom_constant<caf::atom("padd")>;
using presence_remove = caf::atom_constant<caf::atom("prem")>;
/// session -> shard: (ch, limit, cursor, id, slot, session); API: (ch, limit,
/// cursor, api_completion)
using presence = caf::atom_constant<caf::atom("presence")>;
/// backbone -> shard: (from node, service_tag, payload) a history or presence service message
using node_msg = caf::atom_constant<caf::atom("node_msg")>;
/// backbone -> shards: (live peer ids)
using view = caf::atom_constant<caf::atom("view")>;
/// backbone -> shards: (peer id) it restarted
using restarted = caf::atom_constant<caf::atom("restarted")>;

/// desk -> shard: (user_op, user, arg, code) -> sessions reached; arg is
/// the channel (subscribe, unsubscribe) or the close reason (close)
using user_op = caf::atom_constant<caf::atom("user_op")>;
/// desk -> shard: (users) -> sessions of each here
using online = caf::atom_constant<caf::atom("online")>;
/// desk -> shard: (prefix, cursor, limit) -> (channels, counts, more)
using channels = caf::atom_constant<caf::atom("channels")>;
/// backbone or shard -> desk: (ch, occupied) a channel's first local
/// subscriber came or its last went
using occupancy = caf::atom_constant<caf::atom("occupancy")>;
/// desk: (call, body, completion) a server API call from this node's HTTP
using api_call = caf::atom_constant<caf::atom("api_call")>;
/// desk -> desk: (rid, node, part) a node's part of call `rid`; (rid) its time is up
using api_part = caf::atom_constant<caf::atom("api_part")>;
using api_timeout = caf::atom_constant<caf::atom("api_tmo")>;

// transport -> session actor (see session.cpp)
using input = caf::atom_constant<caf::atom("input")>; ///< (client_input) one read, or the end
/// hook client -> session actor: (purpose, hook_answer) the application's
/// answer (see session_hooks.cpp); shard -> session actor: the server
/// API's (un)subscribe (server_subscribe_purpose, above)
using hook_done = caf::atom_constant<caf::atom("hook_done")>;

// backbone -> broker
using remote = caf::atom_constant<caf::atom("remote")>;   ///< (kind, name, frame)
using mesh_ok = caf::atom_constant<caf::atom("mesh_ok")>; ///< (kind, name) subscription live
using tick = caf::atom_constant<caf::atom("tick")>;       ///< () housekeeping timer
using merge = caf::atom_constant<caf::atom("merge")>;     ///< (ch, window) a merge window is due
using run = caf::atom_constant<caf::atom("run")>;         ///< (shard_task) from another thread
/// node -> shard: (namespace table) a reload's (see broker_core::set_namespaces)
using reload = caf::atom_constant<caf::atom("reload")>;

// node -> broker
using drain = caf::atom_constant<caf::atom("drain")>;       ///< () close sessions with 1001
using shutdown = caf::atom_constant<caf::atom("shutdown")>; ///< () exit sessions, quit
using stats = caf::atom_constant<caf::atom("stats")>;       ///< () -> (sessions, channels, users)

} // namespace wsnode::actors::atoms
