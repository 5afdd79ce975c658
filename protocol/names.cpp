#include "protocol/names.hpp"

#include <chrono>
#include <random>

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

std::string make_epoch() {
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937_64 rng{
      std::random_device{}() ^
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  std::string e(8, '0');
  for (auto& c : e)
    c = digits[rng() % 36];
  return e;
}

} // namespace wsnode::protocol
