// The only translation unit that includes cpp-jwt (nlohmann-json + OpenSSL).
#include "protocol/auth_token.hpp"

#include "protocol/names.hpp"

#include <jwt/jwt.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <stdexcept>

namespace wsnode::protocol {

namespace {

constexpr std::size_t max_token_length = 4096;
constexpr std::size_t max_keys = 16;

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

// The `alg` of a token's header ("" when unreadable).
std::string header_alg(std::string_view token) {
  auto head = token.substr(0, token.find('.'));
  auto json =
      nlohmann::json::parse(jwt::base64_uri_decode(head.data(), head.size()), nullptr, false);
  if (!json.is_object())
    return {};
  auto it = json.find("alg");
  return it != json.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

bool audience_matches(const nlohmann::json& aud, const std::string& want) {
  if (aud.is_string())
    return aud.get<std::string>() == want;
  if (aud.is_array())
    for (const auto& a : aud)
      if (a.is_string() && a.get<std::string>() == want)
        return true;
  return false;
}

struct public_key {
  std::string pem; // one key, as cpp-jwt takes it
  std::string alg; // "RS256" or "ES256"
};

// Splits PEM text into its public keys; throws naming what is wrong.
std::vector<public_key> read_public_keys(const std::string& text) {
  std::vector<public_key> keys;
  constexpr std::string_view begin = "-----BEGIN PUBLIC KEY-----";
  constexpr std::string_view end = "-----END PUBLIC KEY-----";
  std::size_t pos = 0;
  while ((pos = text.find(begin, pos)) != std::string::npos) {
    auto stop = text.find(end, pos);
    if (stop == std::string::npos)
      throw std::invalid_argument("a PEM block has no END PUBLIC KEY line");
    std::string pem = text.substr(pos, stop + end.size() - pos) + "\n";
    pos = stop + end.size();
    std::unique_ptr<BIO, decltype(&BIO_free)> bio{
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free};
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{
        bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr, EVP_PKEY_free};
    if (!key)
      throw std::invalid_argument("key " + std::to_string(keys.size() + 1) +
                                  " is not a readable PEM public key");
    std::string alg;
    if (EVP_PKEY_base_id(key.get()) == EVP_PKEY_RSA) {
      if (EVP_PKEY_get_bits(key.get()) < 2048)
        throw std::invalid_argument("key " + std::to_string(keys.size() + 1) +
                                    ": RSA keys shorter than 2048 bits are refused");
      alg = "RS256";
    } else if (EVP_PKEY_base_id(key.get()) == EVP_PKEY_EC) {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_group_name(key.get(), group, sizeof group, &len) != 1 ||
          std::string_view{group, len} != "prime256v1")
        throw std::invalid_argument("key " + std::to_string(keys.size() + 1) +
                                    ": EC keys must use the P-256 curve (ES256)");
      alg = "ES256";
    } else {
      throw std::invalid_argument("key " + std::to_string(keys.size() + 1) +
                                  " is neither RSA nor EC");
    }
    keys.push_back({std::move(pem), std::move(alg)});
    if (keys.size() > max_keys)
      throw std::invalid_argument("more than " + std::to_string(max_keys) + " public keys");
  }
  if (keys.empty() && text.find_first_not_of(" \t\r\n") != std::string::npos)
    throw std::invalid_argument("no '-----BEGIN PUBLIC KEY-----' block found");
  return keys;
}

} // namespace

struct token_verifier::impl {
  token_keys cfg;
  std::vector<public_key> keys;

  // cpp-jwt's verdict with one key: the claims, or the error.
  token_result check(std::string_view token, const std::string& alg, const std::string& key) const {
    token_result r;
    std::error_code ec;
    auto decoded = jwt::decode(
        jwt::string_view{token.data(), token.size()}, jwt::params::algorithms({alg}), ec,
        jwt::params::secret(jwt::string_view{key.data(), key.size()}), jwt::params::verify(true));
    if (ec) {
      r.error = ec.message();
      return r;
    }
    const auto& claims = decoded.payload().create_json_obj();
    return read_claims(claims);
  }

