// What wsnode writes into JetStream and reads back: the headers of a
// stored message, JetStream's answers to a publish, the links by which a
// read walks back through a channel (transport/js_history.hpp). Pure
// functions, unit tested without a server.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::transport::js {

class reply;

// Headers of a stored message (the Nats-* ones are JetStream's).
inline constexpr const char* h_ep = "Wsn-Ep";
inline constexpr const char* h_off = "Wsn-Off";
inline constexpr const char* h_from = "Wsn-From";
inline constexpr const char* h_time = "Wsn-Time"; // Unix ms, publisher's clock (ttl on read)
inline constexpr const char* h_prev = "Wsn-Prev"; // stream seqs of earlier messages, newest first
inline constexpr const char* h_pid = "Wsn-Pid";   // this write's unique id
inline constexpr const char* h_expect = "Nats-Expected-Last-Subject-Sequence";
inline constexpr const char* h_msg_id = "Nats-Msg-Id";
/// How many earlier messages a message links to (a read asks for that
/// many at once).
inline constexpr std::size_t prev_links = 16;

/// What JetStream answered to a publish.
struct pub_ack {
  enum class kind : std::uint8_t {
    ok,
    duplicate,  ///< the Msg-Id was seen: `seq` is the first message's
    wrong_last, ///< the expected last sequence did not match
    error,
    timeout, ///< no answer (or no stream leader yet)
  } what = kind::timeout;
  std::uint64_t seq = 0;
  std::string error;
};

/// Reads a publish's answer: `timed_out` or a status 503/408 is a timeout,
/// else `body` is JetStream's JSON.
pub_ack parse_ack(bool timed_out, int status, std::string_view body);

/// True for an answer to a stream's creation that says it exists now.
bool stream_created(std::string_view body);
/// True for an answer that says a stream of that name has another configuration.
bool stream_differs(std::string_view body);

/// The Msg-Id that fences offset `off` of epoch `ep` of `ch`: JetStream
/// stores one message per Msg-Id within its duplicate window, checked when
/// it applies the write.
std::string offset_fence(std::string_view ch, std::string_view ep, std::uint64_t off);

/// The first `max` stream sequences of a Wsn-Prev list ("s1,s2,...").
std::vector<std::uint64_t> split_links(std::string_view list, std::size_t max);
/// The links of the message after one stored at `last_seq` with `last_links`.
std::string next_links(std::uint64_t last_seq, std::string_view last_links);

/// Now, in Unix ms.
std::int64_t unix_ms();

/// What the backbone hands the broker for a message JetStream republished
/// to channel `ch`'s live subject (encode_ordered of its msg frame);
/// nullopt for an epoch marker or a message wsnode did not write.
std::optional<std::string> live_frame(const reply& r, std::string_view ch);

} // namespace wsnode::transport::js
