// The bodies of the cluster-wide server API (protocol v1.2: /api/disconnect,
// /api/subscribe, /api/unsubscribe, /api/broadcast, /api/online,
// /api/channels): strict JSON, every member checked, unknown members
// refused, and a refusal that names the member. Pure: the fuzzers drive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wsnode::protocol {

/// The most channels one /api/broadcast names, and users one /api/online.
inline constexpr std::size_t max_api_names = 1000;
/// The most channels one /api/channels page holds.
inline constexpr std::size_t max_channels_page = 1000;
/// The longest ban: 30 days.
inline constexpr std::uint64_t max_ban_ms = 30ULL * 24 * 3600 * 1000;

/// POST /api/disconnect
struct disconnect_body {
  std::string user;
  std::uint16_t code = 4003; ///< 3000-4999
  std::string reason;        ///< at most 120 bytes
  std::uint64_t ban_ms = 0;  ///< 0: no ban
};

/// POST /api/subscribe and /api/unsubscribe
struct user_channel_body {
  std::string user;
  std::string ch;
};

/// POST /api/broadcast; `data` is the raw JSON exactly as given.
struct broadcast_body {
  std::vector<std::string> channels; ///< 1-1000, no repeats
  std::string data;
  std::string key; ///< "" = none
};

/// POST /api/online
struct online_body {
  std::vector<std::string> users; ///< 1-1000
};

/// POST /api/channels
struct channels_body {
  std::string prefix;
  std::size_t limit = 100; ///< 1-1000
  std::string cursor;      ///< the last channel of the previous page; "" = from the start
};

/// A body, or why it is refused (the message names the member).
template <class T>
using api_body = std::variant<T, std::string>;

api_body<disconnect_body> parse_disconnect_body(std::string_view body);
api_body<user_channel_body> parse_user_channel_body(std::string_view body);
/// `max_data_bytes`: the largest `data` ([limits] max_data_bytes).
api_body<broadcast_body> parse_broadcast_body(std::string_view body, std::size_t max_data_bytes);
api_body<online_body> parse_online_body(std::string_view body);
api_body<channels_body> parse_channels_body(std::string_view body);

/// The same bodies written back (what a node forwards to the others).
std::string encode_body(const disconnect_body& b);
std::string encode_body(const user_channel_body& b);
std::string encode_body(const online_body& b);
std::string encode_body(const channels_body& b);

} // namespace wsnode::protocol
