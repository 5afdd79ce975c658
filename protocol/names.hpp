// Channel and user name rules of client protocol v1, and v1.1's epochs.
#pragma once

#include <string>
#include <string_view>

namespace wsnode::protocol {

/// Longest channel name accepted.
inline constexpr std::size_t max_channel_length = 128;
/// Longest user id accepted.
inline constexpr std::size_t max_user_length = 64;

/// Returns true when `ch` is 1-128 chars of [A-Za-z0-9_.:-].
bool valid_channel(std::string_view ch) noexcept;

/// Returns true when `user` is 1-64 chars of [A-Za-z0-9_.@-].
bool valid_user(std::string_view user) noexcept;

/// Returns the namespace of a channel: the part before the first ':', or an
/// empty view when the name has no ':'.
std::string_view channel_namespace(std::string_view ch) noexcept;

/// A new random epoch of a history channel: 8 characters of [0-9a-z].
std::string make_epoch();

} // namespace wsnode::protocol
