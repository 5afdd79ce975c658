#include "transport/js_store.hpp"

#include "protocol/codec.hpp"
#include "protocol/names.hpp"
#include "transport/nats_subjects.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>

namespace wsnode::transport::js {

namespace {
using namespace std::chrono_literals;
constexpr auto try_timeout = 1000ms; // one attempt; retried until the caller's deadline
constexpr auto retry_pause = 100ms;

std::int64_t to_i64(std::string_view v) {
  std::int64_t out = 0;
  std::from_chars(v.data(), v.data() + v.size(), out);
  return out;
}
} // namespace

store::store(js_history_options o, metrics& mm) : opts(std::move(o)), m(mm) {
  for (const auto& [name, size] : opts.namespaces) {
    stream_names n;
    n.token = nats::encode_token(name);
    n.data_stream = opts.prefix + "_H_" + n.token;
    n.key_stream = opts.prefix + "_K_" + n.token;
    n.history_size = size;
    spaces.emplace(name, std::move(n));
  }
}

const stream_names* store::space_of(std::string_view ch) const {
  auto it = spaces.find(protocol::channel_namespace(ch));
  return it == spaces.end() ? nullptr : &it->second;
}

std::string store::data_subject(const stream_names& n, std::string_view ch) const {
  return opts.prefix + ".h." + n.token + "." + nats::encode_token(ch);
}

std::string store::key_subject(const stream_names& n, std::string_view ch,
                               std::string_view key) const {
  std::string both{ch};
  both.push_back('|');
  both.append(key);
  return opts.prefix + ".k." + n.token + "." + nats::encode_token(both);
}

void store::request(std::string subject, std::string body, headers hdrs, clock::time_point deadline,
                    client::reply_fn fn) {
  auto* c = cl.load();
  if (c == nullptr)
    return fn(reply{});
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
  auto wait = std::clamp<std::chrono::milliseconds>(left, 1ms, try_timeout);
  auto self = shared_from_this();
  c->request(subject, body, hdrs, wait,
             [self, subject, body, hdrs, deadline, fn](const reply& r) mutable {
               bool again = r.timed_out() || r.status() == 503 || r.status() == 408;
               if (!again || clock::now() + retry_pause >= deadline)
                 return fn(r);
               self->after(retry_pause, [self, subject = std::move(subject), body = std::move(body),
                                         hdrs = std::move(hdrs), deadline, fn = std::move(fn)] {
                 self->request(subject, body, hdrs, deadline, fn);
               });
             });
}

void store::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  if (auto* c = cl.load())
    c->after(delay, std::move(fn));
}

void store::direct_last(const std::string& stream, const std::string& subject,
                        clock::time_point deadline, client::reply_fn fn) {
  request("$JS.API.DIRECT.GET." + stream + "." + subject, {}, {}, deadline, std::move(fn));
}

void store::direct_seq(const std::string& stream, std::uint64_t seq, clock::time_point deadline,
                       client::reply_fn fn) {
  request("$JS.API.DIRECT.GET." + stream, fmt::format(R"({{"seq":{}}})", seq), {}, deadline,
          std::move(fn));
}

void store::publish(const std::string& subject, std::string body, headers hdrs,
                    clock::time_point deadline, std::function<void(pub_ack)> fn) {
  request(
      subject, std::move(body), std::move(hdrs), deadline,
      [fn = std::move(fn)](const reply& r) { fn(parse_ack(r.timed_out(), r.status(), r.data())); });
}

void store::write_marker(const std::string& ch, clock::time_point deadline,
                         std::function<void(pub_ack, std::string ep)> fn) {
  const auto& n = *space_of(ch);
  auto ep = protocol::make_epoch();
  auto* counter = &m.history_new_epochs;
  publish(data_subject(n, ch), {},
          {{h_expect, "0"}, {h_ep, ep}, {h_off, "0"}, {h_time, std::to_string(wsnode::unix_ms())}},
          deadline, [fn = std::move(fn), ep, counter](pub_ack a) {
            if (a.what == pub_ack::kind::ok)
              bump(*counter, 1);
            fn(std::move(a), ep);
          });
}

void store::ensure_streams() {
  auto window_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(opts.window).count();
  for (const auto& [name, n] : spaces) {
    auto subjects = [&](const char* kind) {
      return boost::json::array{opts.prefix + kind + n.token + ".*"};
    };
    boost::json::object data{{"name", n.data_stream},
                             {"subjects", subjects(".h.")},
                             {"retention", "limits"},
                             {"storage", "file"},
                             {"discard", "old"},
                             {"num_replicas", opts.replicas},
                             // the newest history_size messages and, while there is room, the
                             // epoch's marker; no max_age: it would erase an idle channel's
                             // position (the ttl applies on read)
                             {"max_msgs_per_subject", n.history_size + 1},
                             {"duplicate_window", window_ns},
                             {"allow_direct", true},
                             {"republish",
                              {{"src", opts.prefix + ".h." + n.token + ".*"},
                               {"dest", opts.prefix + ".c.{{wildcard(1)}}"}}}};
    boost::json::object keys{{"name", n.key_stream},      {"subjects", subjects(".k.")},
                             {"retention", "limits"},     {"storage", "file"},
                             {"discard", "old"},          {"num_replicas", opts.replicas},
                             {"max_msgs_per_subject", 2}, // the claim, then the offset it got
                             {"max_age", window_ns},      {"duplicate_window", window_ns},
                             {"allow_direct", true}};
    create_stream(n.data_stream, boost::json::serialize(data), false);
    create_stream(n.key_stream, boost::json::serialize(keys), false);
  }
}

// Creates a stream, or updates one made with another configuration (a
// changed history_size); retried every second until it works.
void store::create_stream(const std::string& name, const std::string& config, bool update) {
  auto self = shared_from_this();
  auto subject = std::string{update ? "$JS.API.STREAM.UPDATE." : "$JS.API.STREAM.CREATE."} + name;
  request(subject, config, {}, clock::now() + opts.timeout,
          [self, name, config, update](const reply& r) {
            if (!r.timed_out() && stream_created(r.data())) {
              spdlog::info("nats: history stream {} ready", name);
              return;
            }
            if (!update && !r.timed_out() && stream_differs(r.data()))
              return self->create_stream(name, config, true);
            spdlog::warn("nats: history stream {}: {}; retrying", name,
                         r.timed_out() ? std::string_view{"no answer"} : r.data());
            self->after(1000ms, [self, name, config, update] {
              self->create_stream(name, config, update);
            });
          });
}

std::optional<last_msg> store::parse_last(const reply& r) {
  if (r.timed_out() || r.status() != 0)
    return std::nullopt;
  last_msg l;
  l.seq = r.header_u64("Nats-Sequence");
  l.off = record_top(r);
  l.ep = std::string{r.header(h_ep)};
  l.links = std::string{r.header(h_prev)};
  if (l.seq == 0 || l.ep.empty() || l.ep.size() > protocol::max_epoch_length) {
    bump(m.history_bad_messages, 1); // not written by wsnode
    return std::nullopt;
  }
  return l;
}

std::optional<std::vector<engine_message>> store::messages(const reply& r) {
  auto stored = messages_of(r);
  if (!stored) {
    bump(m.history_bad_messages, 1);
    return std::nullopt;
  }
  auto time = to_i64(r.header(h_time));
  std::vector<engine_message> out;
  out.reserve(stored->size());
  for (const auto& s : *stored)
    out.push_back({s.off, std::string{s.from}, std::string{s.data}, time});
  return out;
}

} // namespace wsnode::transport::js
