// Requests to NATS without blocking, for JetStream: each request is
// published with its own reply subject under one wildcard inbox
// subscription, and its answer (or its timeout) calls back. nats.c's own
// JetStream calls (js_DirectGetMsg, js_Publish) wait for their answer;
// the broker must never wait (../shared/probes/nats/asyncget.c: 1,000
// pipelined requests answered in 16 ms).
//
// Threads: answers arrive on nats.c's delivery thread; timeouts and
// delayed tasks run on this client's timer thread. Callbacks must not
// block and may call request() again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct __natsConnection;
struct __natsMsg;

namespace wsnode::transport::js {

using headers = std::vector<std::pair<std::string, std::string>>;

/// An answer: a NATS message, or none (timed out, or not sent).
class reply {
public:
  explicit reply(__natsMsg* m = nullptr) : msg_(m) {}
  bool timed_out() const noexcept { return msg_ == nullptr; }
  /// The status of a status message (404, 408, 503), or 0 for a normal one.
  int status() const;
  std::string_view data() const;
  /// A header's value ("" when absent).
  std::string_view header(const char* key) const;
  std::uint64_t header_u64(const char* key) const;

private:
  __natsMsg* msg_;
};

class client {
public:
  using reply_fn = std::function<void(const reply&)>;

  explicit client(__natsConnection* nc);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Subscribes the inbox and starts the timer thread.
  void start();
  /// Stops the timer; requests still waiting are answered as timed out.
  void stop();
  /// Publishes `body` to `subject` with `hdrs`; `fn` gets the answer, or a
  /// timed-out reply after `timeout` (or at once when it cannot be sent).
  void request(const std::string& subject, std::string_view body, const headers& hdrs,
               std::chrono::milliseconds timeout, reply_fn fn);
  /// Runs `fn` on the timer thread after `delay` (retries).
  void after(std::chrono::milliseconds delay, std::function<void()> fn);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace wsnode::transport::js
