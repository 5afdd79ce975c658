#include "actors/api_calls.hpp"

#include "actors/messages.hpp"
#include "protocol/codec.hpp"
#include "protocol/json_scan.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <mutex>

namespace wsnode::actors {

api_calls::api_calls(std::shared_ptr<const broker_set> brokers,
                     std::shared_ptr<const namespace_table> ns, metrics& m)
  : brokers_(std::move(brokers)), namespaces_(std::move(ns)), m_(m) {}

void api_calls::publish(std::string ch, std::string data, std::string key, api_done done) const {
  const auto& shard = brokers_->owner(ch);
  if (namespaces_->of_channel(ch).has_history()) {
    caf::anon_send(shard, atoms::history_publish::value, std::move(ch), std::move(data),
                   std::move(key), api_completion{std::move(done)});
    return;
  }
  auto frame = make_frame(protocol::encode_msg(ch, {}, data));
  caf::anon_send(shard, atoms::pub::value, std::move(ch), std::move(frame),
                 api_completion{std::move(done)});
}

namespace {

// One channel's result in a broadcast's answer.
void append_result(std::string& out, const std::string& ch, const api_outcome& o) {
  out += "{\"ch\":";
  protocol::json::append_string(out, ch);
  if (o.status == api_status::ok) {
    if (o.off)
      out += ",\"off\":" + std::to_string(*o.off);
  } else {
    out += ",\"error\":";
    out += o.status == api_status::bad_request ? "\"bad_request\""
           : o.status == api_status::forbidden ? "\"forbidden\""
                                               : "\"unavailable\"";
    out += ",\"msg\":";
    protocol::json::append_string(out, o.msg);
  }
  out += '}';
}

} // namespace

void api_calls::broadcast(protocol::broadcast_body b, api_done done) const {
  struct gather {
    std::mutex mu; // the channels' shards answer on their own threads
    std::vector<std::string> channels;
    std::vector<api_outcome> results;
    std::size_t left = 0;
    api_done done;
  };
  auto g = std::make_shared<gather>();
  g->channels = b.channels;
  g->results.resize(b.channels.size());
  g->left = b.channels.size();
  g->done = std::move(done);
  for (std::size_t i = 0; i < b.channels.size(); ++i) {
    publish(b.channels[i], b.data, b.key, [g, i](api_outcome o) {
      std::unique_lock lock{g->mu};
      g->results[i] = std::move(o);
      if (--g->left > 0)
        return;
      lock.unlock();
      std::string out = "{\"ok\":true,\"results\":[";
      for (std::size_t k = 0; k < g->channels.size(); ++k) {
        if (k > 0)
          out += ',';
        append_result(out, g->channels[k], g->results[k]);
      }
      api_outcome all;
      all.object = out + "]}";
      g->done(std::move(all));
    });
  }
}

void api_calls::send(std::string user, std::string data, api_done done) const {
  const auto& shard = brokers_->owner(user);
  auto frame = make_frame(protocol::encode_dm({}, data));
  caf::anon_send(shard, atoms::dm::value, std::move(user), std::move(frame),
                 api_completion{std::move(done)});
}

void api_calls::history(std::string ch, bool has_since, std::string ep, std::uint64_t off,
                        long long limit, api_done done) const {
  if (!namespaces_->of_channel(ch).has_history())
    return done(api_failed(api_status::bad_request, "this channel's namespace keeps no history"));
  const auto& shard = brokers_->owner(ch);
  caf::anon_send(shard, atoms::history_read::value, std::move(ch), has_since, std::move(ep), off,
                 limit >= 0, static_cast<std::uint64_t>(std::max(limit, 0LL)),
                 api_completion{std::move(done)});
}

void api_calls::presence(std::string ch, long long limit, std::string cursor, api_done done) const {
  if (!namespaces_->of_channel(ch).presence) {
    m_.refuse(refusal_reason::presence_off);
    return done(api_failed(api_status::forbidden, "presence is off for this channel's namespace"));
  }
  constexpr long long default_limit = 1000;
  caf::anon_send(brokers_->owner(ch), atoms::presence::value, std::move(ch),
                 static_cast<std::uint64_t>(limit < 0 ? default_limit : limit), std::move(cursor),
                 api_completion{std::move(done)});
}

} // namespace wsnode::actors
