#include "protocol/names.hpp"

namespace wsnode::protocol {

namespace {

constexpr bool is_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

template <class Pred>
bool all_of_length(std::string_view s, std::size_t max, Pred ok) noexcept {
  if (s.empty() || s.size() > max)
    return false;
  for (char c : s)
    if (!ok(c))
      return false;
  return true;
}

} // namespace

bool valid_channel(std::string_view ch) noexcept {
  return all_of_length(ch, max_channel_length, [](char c) {
    return is_alnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
  });
}

bool valid_user(std::string_view user) noexcept {
  return all_of_length(user, max_user_length, [](char c) {
    return is_alnum(c) || c == '_' || c == '.' || c == '@' || c == '-';
  });
}

std::string_view channel_namespace(std::string_view ch) noexcept {
  auto pos = ch.find(':');
  return pos == std::string_view::npos ? std::string_view{} : ch.substr(0, pos);
}

} // namespace wsnode::protocol
