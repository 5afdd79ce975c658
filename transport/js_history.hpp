// Channel history in JetStream (docs/operations.md "Running on NATS"): the
// history_engine of core/history_engine.hpp on NATS.
//
// Per history namespace NS, two streams (replicated `replicas` times):
// - PREFIX_H_NS, subjects PREFIX.h.NS.<channel token>: a channel's
//   messages, at most history_size + 1 per channel (its newest, plus the
//   epoch marker while there is room). Every stored message is republished
//   by the stream's leader to the channel's live subject PREFIX.c.<token>
//   (the backbone's), so a subscriber sees a message only once JetStream
//   holds it, and it still comes when the node that published it died
//   right after.
// - PREFIX_K_NS, subjects PREFIX.k.NS.<token of channel|key>: idempotency
//   keys, kept for the idempotency window.
//
// A channel's position: its epoch is made by a marker (offset 0) written
// with "no message yet" expected, which JetStream checks when it applies
// the write, so exactly one of racing writers makes it. Each message
// carries its epoch, offset, publisher, time, the stream sequences of up
// to 16 messages before it (reads walk back in parallel) and a unique
// publish id. Offsets are contiguous and never given twice: a write
// expects the channel's last stream sequence and has the Msg-Id
// "<channel>|<epoch>|<offset>". nats-server 2.9.10 checks the expected
// sequence before it proposes the write in a cluster (racing writers can
// both pass; fixed in 2.9.21), but the Msg-Id is checked when the write is
// applied: the second writer of an offset gets "duplicate" and tries the
// next one (../shared/probes/nats/cas.c). A write retried after a timeout
// keeps its Msg-Id, so it is stored once; its publish id tells a retry of
// our own write from another writer's.
//
// One write at a time per channel from this node (the others wait in the
// channel's queue); channels are independent.
#pragma once

#include "core/history_engine.hpp"
#include "core/metrics.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace wsnode::transport {

namespace js {
class client;
} // namespace js

struct js_history_options {
  std::string prefix = "wsnode";
  std::string node_id;
  std::size_t replicas = 3;
  std::chrono::milliseconds timeout{10000};      ///< an append or read gives up after this
  std::chrono::milliseconds window{300000};      ///< idempotency window
  std::map<std::string, std::size_t> namespaces; ///< history namespaces: name -> history_size
};

class js_history final : public history_engine {
public:
  js_history(js_history_options opts, metrics& m);
  ~js_history() override;

  /// Starts using `c` (the backbone's connection) and creates or updates
  /// the streams; called again after every reconnect.
  void connected(js::client& c);
  /// Messages may have missed the live feed (leader change, reconnect).
  void suspect();
  /// The subjects that announce a stream leader change, to watch.
  std::vector<std::string> advisory_subjects() const;

  void append(const std::string& ch, std::string from, std::string data, std::string key,
              append_done done) override;
  void read(const std::string& ch, std::uint64_t after, std::size_t max_count,
            read_done done) override;
  void on_suspect(std::function<void()> f) override;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace wsnode::transport
