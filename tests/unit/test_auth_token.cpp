#include "protocol/auth_token.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <string>
#include <vector>

using namespace wsnode::protocol;
using namespace std::chrono_literals;

namespace {

const std::string secret = "unit-test-secret-0123456789abcdef";

std::string b64url(const std::string& in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v =
        (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += tbl[v >> 18 & 63];
    out += tbl[v >> 12 & 63];
    out += tbl[v >> 6 & 63];
    out += tbl[v & 63];
  }
  if (i + 1 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16;
    out += tbl[v >> 18 & 63];
    out += tbl[v >> 12 & 63];
  } else if (i + 2 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += tbl[v >> 18 & 63];
    out += tbl[v >> 12 & 63];
    out += tbl[v >> 6 & 63];
  }
  return out;
}

// A token signed by hand (independent of cpp-jwt) with `md` (sha256/sha512).
std::string hand_token(const std::string& header, const std::string& payload, const EVP_MD* md,
                       const std::string& key) {
  std::string signing = b64url(header) + "." + b64url(payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(signing.data()), signing.size(), mac, &len);
  return signing + "." + b64url(std::string(reinterpret_cast<char*>(mac), len));
}

long now_s() {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count());
}

} // namespace

TEST_CASE("a valid HS256 token yields its sub") {
  auto r = verify_token(sign_token("alice", secret, 1h), secret);
  REQUIRE(r.user.has_value());
  CHECK(*r.user == "alice");

  auto hand = hand_token(R"({"alg":"HS256","typ":"JWT"})",
                         R"({"sub":"bob","exp":)" + std::to_string(now_s() + 600) + "}",
                         EVP_sha256(), secret);
  auto h = verify_token(hand, secret);
  REQUIRE(h.user.has_value());
  CHECK(*h.user == "bob");
}

TEST_CASE("expired, forged, alg none, other algorithms and garbage are refused") {
  CHECK_FALSE(verify_token(sign_token("alice", secret, -1h), secret).user);
  CHECK_FALSE(verify_token(sign_token("alice", "another-secret", 1h), secret).user);
  auto exp = std::to_string(now_s() + 600);
  std::string none = b64url(R"({"alg":"none","typ":"JWT"})") + "." +
                     b64url(R"({"sub":"mallory","exp":)" + exp + "}") + ".";
  CHECK_FALSE(verify_token(none, secret).user);
  CHECK_FALSE(verify_token(none + "AAAA", secret).user);
  CHECK_FALSE(verify_token(hand_token(R"({"alg":"HS512","typ":"JWT"})",
                                      R"({"sub":"carol","exp":)" + exp + "}", EVP_sha512(), secret),
                           secret)
                  .user);
  // signature of one payload on another
  auto good = sign_token("alice", secret, 1h);
  auto evil = hand_token(R"({"alg":"HS256","typ":"JWT"})", R"({"sub":"root"})", EVP_sha256(), "x");
  auto spliced = evil.substr(0, evil.rfind('.')) + good.substr(good.rfind('.'));
  CHECK_FALSE(verify_token(spliced, secret).user);
  std::vector<std::string> garbage_tokens{"",
                                          "abc",
                                          "a.b.c",
                                          "..",
                                          "a.b",
                                          "eyJ.eyJ.x",
                                          std::string(5000, 'a'),
                                          std::string("\0\0.\0", 4),
                                          "eyJhbGciOiJIUzI1NiJ9.eyJzd\xc2\xc2WIi.sig",
                                          "a.b.c.d",
                                          "a b.c.d"};
  for (const auto& garbage : garbage_tokens) {
    auto r = verify_token(garbage, secret);
    CHECK_FALSE(r.user.has_value());
    CHECK_FALSE(r.error.empty());
  }
}

TEST_CASE("sub must be a valid user id") {
  auto exp = std::to_string(now_s() + 600);
  CHECK_FALSE(
      verify_token(hand_token(R"({"alg":"HS256"})", R"({"exp":)" + exp + "}", EVP_sha256(), secret),
                   secret)
          .user);
  CHECK_FALSE(
      verify_token(hand_token(R"({"alg":"HS256"})", R"({"sub":42})", EVP_sha256(), secret), secret)
          .user);
  CHECK_FALSE(
      verify_token(hand_token(R"({"alg":"HS256"})", R"({"sub":"a b"})", EVP_sha256(), secret),
                   secret)
          .user);
}
