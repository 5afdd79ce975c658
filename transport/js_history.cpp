#include "transport/js_history.hpp"

#include "protocol/names.hpp"
#include "transport/js_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <deque>
#include <mutex>
#include <unordered_map>

namespace wsnode::transport {

using js::clock;
using js::pub_ack;

namespace {
constexpr int max_conflicts = 1000;
constexpr std::size_t max_cached = 100000; // channels whose top this node remembers
constexpr auto key_poll = std::chrono::milliseconds(100);
} // namespace

// The appends: per channel, one write at a time from this node.
struct js_history::impl : js::store {
  struct op {
    std::string from;
    std::string data;
    std::string key;
    append_done done;
    clock::time_point deadline;
    std::string pid;
    int conflicts = 0;
    bool key_claimed = false;
    /// Publishes of the same channel queued behind this one and written in
    /// the same record (none for a keyed publish): offsets follow this one's.
    std::vector<std::shared_ptr<op>> riders;
  };
  struct chan {
    std::optional<js::last_msg> last; // what this node knows of the channel's top
    std::deque<std::shared_ptr<op>> queue;
    bool busy = false;
  };
  using op_ptr = std::shared_ptr<op>;

  impl(js_history_options o, metrics& mm) : store(std::move(o), mm) {}

  std::mutex mu; // chans, suspect_fn, pids
  std::unordered_map<std::string, chan> chans;
  std::function<void()> suspect_fn;
  std::uint64_t pids = 0;
  std::string incarnation = protocol::make_epoch();

  std::shared_ptr<impl> self() { return std::static_pointer_cast<impl>(shared_from_this()); }

  std::optional<js::last_msg> known_last(const std::string& ch) {
    std::lock_guard<std::mutex> g{mu};
    return chans[ch].last;
  }
  void set_last(const std::string& ch, std::optional<js::last_msg> l) {
    std::lock_guard<std::mutex> g{mu};
    chans[ch].last = std::move(l);
  }

  void kick(const std::string& ch) {
    op_ptr o;
    {
      std::lock_guard<std::mutex> g{mu};
      auto& c = chans[ch];
      if (c.busy || c.queue.empty())
        return;
      c.busy = true;
      o = c.queue.front();
    }
    step_key(ch, o);
  }

  void finish(const std::string& ch, const op_ptr& o, engine_append_result r) {
    {
      std::lock_guard<std::mutex> g{mu};
      auto& c = chans[ch];
      if (!c.queue.empty() && c.queue.front() == o)
        c.queue.pop_front();
      c.busy = false;
      if (!r.ok)
        c.last.reset(); // what the channel holds now is unknown
      // what is cached of idle channels stays bounded: past max_cached,
      // an idle channel's top is read again at its next write
      if (c.queue.empty() && (!c.last || chans.size() > max_cached))
        chans.erase(ch);
    }
    auto riders = std::move(o->riders);
    for (std::size_t i = 0; i < riders.size(); ++i) {
      auto rr = r;
      rr.off = r.ok ? r.off + i + 1 : 0;
      riders[i]->done(std::move(rr));
    }
    o->done(std::move(r));
    kick(ch);
  }

  // The publishes queued behind `o` that can share its record: no key,
  // at most max_batch in all, about 256 KiB of data.
  void gather_riders(const std::string& ch, const op_ptr& o) {
    if (!o->key.empty() || !o->riders.empty())
      return;
    std::lock_guard<std::mutex> g{mu};
    auto& q = chans[ch].queue;
    std::size_t bytes = o->data.size();
    while (q.size() > 1 && o->riders.size() + 1 < js::max_batch) {
      const auto& next = q[1];
      if (!next->key.empty() || bytes + next->data.size() > (256u << 10))
        break;
      bytes += next->data.size();
      o->riders.push_back(next);
      q.erase(q.begin() + 1);
    }
  }

  void fail(const std::string& ch, const op_ptr& o, std::string why = js::unavailable) {
    engine_append_result r;
    r.error = std::move(why);
    finish(ch, o, std::move(r));
  }

