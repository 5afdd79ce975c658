// HS256 JSON Web Tokens: the identity a client presents in /ws?token=.
// cpp-jwt checks the algorithm (HS256 only: `none` and others are refused),
// the signature and `exp`; this layer adds the `sub` rules of protocol v1.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace wsnode::protocol {

/// Outcome of verifying a token: the user id, or why it was refused.
struct token_result {
  std::optional<std::string> user;
  std::string error;
};

/// Verifies `token` with `secret`: HS256 signature, `exp` (when present) in
/// the future, and `sub` a valid user id. Never throws.
token_result verify_token(std::string_view token, std::string_view secret);

/// Signs an HS256 token with `sub = user` and `exp = now + ttl` (for tools
/// and tests; production tokens come from the application's auth service).
std::string sign_token(std::string_view user, std::string_view secret, std::chrono::seconds ttl);

} // namespace wsnode::protocol
