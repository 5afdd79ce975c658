// The plumbing js_history's appends (js_history.cpp) and reads (js_read.cpp)
// share: stream and subject names, requests retried until a deadline, the
// streams' creation, a channel's last message. Private to transport/.
#pragma once

#include "core/history_engine.hpp"
#include "core/metrics.hpp"
#include "transport/js_client.hpp"
#include "transport/js_history.hpp"
#include "transport/js_wire.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace wsnode::transport::js {

using clock = std::chrono::steady_clock;

/// Why a history call failed when JetStream did not answer.
inline constexpr const char* unavailable = "no answer from JetStream within nats.timeout_ms";

/// The names of one history namespace's streams.
struct stream_names {
  std::string token; ///< the namespace as a subject token
  std::string data_stream;
  std::string key_stream;
  std::size_t history_size = 0;
};

/// A channel's newest stored message, as far as a write needs it.
struct last_msg {
  std::uint64_t seq = 0; ///< its stream sequence
  std::uint64_t off = 0; ///< 0: the epoch's marker
  std::string ep;
  std::string links;
};

struct store : std::enable_shared_from_this<store> {
  store(js_history_options o, metrics& mm);
  virtual ~store() = default;

  js_history_options opts;
  metrics& m;
  std::map<std::string, stream_names, std::less<>> spaces;
  std::atomic<client*> cl{nullptr};

  /// The streams of `ch`'s namespace; null when it keeps no history.
  const stream_names* space_of(std::string_view ch) const;
  std::string data_subject(const stream_names& n, std::string_view ch) const;
  std::string key_subject(const stream_names& n, std::string_view ch, std::string_view key) const;

  /// A request retried after timeouts and "no responders" (a stream
  /// without a leader yet) until `deadline`; `fn` sees the last answer.
  void request(std::string subject, std::string body, headers hdrs, clock::time_point deadline,
               client::reply_fn fn);
  void direct_last(const std::string& stream, const std::string& subject,
                   clock::time_point deadline, client::reply_fn fn);
  void direct_seq(const std::string& stream, std::uint64_t seq, clock::time_point deadline,
                  client::reply_fn fn);
  void publish(const std::string& subject, std::string body, headers hdrs,
               clock::time_point deadline, std::function<void(pub_ack)> fn);
  /// Starts the epoch of an empty channel: a marker written only if the
  /// channel still holds nothing (checked when applied: one writer wins).
  void write_marker(const std::string& ch, clock::time_point deadline,
                    std::function<void(pub_ack, std::string ep)> fn);
  /// After `delay` on the client's timer (nothing when stopped).
  void after(std::chrono::milliseconds delay, std::function<void()> fn);

  /// Creates (or updates) every namespace's streams; retried until done.
  void ensure_streams();

  /// The message a DirectGet answered with, when wsnode wrote it.
  std::optional<last_msg> parse_last(const reply& r);
  /// The messages of a stored record (none for a marker); nullopt (and
  /// counted) for a record wsnode did not write.
  std::optional<std::vector<engine_message>> messages(const reply& r);

private:
  void create_stream(const std::string& name, const std::string& config, bool update);
};

/// Reads `ch` (history_engine::read) through `s`.
void read_channel(const std::shared_ptr<store>& s, const std::string& ch, std::uint64_t after,
                  std::size_t max_count, history_engine::read_done done);

} // namespace wsnode::transport::js