  // A keyed publish first claims its key: only if nobody has (JetStream
  // checks "no message yet" when it applies the write).
  void step_key(const std::string& ch, const op_ptr& o) {
    if (clock::now() >= o->deadline) // waited its whole time behind others
      return fail(ch, o, "queued behind other publishes of the channel past nats.timeout_ms");
    if (o->key.empty() || o->key_claimed)
      return step_last(ch, o);
    auto s = self();
    publish(key_subject(*space_of(ch), ch, o->key), {}, {{js::h_expect, "0"}}, o->deadline,
            [s, ch, o](pub_ack a) {
              if (a.what == pub_ack::kind::ok) {
                o->key_claimed = true;
                return s->step_last(ch, o);
              }
              if (a.what == pub_ack::kind::wrong_last)
                return s->poll_key(ch, o); // a publish with this key came first
              s->fail(ch, o);
            });
  }

  // The key was claimed by an earlier publish: answer with its offset
  // once it has one ("EP:OFF" follows the claim).
  void poll_key(const std::string& ch, const op_ptr& o) {
    const auto& n = *space_of(ch);
    auto s = self();
    direct_last(n.key_stream, key_subject(n, ch, o->key), o->deadline,
                [s, ch, o](const js::reply& r) {
                  if (r.status() == 404) // expired meanwhile: claim it again
                    return s->step_key(ch, o);
                  auto body = r.data();
                  auto colon = body.find(':');
                  if (!r.timed_out() && r.status() == 0 && colon != std::string_view::npos) {
                    engine_append_result res;
                    res.ok = true;
                    res.repeat = true;
                    res.ep = std::string{body.substr(0, colon)};
                    std::from_chars(body.data() + colon + 1, body.data() + body.size(), res.off);
                    return s->finish(ch, o, std::move(res));
                  }
                  if (r.timed_out() || clock::now() + key_poll >= o->deadline)
                    return s->fail(ch, o);
                  s->after(key_poll, [s, ch, o] { s->poll_key(ch, o); });
                });
  }

  void step_last(const std::string& ch, const op_ptr& o) {
    if (known_last(ch))
      return step_write(ch, o);
    const auto& n = *space_of(ch);
    auto s = self();
    direct_last(n.data_stream, data_subject(n, ch), o->deadline, [s, ch, o](const js::reply& r) {
      if (r.status() == 404)
        return s->step_marker(ch, o);
      auto last = s->parse_last(r);
      if (!last)
        return s->fail(ch, o);
      s->set_last(ch, std::move(last));
      s->step_write(ch, o);
    });
  }

  // The channel holds nothing: start its epoch (one of racing writers wins).
  void step_marker(const std::string& ch, const op_ptr& o) {
    auto s = self();
    write_marker(ch, o->deadline, [s, ch, o](pub_ack a, std::string ep) {
      if (a.what == pub_ack::kind::ok) {
        s->set_last(ch, js::last_msg{a.seq, 0, std::move(ep), {}});
        return s->step_write(ch, o);
      }
      if (a.what == pub_ack::kind::wrong_last) // another writer made it
        return s->step_last(ch, o);
      s->fail(ch, o);
    });
  }

