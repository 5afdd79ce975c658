// The HTTP API's calls as the node's broker shards take them: which shard,
// which message, and the refusals that need no shard. The outcome is typed
// (core/ports.hpp `api_outcome`); transport alone renders status and body.
#pragma once

#include "actors/broker.hpp"
#include "actors/namespaces.hpp"
#include "core/metrics.hpp"
#include "core/ports.hpp"

#include <memory>
#include <string>

namespace wsnode::actors {

class api_calls {
public:
  api_calls(std::shared_ptr<const broker_set> brokers, std::shared_ptr<const namespace_table> ns,
            metrics& m);

  /// POST /api/publish: `data` (raw JSON) to channel `ch`, `key` "" = none.
  void publish(std::string ch, std::string data, std::string key, api_done done) const;
  /// POST /api/broadcast: one publish per channel; the answer lists each
  /// channel's outcome in the order given.
  void broadcast(protocol::broadcast_body b, api_done done) const;
  /// POST /api/send: `data` (raw JSON) to every session of `user`.
  void send(std::string user, std::string data, api_done done) const;
  /// POST /api/history; `limit` < 0: the default.
  void history(std::string ch, bool has_since, std::string ep, std::uint64_t off, long long limit,
               api_done done) const;
  /// POST /api/presence; `limit` < 0: the default.
  void presence(std::string ch, long long limit, std::string cursor, api_done done) const;

private:
  std::shared_ptr<const broker_set> brokers_;
  std::shared_ptr<const namespace_table> namespaces_;
  metrics& m_;
};

} // namespace wsnode::actors
