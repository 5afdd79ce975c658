#include "transport/js_history.hpp"

#include "core/backbone.hpp"
#include "protocol/codec.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"
#include "transport/js_client.hpp"
#include "transport/nats_subjects.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace wsnode::transport {

namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Headers of a stored message (the Nats-* ones are JetStream's).
constexpr const char* h_ep = "Wsn-Ep";
constexpr const char* h_off = "Wsn-Off";
constexpr const char* h_from = "Wsn-From";
constexpr const char* h_time = "Wsn-Time";
constexpr const char* h_prev = "Wsn-Prev"; // stream seqs of earlier messages, newest first
constexpr const char* h_pid = "Wsn-Pid";   // this write's unique id
constexpr const char* h_expect = "Nats-Expected-Last-Subject-Sequence";
constexpr std::size_t prev_links = 16;
constexpr auto try_timeout = 1000ms; // one attempt; retried until the caller's deadline
constexpr auto retry_pause = 100ms;
constexpr int max_conflicts = 1000;
constexpr const char* unavailable = "channel history unavailable";

// What JetStream answered to a publish.
struct pub_ack {
  enum class kind : std::uint8_t { ok, duplicate, wrong_last, error, timeout } what = kind::timeout;
  std::uint64_t seq = 0;
  std::string error;
};

// JetStream's error code for "wrong last sequence".
constexpr std::int64_t err_wrong_last = 10071;
// ... for "stream name already in use" (another configuration).
constexpr std::int64_t err_stream_exists = 10058;

pub_ack parse_ack(const js::reply& r) {
  pub_ack a;
  if (r.timed_out() || r.status() == 503 || r.status() == 408)
    return a;
  boost::system::error_code ec;
  auto v = boost::json::parse(r.data(), ec);
  const auto* o = ec ? nullptr : v.if_object();
  if (o == nullptr) {
    a.what = pub_ack::kind::error;
    a.error = "unreadable answer from JetStream";
    return a;
  }
  if (const auto* e = o->if_contains("error"); e != nullptr && e->is_object()) {
    const auto& eo = e->as_object();
    const auto* code = eo.if_contains("err_code");
    a.what = code != nullptr && code->is_int64() && code->as_int64() == err_wrong_last
                 ? pub_ack::kind::wrong_last
                 : pub_ack::kind::error;
    if (const auto* d = eo.if_contains("description"); d != nullptr && d->is_string())
      a.error = d->as_string().c_str();
    return a;
  }
  const auto* seq = o->if_contains("seq");
  if (seq == nullptr || !seq->is_number()) {
    a.what = pub_ack::kind::error;
    a.error = "JetStream answer without seq";
    return a;
  }
  a.seq = seq->to_number<std::uint64_t>();
  const auto* dup = o->if_contains("duplicate");
  a.what = dup != nullptr && dup->is_bool() && dup->as_bool() ? pub_ack::kind::duplicate
                                                              : pub_ack::kind::ok;
  return a;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t to_i64(std::string_view v) {
  std::int64_t out = 0;
  std::from_chars(v.data(), v.data() + v.size(), out);
  return out;
}

// "s1,s2,..." -> the first `max` numbers.
std::vector<std::uint64_t> split_seqs(std::string_view list, std::size_t max) {
  std::vector<std::uint64_t> out;
  while (!list.empty() && out.size() < max) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc{} || v == 0)
      break;
    out.push_back(v);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  return out;
}

// The links a new message carries: the last one's seq, then its links.
std::string next_links(std::uint64_t last_seq, std::string_view last_links) {
  std::string out = std::to_string(last_seq);
  for (auto s : split_seqs(last_links, prev_links - 1)) {
    out.push_back(',');
    out += std::to_string(s);
  }
  return out;
}

struct names {
  std::string token; // the namespace as a subject token
  std::string data_stream;
  std::string key_stream;
  std::size_t history_size = 0;
};

} // namespace

