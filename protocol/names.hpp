// Channel and user name rules of client protocol v1.
#pragma once

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

} // namespace wsnode::protocol
