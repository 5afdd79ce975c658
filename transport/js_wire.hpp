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
/// A record of several messages (a batch of one channel from one node):
/// Wsn-Off is the first's offset, the body `[["FROM",DATA],...]`.
inline constexpr const char* h_count = "Wsn-Count";
/// Most messages one record holds.
inline constexpr std::size_t max_batch = 64;
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

/// One message of a record: who published it ("" for the API) and its data.
struct record_item {
  std::string_view from;
  std::string_view data;
};
/// The body of a record of several messages (FROM is a valid user id or
/// "", DATA valid JSON: both were checked when published).
std::string pack_record(const std::vector<record_item>& items);
/// The messages of a record's body; nullopt unless it holds exactly
/// `count` (2 to max_batch) valid messages.
std::optional<std::vector<record_item>> unpack_record(std::string_view body, std::size_t count);

/// The messages a stored record holds, oldest first (one, or a batch),
/// each with the record's time; empty for an epoch's marker, nullopt for
/// a record wsnode did not write.
struct stored_message {
  std::uint64_t off = 0;
  std::string_view from;
  std::string_view data;
};
std::optional<std::vector<stored_message>> messages_of(const reply& r);
/// The newest offset a stored record holds (0 for a marker).
std::uint64_t record_top(const reply& r);

/// What the backbone hands the broker for a record JetStream republished
/// to channel `ch`'s live subject: encode_ordered of each message's msg
/// frame; nullopt for a record wsnode did not write (empty for a marker).
std::optional<std::vector<std::string>> live_frames(const reply& r, std::string_view ch);

} // namespace wsnode::transport::js
