#include "actors/cluster_desk.hpp"

#include "actors/cluster_answers.hpp"
#include "actors/messages.hpp"
#include "actors/occupancy.hpp"
#include "protocol/api_bodies.hpp"
#include "protocol/json_scan.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <charconv>
#include <unordered_map>

namespace wsnode::actors {

namespace {

// The payloads between desks (after the empty channel line):
//   'Q' RID ' ' CALL '\n' BODY   a call's request: answer with your part
//   'A' RID '\n' PART            that part ("" when the node could not make it)
//   'O' ...                      the occupancy table's (actors/occupancy.cpp)

struct pending_call {
  cluster_api call{};
  std::size_t limit = 0;
  api_completion done;
  std::vector<std::string> waiting; // nodes whose part has not come
  std::vector<node_part> parts;
};

struct desk_state {
  std::uint64_t next_rid = 0;
  std::unordered_map<std::uint64_t, pending_call> calls;
  std::vector<std::string> peers; // live, self excluded
  std::unique_ptr<occupancy_table> occupancy;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  static inline const char* name = "wsnode.desk";
};

using desk_actor = caf::stateful_actor<desk_state>;

template <class T>
const T* body_of(const protocol::api_body<T>& b) {
  return std::get_if<T>(&b);
}

// Asks every shard `ask(shard)` and calls `done(answers)` once all have
// answered (a shard that fails adds nothing).
template <class Answer, class Ask>
void ask_all(const broker_set& brokers, Ask ask, std::function<void(std::vector<Answer>)> done) {
  struct gather {
    std::size_t left = 0;
    std::vector<Answer> answers;
    std::function<void(std::vector<Answer>)> done;
  };
  auto g = std::make_shared<gather>();
  g->left = brokers.all().size();
  g->done = std::move(done);
  auto one = [g](std::optional<Answer> a) {
    if (a)
      g->answers.push_back(std::move(*a));
    if (--g->left == 0)
      g->done(std::move(g->answers));
  };
  for (const auto& shard : brokers.all())
    ask(shard, one);
}

// This node's part of `call` (body as protocol/api_bodies.hpp writes it);
// `done` gets it, or "" when it cannot be made, exactly once.
void local_part(desk_actor* self, metrics& m, const broker_set& brokers, const desk_options& o,
                cluster_api call, const std::string& body, std::function<void(std::string)> done) {
  auto within = o.timeout / 2;
  switch (call) {
  case cluster_api::disconnect: {
    auto parsed = protocol::parse_disconnect_body(body);
    const auto* b = body_of(parsed);
    if (b == nullptr)
      return done({});
    if (b->ban_ms > 0)
      o.bans->ban(b->user, ban_list::clock::now() + std::chrono::milliseconds(b->ban_ms));
    std::string reason = b->reason.empty() ? "disconnected by the application" : b->reason;
    self->request(brokers.owner(b->user), within, atoms::user_op::value,
                  static_cast<std::uint8_t>(user_op::close), b->user, reason, b->code)
        .then([done](std::uint64_t n) { done(sessions_part(n)); },
              [done](caf::error&) { done({}); });
    return;
  }
  case cluster_api::subscribe:
  case cluster_api::unsubscribe: {
    auto parsed = protocol::parse_user_channel_body(body);
    const auto* b = body_of(parsed);
    if (b == nullptr)
      return done({});
    auto op = call == cluster_api::subscribe ? user_op::subscribe : user_op::unsubscribe;
    self->request(brokers.owner(b->user), within, atoms::user_op::value,
                  static_cast<std::uint8_t>(op), b->user, b->ch, std::uint16_t{0})
        .then([done](std::uint64_t n) { done(sessions_part(n)); },
              [done](caf::error&) { done({}); });
    return;
  }
  case cluster_api::online: {
    auto parsed = protocol::parse_online_body(body);
    const auto* b = body_of(parsed);
    if (b == nullptr)
      return done({});
    auto users = b->users;
    using counts = std::vector<std::uint64_t>;
    ask_all<counts>(
        brokers,
        [self, within, users](const caf::actor& shard, auto one) {
          self->request(shard, within, atoms::online::value, users)
              .then([one](counts& c) { one(std::move(c)); },
                    [one](caf::error&) { one(std::nullopt); });
        },
        [users, done](std::vector<counts> answers) {
          counts total(users.size(), 0);
          for (const auto& a : answers)
            for (std::size_t i = 0; i < a.size() && i < total.size(); ++i)
              total[i] += a[i];
          done(online_part(users, total));
        });
    return;
  }
  case cluster_api::channels: {
    auto parsed = protocol::parse_channels_body(body);
    const auto* b = body_of(parsed);
    if (b == nullptr)
      return done({});
    using page = std::pair<std::vector<std::pair<std::string, std::uint64_t>>, bool>;
    auto limit = b->limit;
    ask_all<page>(
        brokers,
        [self, within, b = *b](const caf::actor& shard, auto one) {
          self->request(shard, within, atoms::channels::value, b.prefix, b.cursor,
                        static_cast<std::uint64_t>(b.limit))
              .then(
                  [one](std::vector<std::string>& names, std::vector<std::uint64_t>& counts,
                        bool more) {
                    page p;
                    p.second = more;
                    for (std::size_t i = 0; i < names.size() && i < counts.size(); ++i)
                      p.first.emplace_back(std::move(names[i]), counts[i]);
                    one(std::move(p));
                  },
                  [one](caf::error&) { one(std::nullopt); });
        },
        [limit, done](std::vector<page> answers) {
          std::vector<std::pair<std::string, std::uint64_t>> all;
          bool more = false;
          for (auto& [list, m] : answers) {
            more = more || m;
            for (auto& e : list)
              all.push_back(std::move(e));
          }
          std::sort(all.begin(), all.end()); // a channel lives in one shard of a node
          if (all.size() > limit) {
            all.resize(limit);
            more = true;
          }
          done(channels_part(all, more));
        });
    return;
  }
  case cluster_api::info: {
    using stats = std::pair<std::uint64_t, std::uint64_t>; // sessions, channels
    auto started = self->state.started;
    node_info base;
    base.node = o.node_id;
    base.version = o.version;
    ask_all<stats>(
        brokers,
        [self, within](const caf::actor& shard, auto one) {
          self->request(shard, within, atoms::stats::value)
              .then(
                  [one](std::uint64_t sessions, std::uint64_t channels, std::uint64_t) {
                    one(stats{sessions, channels});
                  },
                  [one](caf::error&) { one(std::nullopt); });
        },
        [&m, base, started, done](std::vector<stats> answers) mutable {
          for (const auto& [s, c] : answers) {
            base.sessions += s;
            base.channels += c;
          }
          base.connections = m.connections.load(std::memory_order_relaxed);
          base.uptime_s =
              static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::steady_clock::now() - started)
                                             .count());
          done(info_part(base));
        });
    return;
  }
  }
  done({});
}