  token_result read_claims(const nlohmann::json& claims) const {
    token_result r;
    if (!cfg.issuer.empty()) {
      auto iss = claims.find("iss");
      if (iss == claims.end() || !iss->is_string() || iss->get<std::string>() != cfg.issuer) {
        r.error = "wrong or missing issuer ('iss')";
        return r;
      }
    }
    if (!cfg.audience.empty()) {
      auto aud = claims.find("aud");
      if (aud == claims.end() || !audience_matches(*aud, cfg.audience)) {
        r.error = "wrong or missing audience ('aud')";
        return r;
      }
    }
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
    if (auto exp = claims.find("exp"); exp != claims.end()) {
      if (!exp->is_number_integer()) {
        r.error = "claim 'exp' is not an integer";
        return r;
      }
      r.exp = exp->get<std::int64_t>();
    }
    if (auto chs = claims.find("channels"); chs != claims.end()) {
      if (!chs->is_array()) {
        r.error = "claim 'channels' is not an array of channel names";
        return r;
      }
      for (const auto& c : *chs)
        if (c.is_string() && valid_channel(c.get<std::string>()))
          r.channels.push_back(c.get<std::string>());
    }
    if (auto ch = claims.find("ch"); ch != claims.end() && ch->is_string())
      r.ch = ch->get<std::string>();
    r.user = std::move(user);
    return r;
  }

  // Signature, claims and this generation's checks; never throws.
  token_result verify(std::string_view token) const {
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
      auto alg = header_alg(token);
      if (alg == "HS256") {
        if (cfg.secret.empty()) {
          r.error = "HS256 tokens are not accepted here (no [auth] secret)";
          return r;
        }
        return check(token, alg, cfg.secret);
      }
      if (alg == "RS256" || alg == "ES256") {
        r.error = "no " + alg + " public key configured";
        for (const auto& k : keys) {
          if (k.alg != alg)
            continue;
          r = check(token, alg, k.pem);
          if (r.user)
            return r;
        }
        return r;
      }
      r.error = alg.empty() ? "malformed token header (no 'alg')"
                            : "algorithm '" + alg + "' is not accepted (HS256, RS256, ES256)";
    } catch (const std::exception& e) {
      // cpp-jwt throws for some malformed inputs even with an error_code.
      r = {};
      r.error = std::string{"malformed token: "} + e.what();
    }
    return r;
  }
};

std::shared_ptr<const token_verifier::impl> token_verifier::make_impl(token_keys keys) {
  auto i = std::make_shared<token_verifier::impl>();
  i->keys = read_public_keys(keys.public_keys);
  i->cfg = std::move(keys);
  return i;
}

token_verifier::token_verifier(token_keys keys) : impl_(make_impl(std::move(keys))) {}

token_verifier::token_verifier(token_keys keys, const token_verifier& old,
                               std::chrono::steady_clock::time_point until)
  : impl_(make_impl(std::move(keys))) {
  auto now = std::chrono::steady_clock::now();
  retired_.push_back({old.impl_, until});
  for (const auto& r : old.retired_) // its own predecessors, while their grace lasts
    if (r.until > now)
      retired_.push_back({r.keys, std::min(r.until, until)});
}

std::size_t token_verifier::retired_keys() const noexcept {
  auto now = std::chrono::steady_clock::now();
  return static_cast<std::size_t>(std::count_if(retired_.begin(), retired_.end(),
                                                [&](const auto& r) { return r.until > now; }));
}

token_verifier::~token_verifier() = default;

std::size_t token_verifier::rsa_keys() const noexcept {
  return static_cast<std::size_t>(std::count_if(impl_->keys.begin(), impl_->keys.end(),
                                                [](const auto& k) { return k.alg == "RS256"; }));
}

std::size_t token_verifier::ec_keys() const noexcept {
  return impl_->keys.size() - rsa_keys();
}

token_result token_verifier::verify(std::string_view token) const {
  auto r = impl_->verify(token);
  if (r.user || retired_.empty())
    return r;
  auto now = std::chrono::steady_clock::now();
  for (const auto& old : retired_) {
    if (now >= old.until)
      continue;
    auto o = old.keys->verify(token);
    if (o.user)
      return o;
  }
  return r; // the current keys' reason
}

token_result verify_token(std::string_view token, std::string_view secret) {
  token_verifier v{token_keys{std::string{secret}, {}, {}, {}}};
  return v.verify(token);
}

std::string sign_token(std::string_view user, std::string_view secret, std::chrono::seconds ttl,
                       const token_claims& extra) {
  jwt::jwt_object obj{jwt::params::algorithm("HS256"),
                      jwt::params::secret(jwt::string_view{secret.data(), secret.size()}),
                      jwt::params::payload({{"sub", std::string{user}}})};
  obj.add_claim("exp", std::chrono::system_clock::now() + ttl);
  if (!extra.ch.empty())
    obj.add_claim("ch", extra.ch);
  if (!extra.channels.empty())
    obj.payload().add_claim("channels", extra.channels);
  return obj.signature();
}

} // namespace wsnode::protocol