struct js_history::impl : std::enable_shared_from_this<impl> {
  struct last_msg {
    std::uint64_t seq = 0;
    std::uint64_t off = 0;
    std::string ep;
    std::string links;
  };
  struct op {
    std::string from;
    std::string data;
    std::string key;
    append_done done;
    clock::time_point deadline;
    std::string pid;
    int conflicts = 0;
    bool key_claimed = false;
  };
  struct chan {
    std::optional<last_msg> last;
    std::deque<std::shared_ptr<op>> queue;
    bool busy = false;
  };

  impl(js_history_options o, metrics& mm) : opts(std::move(o)), m(mm) {
    for (const auto& [name, size] : opts.namespaces) {
      names n;
      n.token = nats::encode_token(name);
      n.data_stream = opts.prefix + "_H_" + n.token;
      n.key_stream = opts.prefix + "_K_" + n.token;
      n.history_size = size;
      spaces.emplace(name, std::move(n));
    }
  }

  js_history_options opts;
  metrics& m;
  std::map<std::string, names, std::less<>> spaces;
  std::atomic<js::client*> cl{nullptr};
  std::mutex mu; // chans, suspect_fn, pid counter
  std::unordered_map<std::string, chan> chans;
  std::function<void()> suspect_fn;
  std::uint64_t pids = 0;
  std::string incarnation = protocol::make_epoch();

  const names* space_of(std::string_view ch) const {
    auto it = spaces.find(protocol::channel_namespace(ch));
    return it == spaces.end() ? nullptr : &it->second;
  }
  std::string data_subject(const names& n, std::string_view ch) const {
    return opts.prefix + ".h." + n.token + "." + nats::encode_token(ch);
  }
  std::string key_subject(const names& n, std::string_view ch, std::string_view key) const {
    std::string both{ch};
    both.push_back('|');
    both.append(key);
    return opts.prefix + ".k." + n.token + "." + nats::encode_token(both);
  }

  // ---------------------------------------------------------------- requests