void finish(desk_actor* self, std::uint64_t rid) {
  auto it = self->state.calls.find(rid);
  if (it == self->state.calls.end())
    return;
  auto call = std::move(it->second);
  self->state.calls.erase(it);
  api_outcome out;
  out.object = merge_parts(call.call, call.parts, call.limit, std::move(call.waiting));
  call.done(std::move(out));
}

void add_part(desk_actor* self, std::uint64_t rid, const std::string& node, std::string part) {
  auto it = self->state.calls.find(rid);
  if (it == self->state.calls.end())
    return; // too late, or not ours
  auto& w = it->second.waiting;
  auto pos = std::find(w.begin(), w.end(), node);
  if (pos == w.end())
    return;
  w.erase(pos);
  it->second.parts.push_back({node, std::move(part)});
  if (w.empty())
    finish(self, rid);
}

std::optional<std::uint64_t> number(std::string_view s) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

// The `undelivered` event's members from the dm frame that found nobody.
std::string undelivered_fields(const std::string& user, std::string_view frame) {
  std::string_view data = "null";
  std::string_view from;
  protocol::json::for_each_member(frame, [&](std::string_view key, std::string_view value) {
    if (key == "data")
      data = value;
    else if (key == "from")
      from = value;
    return true;
  });
  std::string fields = "\"to\":";
  protocol::json::append_string(fields, user);
  if (!from.empty()) {
    fields += ",\"from\":";
    fields += from;
  }
  fields += ",\"data\":";
  fields += data;
  return fields;
}

