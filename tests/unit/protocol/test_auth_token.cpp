#include "protocol/auth_token.hpp"

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <chrono>
#include <memory>
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

namespace {

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

pkey_ptr make_key(bool rsa) {
  EVP_PKEY* k = rsa ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                    : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  return {k, EVP_PKEY_free};
}

std::string public_pem(EVP_PKEY* k) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, k);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return pem;
}

// An RS256 or ES256 token signed with OpenSSL directly (not cpp-jwt); ES256
// signatures are the raw r || s of JWS, not DER.
std::string pk_token(const std::string& alg, const std::string& payload, EVP_PKEY* k) {
  std::string signing = b64url(R"({"alg":")" + alg + R"(","typ":"JWT"})") + "." + b64url(payload);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, k);
  std::size_t len = 0;
  auto* in = reinterpret_cast<const unsigned char*>(signing.data());
  EVP_DigestSign(ctx, nullptr, &len, in, signing.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, signing.size());
  EVP_MD_CTX_free(ctx);
  sig.resize(len);
  if (alg == "ES256") {
    auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(es);
    sig = raw;
  }
  return signing + "." + b64url(sig);
}

std::string claims(const std::string& extra = {}) {
  return R"({"sub":"alice","exp":)" + std::to_string(now_s() + 3600) + extra + "}";
}

} // namespace

TEST_CASE("RS256 and ES256 tokens are verified with the public keys, each with its own kind") {
  auto rsa = make_key(true);
  auto ec = make_key(false);
  auto other = make_key(false);
  token_verifier v{{{}, public_pem(rsa.get()) + public_pem(ec.get()), {}, {}}};
  CHECK(v.rsa_keys() == 1);
  CHECK(v.ec_keys() == 1);
  auto r = v.verify(pk_token("RS256", claims(), rsa.get()));
  REQUIRE(r.user);
  CHECK(*r.user == "alice");
  CHECK(r.exp.has_value());
  CHECK(v.verify(pk_token("ES256", claims(), ec.get())).user);
  // a key that is not configured; an algorithm that does not match the key
  CHECK_FALSE(v.verify(pk_token("ES256", claims(), other.get())).user);
  auto swapped = pk_token("RS256", claims(), rsa.get());
  swapped.replace(0, swapped.find('.'), b64url(R"({"alg":"ES256","typ":"JWT"})"));
  CHECK_FALSE(v.verify(swapped).user);
  // no secret: HS256 is refused, even one keyed with the public key's PEM
  // text (the RS256/HS256 confusion attack)
  CHECK_FALSE(
      v.verify(hand_token(R"({"alg":"HS256"})", claims(), EVP_sha256(), public_pem(rsa.get())))
          .user);
  CHECK_FALSE(v.verify(b64url(R"({"alg":"none"})") + "." + b64url(claims()) + ".").user);
  // expired and not yet valid
  CHECK_FALSE(
      v.verify(pk_token("RS256", R"({"sub":"alice","exp":)" + std::to_string(now_s() - 10) + "}",
                        rsa.get()))
          .user);
  CHECK_FALSE(
      v.verify(pk_token("ES256", claims(R"(,"nbf":)" + std::to_string(now_s() + 600)), ec.get()))
          .user);
  CHECK(v.verify(pk_token("ES256", claims(R"(,"nbf":)" + std::to_string(now_s() - 5)), ec.get()))
            .user);
}

TEST_CASE("issuer, audience and the claims of private channels") {
  token_verifier v{{secret, {}, "auth.example", "wsnode"}};
  auto tok = [](const std::string& extra) {
    return hand_token(R"({"alg":"HS256"})", claims(extra), EVP_sha256(), secret);
  };
  CHECK(v.verify(tok(R"(,"iss":"auth.example","aud":"wsnode")")).user);
  CHECK(v.verify(tok(R"(,"iss":"auth.example","aud":["x","wsnode"])")).user);
  CHECK_FALSE(v.verify(tok(R"(,"iss":"evil","aud":"wsnode")")).user);
  CHECK_FALSE(v.verify(tok(R"(,"aud":"wsnode")")).user);
  CHECK_FALSE(v.verify(tok(R"(,"iss":"auth.example","aud":"other")")).user);
  CHECK_FALSE(v.verify(tok(R"(,"iss":"auth.example")")).user);
  auto r = v.verify(tok(
      R"(,"iss":"auth.example","aud":"wsnode","channels":["room:1","bad name",7],"ch":"dm:a")"));
  REQUIRE(r.user);
  CHECK(r.channels == std::vector<std::string>{"room:1"});
  CHECK(r.ch == "dm:a");
  CHECK_FALSE(v.verify(tok(R"(,"iss":"auth.example","aud":"wsnode","channels":"room:1")")).user);
  // sign_token's extra claims
  auto s = verify_token(sign_token("bob", secret, 1h, {{"a:1", "a:2"}, "a:3"}), secret);
  REQUIRE(s.user);
  CHECK(s.channels.size() == 2);
  CHECK(s.ch == "a:3");
}

TEST_CASE("a public key file must hold RSA (>= 2048 bits) or P-256 keys") {
  CHECK_THROWS_AS(token_verifier({{}, "garbage", {}, {}}), std::invalid_argument);
  CHECK_THROWS_AS(
      token_verifier({{}, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", {}, {}}),
      std::invalid_argument);
  pkey_ptr small{EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024)),
                 EVP_PKEY_free};
  CHECK_THROWS_AS(token_verifier({{}, public_pem(small.get()), {}, {}}), std::invalid_argument);
  pkey_ptr p384{EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"), EVP_PKEY_free};
  CHECK_THROWS_AS(token_verifier({{}, public_pem(p384.get()), {}, {}}), std::invalid_argument);
}

TEST_CASE("a key rotation accepts the old keys' tokens until its grace ends") {
  token_verifier old_keys{token_keys{secret, {}, {}, {}}};
  const std::string fresh = "rotated-secret-0123456789abcdefgh";
  auto old_token = sign_token("alice", secret, 60s);
  auto new_token = sign_token("bob", fresh, 60s);
  auto now = std::chrono::steady_clock::now();

  token_verifier during{token_keys{fresh, {}, {}, {}}, old_keys, now + 1h};
  CHECK(during.verify(new_token).user == "bob");
  CHECK(during.verify(old_token).user == "alice");
  CHECK(during.retired_keys() == 1);
  CHECK_FALSE(during.verify(sign_token("eve", "another-secret-0123456789abcdefgh", 60s)).user);
  // a refused token gets the current keys' reason
  CHECK(during.verify("a.b.c").error.find("malformed") != std::string::npos);

  token_verifier after{token_keys{fresh, {}, {}, {}}, old_keys, now - 1s};
  CHECK(after.verify(new_token).user == "bob");
  CHECK_FALSE(after.verify(old_token).user);
  CHECK(after.retired_keys() == 0);

  // two rotations within the grace: both older generations are accepted,
  // none longer than the newest rotation's grace
  const std::string third = "third-secret-0123456789abcdefghijk";
  token_verifier twice{token_keys{third, {}, {}, {}}, during, now + 1h};
  CHECK(twice.verify(old_token).user == "alice");
  CHECK(twice.verify(new_token).user == "bob");
  CHECK(twice.retired_keys() == 2);
  token_verifier short_grace{token_keys{third, {}, {}, {}}, during, now - 1s};
  CHECK_FALSE(short_grace.verify(old_token).user);
  CHECK_FALSE(short_grace.verify(new_token).user);
}
