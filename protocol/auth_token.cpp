// The only translation unit that includes cpp-jwt (nlohmann-json + OpenSSL).
#include "protocol/auth_token.hpp"

#include "protocol/names.hpp"

#include <jwt/jwt.hpp>

namespace wsnode::protocol {

namespace {

constexpr std::size_t max_token_length = 4096;

// A JWS compact serialization is three base64url segments joined by '.'.
// Checked before cpp-jwt sees the token: its base64 decoder indexes a
// 256-entry table with a signed char, reading out of bounds for bytes
// >= 0x80 (found by tests/fuzz).
bool compact_form(std::string_view t) {
  int dots = 0;
  for (char c : t) {
    if (c == '.')
      ++dots;
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '='))
      return false;
  }
  return dots == 2;
}

} // namespace

token_result verify_token(std::string_view token, std::string_view secret) {
  token_result r;
  if (token.empty()) {
    r.error = "missing token";
    return r;
  }
  if (token.size() > max_token_length) {
    r.error = "token too long";
    return r;
  }
  if (!compact_form(token)) {
    r.error = "malformed token: expected three base64url segments";
    return r;
  }
  try {
    std::error_code ec;
    auto decoded = jwt::decode(jwt::string_view{token.data(), token.size()},
                               jwt::params::algorithms({"HS256"}), ec,
                               jwt::params::secret(jwt::string_view{secret.data(), secret.size()}),
                               jwt::params::verify(true));
    if (ec) {
      r.error = ec.message();
      return r;
    }
    const auto& claims = decoded.payload().create_json_obj();
    auto sub = claims.find("sub");
    if (sub == claims.end() || !sub->is_string()) {
      r.error = "token has no string claim 'sub'";
      return r;
    }
    auto user = sub->get<std::string>();
    if (!valid_user(user)) {
      r.error = "claim 'sub' is not a valid user id";
      return r;
    }
    r.user = std::move(user);
  } catch (const std::exception& e) {
    // cpp-jwt throws for some malformed inputs even with an error_code.
    r.error = std::string{"malformed token: "} + e.what();
  }
  return r;
}

std::string sign_token(std::string_view user, std::string_view secret, std::chrono::seconds ttl) {
  jwt::jwt_object obj{jwt::params::algorithm("HS256"),
                      jwt::params::secret(jwt::string_view{secret.data(), secret.size()}),
                      jwt::params::payload({{"sub", std::string{user}}})};
  obj.add_claim("exp", std::chrono::system_clock::now() + ttl);
  return obj.signature();
}

} // namespace wsnode::protocol