caf::behavior desk(desk_actor* self, metrics* m, std::shared_ptr<backbone> bb,
                   std::shared_ptr<const broker_set> brokers, desk_options o) {
  auto send = [self, bb](const std::string& node, std::string body) {
    (void)self;
    bb->send_to_node(node, service_tag::cluster, "\n" + std::move(body));
  };
  if (o.events && (o.events->wants(event_kind::occupied) || o.events->wants(event_kind::vacated) ||
                   o.events->wants(event_kind::undelivered))) {
    occupancy_hooks h;
    h.send = [send](const std::string& node, std::string payload) {
      send(node, "O" + std::move(payload));
    };
    auto events = o.events;
    h.changed = [events](const std::string& name, bool held) {
      if (!name.starts_with("c:"))
        return;
      auto kind = held ? event_kind::occupied : event_kind::vacated;
      if (!events->wants(kind))
        return;
      std::string fields = "\"ch\":";
      protocol::json::append_string(fields, std::string_view{name}.substr(2));
      events->emit(kind, std::move(fields));
    };
    h.undelivered = [events](std::string fields) {
      if (events->wants(event_kind::undelivered))
        events->emit(event_kind::undelivered, std::move(fields));
    };
    h.repair = [m] { bump(m->occupancy_repairs, 1); };
    self->state.occupancy = std::make_unique<occupancy_table>(o.node_id, std::move(h));
    self->delayed_send(self, std::chrono::seconds(1), atoms::tick::value);
  }
  auto part_sender = [self, o](std::uint64_t rid) {
    return [self, rid, node = o.node_id](std::string part) {
      caf::anon_send(self, atoms::api_part::value, rid, node, std::move(part));
    };
  };
  return {
      [=](atoms::api_call, std::uint8_t call, const std::string& body, api_completion& done) {
        auto c = static_cast<cluster_api>(call);
        auto rid = ++self->state.next_rid;
        auto& p = self->state.calls[rid];
        p.call = c;
        p.done = std::move(done);
        if (c == cluster_api::channels) {
          auto parsed = protocol::parse_channels_body(body);
          if (const auto* b = body_of(parsed))
            p.limit = b->limit;
        }
        p.waiting = self->state.peers;
        p.waiting.push_back(o.node_id);
        auto request = "Q" + std::to_string(rid) + " " + std::string{to_string(c)} + "\n" + body;
        for (const auto& peer : self->state.peers)
          send(peer, request);
        local_part(self, *m, *brokers, o, c, body, part_sender(rid));
        self->delayed_send(self, o.timeout, atoms::api_timeout::value, rid);
      },
      [=](atoms::api_part, std::uint64_t rid, const std::string& node, std::string& part) {
        add_part(self, rid, node, std::move(part));
      },
      [=](atoms::api_timeout, std::uint64_t rid) { finish(self, rid); },
      [=](atoms::occupancy, std::uint8_t kind, const std::string& name, bool held) {
        if (auto* t = self->state.occupancy.get())
          t->local((static_cast<topic_kind>(kind) == topic_kind::channel ? "c:" : "u:") + name,
                   held);
      },
      [=](atoms::dm, const std::string& user, const frame_ptr& frame) {
        if (auto* t = self->state.occupancy.get())
          t->check_undelivered(user, undelivered_fields(user, *frame));
      },
      [=](atoms::node_msg, const std::string& from, std::uint8_t, const std::string& payload) {
        std::string_view p{payload};
        if (!p.empty() && p.front() == '\n')
          p.remove_prefix(1);
        bool ok = false;
        if (!p.empty() && p.front() == 'Q') {
          auto nl = p.find('\n');
          auto head = p.substr(1, nl == std::string_view::npos ? 0 : nl - 1);
          auto sp = head.find(' ');
          auto rid = number(head.substr(0, sp));
          auto call =
              sp == std::string_view::npos ? std::nullopt : cluster_api_from(head.substr(sp + 1));
          if (nl != std::string_view::npos && rid && call) {
            ok = true;
            auto reply_to = from;
            local_part(self, *m, *brokers, o, *call, std::string{p.substr(nl + 1)},
                       [send, reply_to, rid = *rid](std::string part) {
                         send(reply_to, "A" + std::to_string(rid) + "\n" + std::move(part));
                       });
          }
        } else if (!p.empty() && p.front() == 'A') {
          auto nl = p.find('\n');
          auto rid = number(p.substr(1, nl == std::string_view::npos ? 0 : nl - 1));
          if (nl != std::string_view::npos && rid) {
            ok = true;
            add_part(self, *rid, from, std::string{p.substr(nl + 1)});
          }
        } else if (!p.empty() && p.front() == 'O') {
          ok = self->state.occupancy == nullptr ||
               self->state.occupancy->on_message(from, p.substr(1));
        }
        if (!ok)
          bump(m->mesh_malformed, 1);
        bb->handled();
      },
      [=](atoms::view, std::vector<std::string>& live) {
        std::erase(live, o.node_id);
        self->state.peers = live;
        if (auto* t = self->state.occupancy.get())
          t->on_view(std::move(live));
      },
      [=](atoms::restarted, const std::string& node) {
        if (auto* t = self->state.occupancy.get())
          t->on_restart(node);
      },
      [=](atoms::tick) { // only with an occupancy table: its digests
        self->state.occupancy->tick();
        self->delayed_send(self, std::chrono::seconds(1), atoms::tick::value);
      },
      [=](atoms::shutdown) {
        for (auto& [rid, call] : self->state.calls)
          call.done(api_failed(api_status::unavailable, "node shutting down"));
        self->state.calls.clear();
        self->quit(caf::exit_reason::user_shutdown);
      },
  };
}

} // namespace

caf::actor spawn_desk(caf::actor_system& sys, metrics& m, std::shared_ptr<backbone> bb,
                      std::shared_ptr<const broker_set> brokers, desk_options opts) {
  return sys.spawn(desk, &m, std::move(bb), std::move(brokers), std::move(opts));
}

broker_core::occupancy_fn desk_occupancy_fn(std::shared_ptr<caf::actor> desk,
                                            const event_port* events,
                                            std::shared_ptr<const namespace_table> ns) {
  if (events == nullptr)
    return {};
  bool channels = events->wants(event_kind::occupied) || events->wants(event_kind::vacated);
  bool users = events->wants(event_kind::undelivered);
  if (!channels && !users)
    return {};
  return [desk, channels, users, ns](topic_kind kind, std::string_view name, bool held) {
    if (kind == topic_kind::channel ? !channels : !users)
      return;
    if (kind == topic_kind::channel && ns && !ns->of_channel(name).events)
      return;
    caf::anon_send(*desk, atoms::occupancy::value, static_cast<std::uint8_t>(kind),
                   std::string{name}, held);
  };
}

} // namespace wsnode::actors
