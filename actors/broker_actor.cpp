// The broker actor: one per shard, the owner of a broker_core and, when a
// namespace keeps history, of the shard's history_service. Sessions, the
// HTTP API and the backbone talk to it by message (actors/messages.hpp).
#include "actors/broker.hpp"

#include "actors/history/engine_store.hpp"
#include "actors/messages.hpp"
#include "actors/presence.hpp"
#include "protocol/codec.hpp"
#include "protocol/json_scan.hpp"

#include <spdlog/spdlog.h>

namespace wsnode::actors {

namespace {

constexpr auto tick_interval = std::chrono::milliseconds(250);

struct broker_state {
  std::unique_ptr<broker_core> core;
  std::unique_ptr<history_store> history;
  std::unique_ptr<presence_table> presence;
  std::vector<cluster_service*> services; // the two above, when present
  std::shared_ptr<backbone> bb;
  bool draining = false;
  static inline const char* name = "wsnode.broker";

  cluster_service* service(service_tag tag) const noexcept {
    for (auto* s : services)
      if (s->tag() == tag)
        return s;
    return nullptr;
  }
};

// A sub of a channel that holds its namespace's max_subscribers on this
// node (another sub of a session already in it is not refused).
bool full(const broker_core& core, std::uint64_t sid, const std::string& ch) {
  const auto* ns = core.namespaces();
  if (ns == nullptr)
    return false;
  auto max = ns->of_channel(ch).max_subscribers;
  return max > 0 && !core.is_subscribed(sid, ch) && core.subscriber_count(ch) >= max;
}

void refuse_full(metrics& m, const caf::actor& session, std::uint64_t slot) {
  m.refuse(refusal_reason::max_subscribers);
  caf::anon_send(session, atoms::note::value,
                 session_note::event_of(static_cast<std::uint8_t>(session_event::full), slot));
}

std::int8_t tri(std::optional<bool> b) {
  return b ? static_cast<std::int8_t>(*b) : std::int8_t{-1};
}

// The HTTP API's answer when a history channel's owner or copies are out
// of reach (docs/protocol.md "When history is out of reach"); counted.
api_outcome history_unavailable(metrics& m) {
  bump(m.history_unavailable, 1);
  return api_failed(api_status::unavailable, "channel history unavailable; retry");
}

// The HTTP API's answer to a history read (docs/protocol.md "History").
api_outcome history_answer(const std::string& ch, const read_outcome& o, metrics& m) {
  if (!o.ok)
    return history_unavailable(m);
  api_outcome out;
  out.object = protocol::encode_history({}, ch, o.ep, o.off, o.frames, true);
  return out;
}

caf::behavior broker_actor(caf::stateful_actor<broker_state>* self, metrics* m,
                           std::shared_ptr<backbone> bb, broker_options opts) {
  auto& st = self->state;
  st.bb = std::move(bb); // never null: a single node has a local_backbone
  st.core = std::make_unique<broker_core>(*m, st.bb, opts.unsubscribe_linger, opts.namespaces);
  if (opts.occupancy)
    st.core->set_occupancy(opts.occupancy);
  st.core->set_max_merged_bytes(opts.max_frame_bytes);
  st.core->set_merge_timer(
      [self](std::string_view ch, std::chrono::milliseconds after, std::uint64_t window) {
        self->delayed_send(self, after, atoms::merge::value, std::string{ch}, window);
      });
  if (opts.namespaces && opts.namespaces->any_history()) {
    history_hooks hooks;
    hooks.send = [self](const std::string& node, std::string payload) {
      self->state.bb->send_to_node(node, service_tag::history, std::move(payload));
    };
    hooks.committed = [self, m](const std::string& ch, const std::string& ep, std::uint64_t off,
                                const frame_ptr& frame) {
      bump(m->publishes, 1);
      self->state.core->deliver_ordered(ch, ep, off, frame, self->state.history->propagates());
    };
    hooks.announce = [self](const std::string& ch, const std::string& ep, std::uint64_t term,
                            std::uint64_t top) {
      if (self->state.bb->clustered())
        self->state.bb->publish(topic_kind::channel, ch,
                                make_frame(broker_core::encode_top(ep, term, top)));
    };
    if (opts.engine) {
      engine_hooks eh;
      eh.post = [self](std::function<void()> f) {
        caf::anon_send(self, atoms::run::value, shard_task{std::move(f)});
      };
      eh.top = [self](const std::string& ch, const std::string& ep, std::uint64_t top) {
        self->state.core->note_top(ch, ep, 0, top);
      };
      eh.watched = [self] { return self->state.core->history_channels(); };
      st.history = std::make_unique<engine_store>(opts.engine, opts.namespaces, *m,
                                                  std::move(hooks), std::move(eh));
    } else {
      st.history =
          std::make_unique<history_service>(opts.history, opts.namespaces, *m, std::move(hooks));
    }
    // a gap in a stream here is filled from the channel's owner
    st.core->set_filler([self](const std::string& ch, const std::string& ep, std::uint64_t after) {
      read_request r;
      r.since_ep = ep;
      r.since_off = after;
      self->state.history->read(ch, r, [self, ch, ep, after](read_outcome o) {
        bool ok = o.ok && o.recovered.value_or(false);
        self->state.core->fill_done(ch, ep, after, ok, std::move(o.frames));
      });
    });
  }
  if (opts.namespaces && opts.namespaces->any_presence()) {
    presence_hooks hooks;
    hooks.send = [self](const std::string& node, std::string payload) {
      self->state.bb->send_to_node(node, service_tag::presence, std::move(payload));
    };
    hooks.deliver = [self](const std::string& ch, const frame_ptr& frame) {
      self->state.core->deliver_local(topic_kind::channel, ch, frame);
    };
    auto events = opts.events;
    if (events && (events->wants(event_kind::join) || events->wants(event_kind::leave)))
      hooks.webhook = [events, ns = opts.namespaces](const std::string& ch, std::string_view user,
                                                     bool join) {
        auto kind = join ? event_kind::join : event_kind::leave;
        if (!events->wants(kind) || !ns->of_channel(ch).events)
          return;
        std::string fields = "\"ch\":";
        protocol::json::append_string(fields, ch);
        fields += ",\"user\":";
        protocol::json::append_string(fields, user);
        events->emit(kind, std::move(fields));
      };
    st.presence = std::make_unique<presence_table>(opts.history.node_id, opts.namespaces, *m,
                                                   std::move(hooks));
  }
  if (st.history)
    st.services.push_back(st.history.get());
  if (st.presence)
    st.services.push_back(st.presence.get());
  if (st.bb->clustered() || !st.services.empty())
    self->delayed_send(self, tick_interval, atoms::tick::value);
  auto read_req = [](bool has_since, std::string ep, std::uint64_t off, bool has_limit,
                     std::uint64_t limit, read_request::purpose kind) {
    read_request r;
    r.kind = kind;
    if (has_since) {
      r.since_ep = std::move(ep);
      r.since_off = off;
    }
    if (has_limit)
      r.limit = static_cast<std::size_t>(limit);
    return r;
  };
  return {
      [=](atoms::join, std::uint64_t sid, std::string& user, sink_ptr& sink, const frame_ptr& hello,
          const caf::actor& session) {
        if (self->state.draining)
          sink->close(close_code::going_away, "node draining");
        // hello is written before the session hears `joined` and answers
        // anything: no send_batch is open here, so the hello reaches the
        // connection's thread before the session's first reply can
        auto ready = [sink, hello, session] {
          sink->send(hello);
          caf::anon_send(
              session, atoms::note::value,
              session_note::event_of(static_cast<std::uint8_t>(session_event::joined), 0));
        };
        self->state.core->join(sid, std::move(user), sink, std::move(ready), session);
      },
      [=](atoms::leave, std::uint64_t sid) {
        self->state.core->leave(sid);
        if (self->state.presence)
          self->state.presence->leave(sid);
      },
      [=](atoms::sub, std::uint64_t sid, const std::string& ch, std::uint64_t slot, sink_ptr& from,
          const caf::actor& session) {
        // the session acks once the subscription is live on every node
        if (full(*self->state.core, sid, ch))
          return refuse_full(*m, session, slot);
        if (!self->state.core->sink_of(sid)) // joined in its user's shard, not this one
          self->state.core->attach(sid, std::move(from));
        self->state.core->subscribe(sid, ch, [session, slot] {
          caf::anon_send(
              session, atoms::note::value,
              session_note::event_of(static_cast<std::uint8_t>(session_event::subscribed), slot));
        });
      },
      [=](atoms::unsub, std::uint64_t sid, const std::string& ch) {
        self->state.core->unsubscribe(sid, ch);
      },
      [=](atoms::pub, const std::string& ch, const frame_ptr& frame) {
        self->state.core->publish(ch, frame);
      },
      [=](atoms::dm, const std::string& user, const frame_ptr& frame) {
        self->state.core->send_to_user(user, frame);
        if (opts.undelivered && !self->state.core->has_user(user))
          opts.undelivered(user, frame);
      },
      [=](atoms::pub, const std::string& ch, const frame_ptr& frame, const api_completion& done) {
        self->state.core->publish(ch, frame);
        done({});
      },
      [=](atoms::dm, const std::string& user, const frame_ptr& frame, const api_completion& done) {
        self->state.core->send_to_user(user, frame);
        if (opts.undelivered && !self->state.core->has_user(user))
          opts.undelivered(user, frame);
        done({});
      },
      // ---- history channels
      [=](atoms::history_subscribe, std::uint64_t sid, const std::string& ch, std::uint64_t slot,
          sink_ptr& from, const caf::actor& session, bool has_since, std::string& ep,
          std::uint64_t off) {
        auto& core = *self->state.core;
        if (full(core, sid, ch))
          return refuse_full(*m, session, slot);
        if (!core.sink_of(sid))
          core.attach(sid, from);
        auto req =
            read_req(has_since, std::move(ep), off, false, 0, read_request::purpose::subscribe);
        core.subscribe_held(sid, ch, [self, sid, ch, slot, session, req] {
          self->state.history->read(ch, req, [self, sid, ch, slot, session](read_outcome o) {
            if (o.ok)
              self->state.core->set_position(sid, ch, o.ep, o.off);
            else
              self->state.core->drop_held(sid, ch);
            session_note r{.what = session_note::kind::sub,
                           .slot = slot,
                           .ok = o.ok,
                           .ep = o.ep,
                           .off = o.off,
                           .recovered = tri(o.recovered),
                           .frames = std::move(o.frames),
                           .error = o.error};
            caf::anon_send(session, atoms::note::value, std::move(r));
          });
        });
      },
      [=](atoms::live, std::uint64_t sid, const std::string& ch) {
        self->state.core->release(sid, ch);
      },
      [=](atoms::history_publish, const std::string& ch, std::string& from, std::string& data,
          std::string& key, std::uint64_t slot, const caf::actor& session) {
        self->state.history->publish(ch, std::move(from), std::move(data), std::move(key),
                                     [session, slot](publish_outcome o) {
                                       session_note r{.what = session_note::kind::pub,
                                                      .slot = slot,
                                                      .ok = o.ok,
                                                      .off = o.off,
                                                      .error = o.error};
                                       caf::anon_send(session, atoms::note::value, std::move(r));
                                     });
      },
      [=](atoms::history_publish, const std::string& ch, std::string& data, std::string& key,
          const api_completion& done) {
        self->state.history->publish(ch, {}, std::move(data), std::move(key),
                                     [done, m](publish_outcome o) {
                                       if (!o.ok)
                                         return done(history_unavailable(*m));
                                       api_outcome out;
                                       out.off = o.off;
                                       done(std::move(out));
                                     });
      },
      [=](atoms::history_read, const std::string& ch, bool has_since, std::string& ep,
          std::uint64_t off, bool has_limit, std::uint64_t limit, std::uint64_t slot,
          const caf::actor& session) {
        auto req = read_req(has_since, std::move(ep), off, has_limit, limit,
                            read_request::purpose::history);
        self->state.history->read(ch, req, [session, slot](read_outcome o) {
          session_note r{.what = session_note::kind::history,
                         .slot = slot,
                         .ok = o.ok,
                         .ep = o.ep,
                         .off = o.off,
                         .frames = std::move(o.frames),
                         .error = o.error};
          caf::anon_send(session, atoms::note::value, std::move(r));
        });
      },
      [=](atoms::history_read, const std::string& ch, bool has_since, std::string& ep,
          std::uint64_t off, bool has_limit, std::uint64_t limit, const api_completion& done) {
        auto req = read_req(has_since, std::move(ep), off, has_limit, limit,
                            read_request::purpose::history);
        self->state.history->read(
            ch, req, [done, ch, m](read_outcome o) { done(history_answer(ch, o, *m)); });
      },
      // ---- presence channels
      [=](atoms::presence_add, std::uint64_t sid, const std::string& ch, const std::string& user) {
        if (self->state.presence)
          self->state.presence->add(ch, sid, user);
      },
      [=](atoms::presence_remove, std::uint64_t sid, const std::string& ch) {
        if (self->state.presence)
          self->state.presence->remove(ch, sid);
      },
      [=](atoms::presence, const std::string& ch, std::uint64_t limit, const std::string& cursor,
          const std::string& id, std::uint64_t slot, const caf::actor& session) {
        auto frame = self->state.presence->page(id, ch, static_cast<std::size_t>(limit), cursor,
                                                false, opts.max_frame_bytes);
        session_note r{.what = session_note::kind::presence,
                       .slot = slot,
                       .ok = true,
                       .frame = std::move(frame)};
        caf::anon_send(session, atoms::note::value, std::move(r));
      },
      [=](atoms::presence, const std::string& ch, std::uint64_t limit, const std::string& cursor,
          const api_completion& done) {
        api_outcome out;
        out.object = self->state.presence->page({}, ch, static_cast<std::size_t>(limit), cursor,
                                                true, opts.max_frame_bytes);
        done(std::move(out));
      },
      // ---- the server API (actors/cluster_desk.cpp)
      [=](atoms::user_op, std::uint8_t op, const std::string& user, const std::string& arg,
          std::uint16_t code) -> std::uint64_t {
        auto& core = *self->state.core;
        if (static_cast<user_op>(op) == user_op::close)
          return core.close_user(user, code, arg);
        auto sessions = core.sessions_of(user);
        auto purpose = static_cast<user_op>(op) == user_op::subscribe ? server_subscribe_purpose
                                                                      : server_unsubscribe_purpose;
        for (const auto& session : sessions) {
          hook_answer a;
          a.channels.push_back(arg);
          caf::anon_send(session, atoms::hook_done::value, purpose, std::move(a));
        }
        return sessions.size();
      },
      [=](atoms::online, const std::vector<std::string>& users) {
        std::vector<std::uint64_t> counts;
        counts.reserve(users.size());
        for (const auto& u : users)
          counts.push_back(self->state.core->user_session_count(u));
        return counts;
      },
      [=](atoms::channels, const std::string& prefix, const std::string& cursor,
          std::uint64_t limit) {
        std::vector<std::pair<std::string, std::uint64_t>> page;
        bool more = self->state.core->channel_page(prefix, cursor, limit, page);
        std::vector<std::string> names;
        std::vector<std::uint64_t> counts;
        for (auto& [ch, n] : page) {
          names.push_back(std::move(ch));
          counts.push_back(n);
        }
        return caf::result<std::vector<std::string>, std::vector<std::uint64_t>, bool>{
            std::move(names), std::move(counts), more};
      },
      [=](atoms::node_msg, const std::string& from, std::uint8_t tag, const std::string& payload) {
        if (auto* s = self->state.service(static_cast<service_tag>(tag)))
          s->on_message(from, payload);
        else // a service this node does not run (no namespace uses it)
          bump(m->mesh_malformed, 1);
        self->state.bb->handled();
      },
      [=](atoms::view, const std::vector<std::string>& live) {
        for (auto* s : self->state.services)
          s->on_view(live);
      },
      [=](atoms::restarted, const std::string& node) {
        for (auto* s : self->state.services)
          s->on_restart(node);
      },
      // ---- backbone
      [=](atoms::remote, std::uint8_t kind, const std::string& name, const frame_ptr& frame) {
        auto k = static_cast<topic_kind>(kind);
        std::string_view ep;
        frame_ptr inner;
        if (k == topic_kind::channel && self->state.history && opts.namespaces &&
            opts.namespaces->of_channel(name).has_history()) {
          std::uint64_t term = 0;
          std::uint64_t top = 0;
          if (!broker_core::split_ordered(*frame, ep, inner))
            bump(m->mesh_malformed, 1);
          else if (broker_core::split_top(*inner, term, top))
            self->state.core->note_top(name, ep, term, top);
          else
            self->state.core->deliver_ordered(name, ep, protocol::msg_offset(*inner, name.size()),
                                              inner, false);
        } else {
          self->state.core->deliver_local(k, name, frame);
        }
        self->state.bb->handled();
      },
      [=](atoms::mesh_ok, std::uint8_t kind, const std::string& name) {
        self->state.core->confirmed(static_cast<topic_kind>(kind), name);
      },
      [=](atoms::run, const shard_task& task) { task.fn(); },
      [=](atoms::merge, const std::string& ch, std::uint64_t window) {
        self->state.core->merge_due(ch, window);
      },
      [=](atoms::tick) {
        self->state.core->expire();
        auto now = cluster_service::clock::now();
        for (auto* s : self->state.services)
          s->tick(now);
        self->delayed_send(self, tick_interval, atoms::tick::value);
      },
      [=](atoms::reload, std::shared_ptr<const namespace_table>& ns) {
        self->state.core->set_namespaces(std::move(ns));
      },
      [=](atoms::drain) {
        self->state.draining = true;
        spdlog::info("draining: closing {} sessions with 1001", self->state.core->session_count());
        self->state.core->close_all(close_code::going_away, "node draining");
      },
      [=](atoms::shutdown) {
        self->state.core->close_all(close_code::going_away, "node shutting down");
        self->state.services.clear();
        self->state.history.reset();
        self->state.presence.reset();
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

caf::actor spawn_broker(caf::actor_system& sys, metrics& m, std::shared_ptr<backbone> bb,
                        broker_options opts) {
  return sys.spawn(broker_actor, &m, std::move(bb), std::move(opts));
}

} // namespace wsnode::actors
