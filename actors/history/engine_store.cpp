#include "actors/history/engine_store.hpp"

#include "protocol/codec.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"

#include <chrono>

namespace wsnode::actors {

namespace {

using namespace std::chrono_literals;
constexpr auto first_check = 1s; // after a subscription: its first live message may be missed

// The engine's messages as frames, oldest first, from the first one still
// held (within the ttl, and whole); `whole` says whether any was left out.
std::vector<frame_ptr> frames_of(const std::string& ch, std::vector<engine_message>& msgs,
                                 const namespace_options& ns, metrics& m, bool& whole) {
  std::vector<frame_ptr> out;
  auto oldest = unix_ms() - ns.history_ttl.count();
  whole = true;
  for (auto& msg : msgs) {
    bool valid =
        (msg.from.empty() || protocol::valid_user(msg.from)) && protocol::json::validate(msg.data);
    if (!valid)
      bump(m.history_bad_messages, 1);
    if (!valid || msg.time_ms < oldest) { // not written by wsnode, or expired
      whole = false;
      out.clear(); // what follows a hole is returned, what precedes it is not
      continue;
    }
    out.push_back(make_frame(protocol::encode_msg(ch, msg.from, msg.off, msg.data)));
  }
  return out;
}

} // namespace

engine_store::engine_store(std::shared_ptr<history_engine> engine,
                           std::shared_ptr<const namespace_table> ns, metrics& m,
                           history_hooks hooks, engine_hooks ehooks)
  : engine_(std::move(engine)), ns_(std::move(ns)), m_(m), hooks_(std::move(hooks)),
    ehooks_(std::move(ehooks)), alive_(std::make_shared<bool>(true)) {
  std::weak_ptr<bool> alive = alive_;
  auto post = ehooks_.post;
  engine_->on_suspect([post, alive, this] {
    post([alive, this] {
      if (alive.expired())
        return;
      auto now = clock::now();
      for (auto& ch : ehooks_.watched())
        checks_[ch] = now; // at the next tick
    });
  });
}

engine_store::~engine_store() {
  engine_->on_suspect({});
  alive_.reset();
}

void engine_store::publish(const std::string& ch, std::string from, std::string data,
                           std::string key, publish_done done) {
  auto post = ehooks_.post;
  auto committed = hooks_.committed;
  std::weak_ptr<bool> alive = alive_;
  auto from_copy = from;
  auto data_copy = data;
  engine_->append(ch, std::move(from), std::move(data), std::move(key),
                  [post, committed, alive, ch, from = std::move(from_copy),
                   data = std::move(data_copy), done = std::move(done)](engine_append_result r) {
                    post([=] {
                      if (!r.ok)
                        return done({false, 0, r.error});
                      if (!r.repeat && !alive.expired())
                        committed(ch, r.ep, r.off,
                                  make_frame(protocol::encode_msg(ch, from, r.off, data)));
                      done({true, r.off, {}});
                    });
                  });
}

void engine_store::read(const std::string& ch, read_request req, read_done done) {
  const auto& ns = ns_->of_channel(ch);
  std::size_t count = 0;
  std::uint64_t after = 0;
  bool subscribe = req.kind == read_request::purpose::subscribe;
  if (subscribe) {
    if (req.since_ep) {
      after = req.since_off;
      count = ns.recovery_max;
    }
    checks_.try_emplace(ch, clock::now() + first_check);
  } else {
    count = std::min(req.limit.value_or(ns.history_size), ns.history_size);
    if (req.since_ep && count > 0) // the oldest `limit` after since, if its epoch is current
      count = ns.history_size;
    after = 0;
  }
  auto post = ehooks_.post;
  auto* m = &m_;
  const namespace_options* nsp = &ns; // the table outlives the broker
  engine_->read(
      ch, after, count,
      [post, m, nsp, ch, req = std::move(req), done = std::move(done), after,
       subscribe](engine_read_result r) mutable {
        post([=]() mutable {
          read_outcome o;
          o.ok = r.ok;
          o.error = r.error;
          if (!r.ok)
            return done(std::move(o));
          o.ep = r.ep;
          o.off = r.top;
          bool same_ep = req.since_ep && *req.since_ep == r.ep;
          if (!subscribe && same_ep)
            std::erase_if(r.messages,
                          [&](const engine_message& msg) { return msg.off <= req.since_off; });
          bool whole = true;
          auto frames = frames_of(ch, r.messages, *nsp, *m, whole);
          if (subscribe) {
            if (req.since_ep) {
              bool all = same_ep && after <= r.top && r.top - after <= nsp->recovery_max && whole &&
                         frames.size() == r.top - after;
              o.recovered = all;
              if (all)
                o.frames = std::move(frames);
            }
            return done(std::move(o));
          }
          auto limit = std::min(req.limit.value_or(nsp->history_size), nsp->history_size);
          if (same_ep && frames.size() > limit) // the oldest `limit` after since
            frames.resize(limit);
          else if (!same_ep && frames.size() > limit) // the newest `limit`
            frames.erase(frames.begin(),
                         frames.begin() + static_cast<std::ptrdiff_t>(frames.size() - limit));
          o.frames = std::move(frames);
          done(std::move(o));
        });
      });
}

void engine_store::tick(clock::time_point now) {
  for (auto it = checks_.begin(); it != checks_.end();) {
    if (it->second > now) {
      ++it;
      continue;
    }
    check_top(it->first);
    it = checks_.erase(it);
  }
}

void engine_store::check_top(const std::string& ch) {
  auto post = ehooks_.post;
  auto top = ehooks_.top;
  std::weak_ptr<bool> alive = alive_;
  engine_->read(ch, 0, 0, [post, top, alive, ch](engine_read_result r) {
    if (!r.ok)
      return;
    post([=] {
      if (!alive.expired())
        top(ch, r.ep, r.top);
    });
  });
}

} // namespace wsnode::actors