  // Writes at the offset after the known top, expecting the top's stream
  // sequence and fenced by the offset's Msg-Id. A retry after a timeout
  // sends the same Msg-Id: stored at most once.
  void step_write(const std::string& ch, const op_ptr& o) {
    gather_riders(ch, o);
    auto l = *known_last(ch);
    const auto& n = *space_of(ch);
    auto off = l.off + 1;
    auto count = 1 + o->riders.size();
    auto links = js::next_links(l.seq, l.links);
    js::headers hdrs{{js::h_msg_id, js::offset_fence(ch, l.ep, off)},
                     {js::h_expect, std::to_string(l.seq)},
                     {js::h_ep, l.ep},
                     {js::h_off, std::to_string(off)},
                     {js::h_time, std::to_string(wsnode::unix_ms())},
                     {js::h_prev, links},
                     {js::h_pid, o->pid}};
    std::string body;
    if (count == 1) {
      body = o->data;
      if (!o->from.empty())
        hdrs.emplace_back(js::h_from, o->from);
    } else { // one record for the batch: one round trip, one fence
      std::vector<js::record_item> items{{o->from, o->data}};
      for (const auto& r : o->riders)
        items.push_back({r->from, r->data});
      body = js::pack_record(items);
      hdrs.emplace_back(js::h_count, std::to_string(count));
    }
    auto s = self();
    auto committed = [s, ch, o, off, top = off + count - 1, ep = l.ep, links](std::uint64_t seq) {
      s->set_last(ch, js::last_msg{seq, top, ep, links});
      s->committed(ch, o, ep, off);
    };
    auto stream = n.data_stream;
    publish(data_subject(n, ch), std::move(body), std::move(hdrs), o->deadline,
            [s, ch, o, committed, stream](pub_ack a) {
              switch (a.what) {
              case pub_ack::kind::ok:
                return committed(a.seq);
              case pub_ack::kind::duplicate: // our own earlier try, or another writer's offset?
                return s->direct_seq(stream, a.seq, o->deadline,
                                     [s, ch, o, committed, seq = a.seq](const js::reply& r) {
                                       if (!r.timed_out() && r.status() == 0 &&
                                           r.header(js::h_pid) == o->pid)
                                         return committed(seq);
                                       s->conflict(ch, o);
                                     });
              case pub_ack::kind::wrong_last:
                return s->conflict(ch, o);
              case pub_ack::kind::error:
                spdlog::warn("nats: history append to {}: {}", ch, a.error);
                return s->fail(ch, o, "JetStream: " + a.error);
              case pub_ack::kind::timeout:
                return s->fail(ch, o);
              }
            });
  }

  // Another writer took the offset: read the channel's top and try the next.
  void conflict(const std::string& ch, const op_ptr& o) {
    set_last(ch, std::nullopt);
    if (++o->conflicts > max_conflicts || clock::now() >= o->deadline)
      return fail(ch, o);
    step_last(ch, o);
  }

  void committed(const std::string& ch, const op_ptr& o, const std::string& ep, std::uint64_t off) {
    if (!o->key.empty()) // repeats of the key answer with this offset
      publish(key_subject(*space_of(ch), ch, o->key), fmt::format("{}:{}", ep, off), {},
              o->deadline, [](pub_ack) {});
    engine_append_result r;
    r.ok = true;
    r.ep = ep;
    r.off = off;
    finish(ch, o, std::move(r));
  }
};

js_history::js_history(js_history_options opts, metrics& m)
  : impl_(std::make_shared<impl>(std::move(opts), m)) {}

js_history::~js_history() = default;

void js_history::connected(js::client& c) {
  impl_->cl.store(&c);
  impl_->ensure_streams();
}

void js_history::suspect() {
  std::function<void()> f;
  {
    std::lock_guard<std::mutex> g{impl_->mu};
    f = impl_->suspect_fn;
  }
  if (f)
    f();
}

std::vector<std::string> js_history::advisory_subjects() const {
  std::vector<std::string> out;
  for (const auto& [name, n] : impl_->spaces)
    out.push_back("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + n.data_stream);
  return out;
}

void js_history::on_suspect(std::function<void()> f) {
  std::lock_guard<std::mutex> g{impl_->mu};
  impl_->suspect_fn = std::move(f);
}

void js_history::append(const std::string& ch, std::string from, std::string data, std::string key,
                        append_done done) {
  auto& i = *impl_;
  if (i.space_of(ch) == nullptr) {
    engine_append_result r;
    r.error = "channel without history";
    return done(std::move(r));
  }
  auto o = std::make_shared<impl::op>();
  o->from = std::move(from);
  o->data = std::move(data);
  o->key = std::move(key);
  o->done = std::move(done);
  o->deadline = clock::now() + i.opts.timeout;
  {
    std::lock_guard<std::mutex> g{i.mu};
    o->pid = fmt::format("{}-{}-{}", i.opts.node_id, i.incarnation, ++i.pids);
    i.chans[ch].queue.push_back(o);
  }
  i.kick(ch);
}

void js_history::read(const std::string& ch, std::uint64_t after, std::size_t max_count,
                      read_done done) {
  if (impl_->space_of(ch) == nullptr) {
    engine_read_result r;
    r.error = "channel without history";
    return done(std::move(r));
  }
  js::read_channel(impl_, ch, after, max_count, std::move(done));
}

} // namespace wsnode::transport
