#include "actors/api_calls.hpp"

#include "actors/messages.hpp"
#include "protocol/codec.hpp"

#include <caf/all.hpp>

#include <algorithm>

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
