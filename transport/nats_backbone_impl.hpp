// The inside of nats_backbone (see nats_backbone.hpp). Its methods live in
// three files, one concept each: nats_backbone.cpp (the connection's life:
// start, stop, nats.c's connection callbacks, and the timer thread that
// keeps the node view), nats_backbone_publish.cpp (the broker's calls:
// topic subscriptions, publishing, flow control's release) and
// nats_backbone_receive.cpp (nats.c's delivery thread: every message
// callback, and the wait for the broker). Private to those files.
//
// There is no LTO: a call from one file to another is never inlined. So
// the per-message paths keep their callees in one file: publish() beside
// publish_raw(); each message callback (`on`, defined and instantiated for
// every handler in nats_backbone_receive.cpp) beside its handler and
// take_room(). Those called only in their own file are declared `inline`
// and defined there alone. What crosses files is rare: a barrier's answer
// and the timer's heartbeats (publish_raw), poke(), subscribe_fixed().
#pragma once

#include "transport/nats_backbone.hpp"

#include "transport/js_client.hpp"
#include "transport/nats_view.hpp"

#include <nats/nats.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace wsnode::transport {

struct nats_backbone::impl {
  impl(nats_options o, metrics& mm);

  nats_options opts;
  metrics& m;
  std::uint64_t incarnation = 0;
  std::string hb_subject;
  std::string my_subject;
  // Barriers are sent as requests with a reply subject under this prefix
  // (+ the peer's token): the servers answer "no responders" there at once
  // when the peer's connection is gone, so a killed node leaves the view
  // when a sub asks for it, not 3 heartbeats later.
  std::string gone_prefix;
  std::shared_ptr<backbone_events> events;
  std::mutex events_mu; // events are reported one call at a time

  natsConnection* nc = nullptr;
  std::vector<natsSubscription*> fixed_subs; // heartbeats, our subject, "gone", advisories
  // channel history in JetStream (when a namespace keeps history)
  std::shared_ptr<js_history> history;
  std::unique_ptr<js::client> jsc;
  std::atomic<bool> connected{false};
  std::atomic<bool> stopping{false};
  std::atomic<int> in_callback{0}; // nats.c threads inside one of ours

  nats::node_view view;
  std::mutex mu; // subs, work, peers_text
  std::condition_variable wake;
  bool work = false;
  bool closed = false; // nats.c made its last connection callback
  std::unordered_map<std::string, natsSubscription*> subs; // topic subscriptions by subject
  std::string peers_text = "[]";
  std::thread timer;

  // flow control: the delivery thread waits while the broker is behind
  std::atomic<std::int64_t> inflight{0};
  std::mutex flow_mu;
  std::condition_variable flow;

  // ---------------------------------------------------------------- nats.c callbacks

  struct callback_scope {
    explicit callback_scope(impl& i) : self(i) { self.in_callback.fetch_add(1); }
    ~callback_scope() { self.in_callback.fetch_sub(1); }
    impl& self;
  };

  // Runs (self.*f)(msg) for a message callback, then frees the message.
  // nats_backbone_receive.cpp
  template <void (impl::*F)(natsMsg*)>
  static void on(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);

  // The connection's callbacks. nats_backbone.cpp
  static void on_disconnected(natsConnection*, void* closure);
  static void on_connected(natsConnection*, void* closure);
  static void on_closed(natsConnection*, void* closure);
  static void on_error(natsConnection*, natsSubscription* sub, natsStatus err, void* closure);

  // ---------------------------------------------------------------- delivery thread
  // nats_backbone_receive.cpp

  inline bool take_room();
  void topic_message(natsMsg* msg);
  inline void deliver(topic_kind kind, std::string name, std::string data);
  void node_message(natsMsg* msg);
  void heartbeat_message(natsMsg* msg);
  void gone_message(natsMsg* msg);
  void advisory_message(natsMsg*);

  // nats_backbone.cpp
  inline void link_changed(bool up);

  // ---------------------------------------------------------------- any thread

  void poke();                                                         // nats_backbone.cpp
  bool publish_raw(const std::string& subject, std::string_view data); // nats_backbone_publish.cpp

  // ---------------------------------------------------------------- timer thread
  // nats_backbone.cpp

  inline void run();
  void subscribe_fixed(const std::string& subject, natsMsgHandler cb);
};

} // namespace wsnode::transport