  // A request retried after timeouts and "no responders" (a stream without
  // a leader yet) until `deadline`; `fn` sees the last answer.
  void request(std::string subject, std::string body, js::headers hdrs, clock::time_point deadline,
               js::client::reply_fn fn) {
    auto* c = cl.load();
    if (c == nullptr) {
      fn(js::reply{});
      return;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    auto wait = std::clamp<std::chrono::milliseconds>(left, 1ms, try_timeout);
    auto self = shared_from_this();
    c->request(subject, body, hdrs, wait,
               [self, subject, body, hdrs, deadline, fn](const js::reply& r) mutable {
                 bool again = r.timed_out() || r.status() == 503 || r.status() == 408;
                 auto* c2 = self->cl.load();
                 if (!again || c2 == nullptr || clock::now() + retry_pause >= deadline)
                   return fn(r);
                 c2->after(retry_pause, [self, subject = std::move(subject), body = std::move(body),
                                         hdrs = std::move(hdrs), deadline, fn = std::move(fn)] {
                   self->request(subject, body, hdrs, deadline, fn);
                 });
               });
  }

  void direct_last(const std::string& stream, const std::string& subject,
                   clock::time_point deadline, js::client::reply_fn fn) {
    request("$JS.API.DIRECT.GET." + stream + "." + subject, {}, {}, deadline, std::move(fn));
  }

  void direct_seq(const std::string& stream, std::uint64_t seq, clock::time_point deadline,
                  js::client::reply_fn fn) {
    request("$JS.API.DIRECT.GET." + stream, fmt::format(R"({{"seq":{}}})", seq), {}, deadline,
            std::move(fn));
  }

  void publish(const std::string& subject, std::string body, js::headers hdrs,
               clock::time_point deadline, std::function<void(pub_ack)> fn) {
    request(subject, std::move(body), std::move(hdrs), deadline,
            [fn = std::move(fn)](const js::reply& r) { fn(parse_ack(r)); });
  }

  // ---------------------------------------------------------------- streams

  void ensure_streams() {
    auto window_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(opts.window).count();
    for (const auto& [name, n] : spaces) {
      boost::json::object data{
          {"name", n.data_stream},
          {"subjects", boost::json::array{opts.prefix + ".h." + n.token + ".*"}},
          {"retention", "limits"},
          {"storage", "file"},
          {"discard", "old"},
          {"num_replicas", opts.replicas},
          // the newest history_size messages and, while there is room, the epoch marker;
          // no max_age: it would erase an idle channel's position (ttl applies on read)
          {"max_msgs_per_subject", n.history_size + 1},
          {"duplicate_window", window_ns},
          {"allow_direct", true},
          {"republish",
           {{"src", opts.prefix + ".h." + n.token + ".*"},
            {"dest", opts.prefix + ".c.{{wildcard(1)}}"}}}};
      boost::json::object keys{
          {"name", n.key_stream},
          {"subjects", boost::json::array{opts.prefix + ".k." + n.token + ".*"}},
          {"retention", "limits"},
          {"storage", "file"},
          {"discard", "old"},
          {"num_replicas", opts.replicas},
          {"max_msgs_per_subject", 2}, // the claim, then the offset it got
          {"max_age", window_ns},
          {"duplicate_window", window_ns},
          {"allow_direct", true}};
      create_stream(n.data_stream, boost::json::serialize(data));
      create_stream(n.key_stream, boost::json::serialize(keys));
    }
  }

  // Creates a stream, or updates one made with another configuration (a
  // changed history_size); retried until it works.
  void create_stream(const std::string& name, const std::string& config, bool update = false) {
    auto self = shared_from_this();
    auto subject = std::string{update ? "$JS.API.STREAM.UPDATE." : "$JS.API.STREAM.CREATE."} + name;
    request(subject, config, {}, clock::now() + opts.timeout,
            [self, name, config, update](const js::reply& r) {
              auto a = parse_ack(r); // the answer has no seq: "error" or a stream info
              if (!r.timed_out() && r.status() == 0 && a.what == pub_ack::kind::error &&
                  a.error == "JetStream answer without seq") {
                spdlog::info("nats: history stream {} ready", name);
                return;
              }
              if (!update && r.data().find(std::to_string(err_stream_exists)) != std::string::npos)
                return self->create_stream(name, config, true);
              spdlog::warn("nats: history stream {}: {}; retrying", name,
                           r.timed_out() ? "no answer" : a.error);
              if (auto* c = self->cl.load())
                c->after(1000ms, [self, name, config, update] {
                  self->create_stream(name, config, update);
                });
            });
  }

  // ---------------------------------------------------------------- appends

  void kick(const std::string& ch) {
    std::shared_ptr<op> o;
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

  void finish(const std::string& ch, const std::shared_ptr<op>& o, engine_append_result r) {
    {
      std::lock_guard<std::mutex> g{mu};
      auto& c = chans[ch];
      if (!c.queue.empty() && c.queue.front() == o)
        c.queue.pop_front();
      c.busy = false;
      if (!r.ok)
        c.last.reset(); // what the channel holds now is unknown
      if (c.queue.empty() && !c.last)
        chans.erase(ch);
    }
    o->done(std::move(r));
    kick(ch);
  }

  void fail(const std::string& ch, const std::shared_ptr<op>& o, std::string why) {
    engine_append_result r;
    r.error = std::move(why);
    finish(ch, o, std::move(r));
  }

  void step_key(const std::string& ch, const std::shared_ptr<op>& o) {
    if (o->key.empty() || o->key_claimed)
      return step_last(ch, o);
    const auto& n = *space_of(ch);
    auto self = shared_from_this();
    publish(key_subject(n, ch, o->key), {}, {{h_expect, "0"}}, o->deadline,
            [self, ch, o](pub_ack a) {
              if (a.what == pub_ack::kind::ok) {
                o->key_claimed = true;
                return self->step_last(ch, o);
              }
              if (a.what == pub_ack::kind::wrong_last)
                return self->poll_key(ch, o); // a publish with this key came first
              self->fail(ch, o, unavailable);
            });
  }

  // The key was claimed by an earlier publish: answer with its offset
  // once it has one.
  void poll_key(const std::string& ch, const std::shared_ptr<op>& o) {
    const auto& n = *space_of(ch);
    auto self = shared_from_this();
    direct_last(n.key_stream, key_subject(n, ch, o->key), o->deadline,
                [self, ch, o](const js::reply& r) {
                  if (r.status() == 404) { // expired meanwhile: claim it again
                    return self->step_key(ch, o);
                  }
                  auto body = r.data();
                  auto colon = body.find(':');
                  if (!r.timed_out() && r.status() == 0 && colon != std::string_view::npos) {
                    engine_append_result res;
                    res.ok = true;
                    res.repeat = true;
                    res.ep = std::string{body.substr(0, colon)};
                    res.off = static_cast<std::uint64_t>(to_i64(body.substr(colon + 1)));
                    return self->finish(ch, o, std::move(res));
                  }
                  auto* c = self->cl.load();
                  if (r.timed_out() || c == nullptr || clock::now() + retry_pause >= o->deadline)
                    return self->fail(ch, o, unavailable);
                  c->after(retry_pause, [self, ch, o] { self->poll_key(ch, o); });
                });
  }

  void step_last(const std::string& ch, const std::shared_ptr<op>& o) {
    bool known = false;
    {
      std::lock_guard<std::mutex> g{mu};
      known = chans[ch].last.has_value();
    }
    if (known)
      return step_write(ch, o);
    const auto& n = *space_of(ch);
    auto self = shared_from_this();
    direct_last(n.data_stream, data_subject(n, ch), o->deadline, [self, ch, o](const js::reply& r) {
      if (r.status() == 404)
        return self->step_marker(ch, o);
      auto last = self->parse_last(r);
      if (!last)
        return self->fail(ch, o, unavailable);
      {
        std::lock_guard<std::mutex> g{self->mu};
        self->chans[ch].last = std::move(*last);
      }
      self->step_write(ch, o);
    });
  }

  std::optional<last_msg> parse_last(const js::reply& r) {
    if (r.timed_out() || r.status() != 0)
      return std::nullopt;
    last_msg l;
    l.seq = r.header_u64("Nats-Sequence");
    l.off = r.header_u64(h_off);
    l.ep = std::string{r.header(h_ep)};
    l.links = std::string{r.header(h_prev)};
    if (l.seq == 0 || l.ep.empty() || l.ep.size() > protocol::max_epoch_length) {
      bump(m.history_bad_messages, 1); // not written by wsnode
      return std::nullopt;
    }
    return l;
  }

  // The channel holds nothing: start its epoch (one of racing writers wins).
  void step_marker(const std::string& ch, const std::shared_ptr<op>& o) {
    const auto& n = *space_of(ch);
    auto ep = protocol::make_epoch();
    auto self = shared_from_this();
    publish(data_subject(n, ch), {},
            {{h_expect, "0"}, {h_ep, ep}, {h_off, "0"}, {h_time, std::to_string(unix_ms())}},
            o->deadline, [self, ch, o, ep](pub_ack a) {
              if (a.what == pub_ack::kind::ok) {
                bump(self->m.history_new_epochs, 1);
                {
                  std::lock_guard<std::mutex> g{self->mu};
                  self->chans[ch].last = last_msg{a.seq, 0, ep, {}};
                }
                return self->step_write(ch, o);
              }
              if (a.what == pub_ack::kind::wrong_last) // another writer made it
                return self->step_last(ch, o);
              self->fail(ch, o, unavailable);
            });
  }

  void step_write(const std::string& ch, const std::shared_ptr<op>& o) {
    last_msg l;
    {
      std::lock_guard<std::mutex> g{mu};
      l = *chans[ch].last;
    }
    const auto& n = *space_of(ch);
    auto off = l.off + 1;
    auto links = next_links(l.seq, l.links);
    js::headers hdrs{{"Nats-Msg-Id", fmt::format("{}|{}|{}", ch, l.ep, off)},
                     {h_expect, std::to_string(l.seq)},
                     {h_ep, l.ep},
                     {h_off, std::to_string(off)},
                     {h_time, std::to_string(unix_ms())},
                     {h_prev, links},
                     {h_pid, o->pid}};
    if (!o->from.empty())
      hdrs.emplace_back(h_from, o->from);
    auto self = shared_from_this();
    auto stream = n.data_stream;
    publish(data_subject(n, ch), o->data, std::move(hdrs), o->deadline,
            [self, ch, o, off, ep = l.ep, links, stream](pub_ack a) {
              auto committed = [self, ch, o, off, ep, links](std::uint64_t seq) {
                {
                  std::lock_guard<std::mutex> g{self->mu};
                  self->chans[ch].last = last_msg{seq, off, ep, links};
                }
                self->committed(ch, o, ep, off);
              };
              switch (a.what) {
              case pub_ack::kind::ok:
                return committed(a.seq);
              case pub_ack::kind::duplicate: // our own retry, or another writer's offset?
                return self->direct_seq(stream, a.seq, o->deadline,
                                        [self, ch, o, committed, seq = a.seq](const js::reply& r) {
                                          if (r.status() == 0 && !r.timed_out() &&
                                              r.header(h_pid) == o->pid)
                                            return committed(seq);
                                          self->conflict(ch, o);
                                        });
              case pub_ack::kind::wrong_last:
                return self->conflict(ch, o);
              case pub_ack::kind::error:
                spdlog::warn("nats: history append to {}: {}", ch, a.error);
                return self->fail(ch, o, unavailable);
              case pub_ack::kind::timeout:
                return self->fail(ch, o, unavailable);
              }
            });
  }

  // Another writer took the offset: read the channel's last and try the next.
  void conflict(const std::string& ch, const std::shared_ptr<op>& o) {
    {
      std::lock_guard<std::mutex> g{mu};
      chans[ch].last.reset();
    }
    if (++o->conflicts > max_conflicts || clock::now() >= o->deadline)
      return fail(ch, o, unavailable);
    step_last(ch, o);
  }

  void committed(const std::string& ch, const std::shared_ptr<op>& o, const std::string& ep,
                 std::uint64_t off) {
    if (!o->key.empty()) { // repeats of the key answer with this offset
      const auto& n = *space_of(ch);
      publish(key_subject(n, ch, o->key), fmt::format("{}:{}", ep, off), {}, o->deadline,
              [](pub_ack) {});
    }
    engine_append_result r;
    r.ok = true;
    r.ep = ep;
    r.off = off;
    finish(ch, o, std::move(r));
  }

  // ---------------------------------------------------------------- reads

  struct walk {
    std::mutex mu;
    std::string ch;
    std::uint64_t after = 0;
    std::size_t max_count = 0;
    read_done done;
    clock::time_point deadline;
    engine_read_result result;
    std::map<std::uint64_t, engine_message> got; // by offset
    std::size_t outstanding = 0;
    bool ended = false; // the chain of links ends (older messages are gone)
    bool failed = false;
    std::string next_links; // the links of the oldest message asked for
    std::uint64_t oldest_asked = 0;
    bool finished = false;
  };

  std::size_t wanted(const walk& w) const {
    return std::min<std::uint64_t>(w.max_count, w.result.top - std::min(w.after, w.result.top));
  }

  void read_top(const std::shared_ptr<walk>& w) {
    const auto& n = *space_of(w->ch);
    auto self = shared_from_this();
    direct_last(n.data_stream, data_subject(n, w->ch), w->deadline, [self, w](const js::reply& r) {
      if (r.status() == 404)
        return self->read_marker(w);
      auto last = self->parse_last(r);
      if (!last)
        return self->read_finish(w, false);
      w->result.ep = last->ep;
      w->result.top = last->off;
      if (self->wanted(*w) == 0)
        return self->read_finish(w, true);
      w->got.emplace(last->off, self->message_of(r));
      w->next_links = last->links;
      self->read_more(w);
    });
  }

  // An empty channel gets its epoch, as the first append would give it.
  void read_marker(const std::shared_ptr<walk>& w) {
    const auto& n = *space_of(w->ch);
    auto ep = protocol::make_epoch();
    auto self = shared_from_this();
    publish(data_subject(n, w->ch), {},
            {{h_expect, "0"}, {h_ep, ep}, {h_off, "0"}, {h_time, std::to_string(unix_ms())}},
            w->deadline, [self, w, ep](pub_ack a) {
              if (a.what == pub_ack::kind::ok) {
                bump(self->m.history_new_epochs, 1);
                w->result.ep = ep;
                w->result.top = 0;
                return self->read_finish(w, true);
              }
              if (a.what == pub_ack::kind::wrong_last && clock::now() < w->deadline)
                return self->read_top(w); // another writer made it
              self->read_finish(w, false);
            });
  }

  engine_message message_of(const js::reply& r) const {
    engine_message msg;
    msg.off = r.header_u64(h_off);
    msg.from = std::string{r.header(h_from)};
    msg.data = std::string{r.data()};
    msg.time_ms = to_i64(r.header(h_time));
    return msg;
  }

  // Asks for the next batch of older messages, all at once, by the links
  // of the oldest one read so far.
  void read_more(const std::shared_ptr<walk>& w) {
    std::vector<std::uint64_t> seqs;
    {
      std::lock_guard<std::mutex> g{w->mu};
      auto need = wanted(*w) - std::min(wanted(*w), w->got.size());
      // an empty list: the chain ends, nothing older is held
      if (need > 0 && !w->ended)
        seqs = split_seqs(w->next_links, std::min(need, prev_links));
      w->outstanding = seqs.size();
      w->oldest_asked = seqs.empty() ? 0 : seqs.back();
      w->next_links.clear();
    }
    if (seqs.empty())
      return read_finish(w, true);
    const auto& n = *space_of(w->ch);
    auto self = shared_from_this();
    for (auto seq : seqs)
      direct_seq(n.data_stream, seq, w->deadline, [self, w, seq](const js::reply& r) {
        bool last_one = false;
        {
          std::lock_guard<std::mutex> g{w->mu};
          if (r.timed_out() || (r.status() != 0 && r.status() != 404)) {
            w->failed = true;
          } else if (r.status() == 404) {
            w->ended = true; // pruned (history_size): older ones are gone too
          } else {
            auto msg = self->message_of(r);
            if (msg.off == 0 || std::string_view{r.header(h_ep)} != w->result.ep)
              w->ended = true; // the epoch's marker, or an earlier epoch
            else if (msg.off > w->after)
              w->got.emplace(msg.off, std::move(msg));
            else
              w->ended = true;
            if (seq == w->oldest_asked)
              w->next_links = std::string{r.header(h_prev)};
          }
          last_one = --w->outstanding == 0;
        }
        if (!last_one)
          return;
        if (w->failed)
          return self->read_finish(w, false);
        self->read_more(w);
      });
  }

  void read_finish(const std::shared_ptr<walk>& w, bool ok) {
    {
      std::lock_guard<std::mutex> g{w->mu};
      if (w->finished)
        return;
      w->finished = true;
      w->result.ok = ok;
      if (!ok) {
        w->result.error = unavailable;
      } else {
        auto keep = wanted(*w);
        for (auto it = w->got.rbegin(); it != w->got.rend() && w->result.messages.size() < keep;
             ++it)
          w->result.messages.push_back(std::move(it->second));
        std::reverse(w->result.messages.begin(), w->result.messages.end());
      }
    }
    w->done(std::move(w->result));
  }
};

std::optional<std::string> live_frame(const js::reply& r, std::string_view ch) {
  auto ep = r.header(h_ep);
  auto off = r.header_u64(h_off);
  auto from = r.header(h_from);
  // written by wsnode, or not passed on: clients get valid frames only
  if (off == 0 || ep.empty() || ep.size() > protocol::max_epoch_length ||
      !(from.empty() || protocol::valid_user(from)) || !protocol::json::validate(r.data()))
    return std::nullopt;
  return encode_ordered(ep, protocol::encode_msg(ch, r.header(h_from), off, r.data()));
}

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
  auto& i = *impl_;
  if (i.space_of(ch) == nullptr) {
    engine_read_result r;
    r.error = "channel without history";
    return done(std::move(r));
  }
  auto w = std::make_shared<impl::walk>();
  w->ch = ch;
  w->after = after;
  w->max_count = max_count;
  w->done = std::move(done);
  w->deadline = clock::now() + i.opts.timeout;
  i.read_top(w);
}

} // namespace wsnode::transport
