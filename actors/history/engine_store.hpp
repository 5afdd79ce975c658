// Channel history kept by an external engine (core/history_engine.hpp:
// JetStream on NATS) as the broker's history_store: the engine gives
// offsets and keeps messages; this store applies the namespace's rules
// (recovery_max, history_ttl_ms on read, history's limit and since),
// encodes frames, and brings every answer back to the broker's thread.
//
// The engine's own live feed reaches every node (JetStream republishes
// each stored message), so a commit here is delivered to local
// subscribers only (propagates() is false). Where that feed may have
// lost messages (a stream leader changed, the connection was made again)
// and one second after a channel's subscription, the store reads the
// channel's newest offset and tells the broker, whose stream fills what
// it missed: the last message before a quiet spell is never left out.
#pragma once

#include "actors/history/service.hpp"
#include "core/history_engine.hpp"

#include <functional>
#include <map>
#include <memory>

namespace wsnode::actors {

/// What the store needs from its broker, beside history_hooks.committed.
struct engine_hooks {
  /// Runs `f` on the broker's thread.
  std::function<void(std::function<void()> f)> post;
  /// The engine's newest offset of `ch` is `top` in epoch `ep`.
  std::function<void(const std::string& ch, const std::string& ep, std::uint64_t top)> top;
  /// The history channels with local subscribers.
  std::function<std::vector<std::string>()> watched;
};

class engine_store final : public history_store {
public:
  engine_store(std::shared_ptr<history_engine> engine, std::shared_ptr<const namespace_table> ns,
               metrics& m, history_hooks hooks, engine_hooks ehooks);
  ~engine_store() override;

  void publish(const std::string& ch, std::string from, std::string data, std::string key,
               publish_done done) override;
  void read(const std::string& ch, read_request req, read_done done) override;
  bool propagates() const noexcept override { return false; }

  // cluster_service: the engine keeps its own cluster
  void on_message(const std::string&, std::string_view) override {}
  void on_view(std::vector<std::string>) override {}
  void on_restart(const std::string&) override {}
  void tick(clock::time_point now) override;

private:
  void check_top(const std::string& ch);

  std::shared_ptr<history_engine> engine_;
  std::shared_ptr<const namespace_table> ns_;
  metrics& m_;
  history_hooks hooks_;
  engine_hooks ehooks_;
  std::map<std::string, clock::time_point> checks_; // channel -> when to read its top
  std::shared_ptr<bool> alive_; // engine answers posted after this store is gone are dropped
};

} // namespace wsnode::actors
