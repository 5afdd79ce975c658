// JSON Web Tokens: the identity a client presents in /ws?token=, the
// subscription tokens of private channels and the tokens of `refresh`.
// cpp-jwt checks the signature, `exp` and `nbf`; this layer picks the key
// for the token's algorithm (HS256 with the secret, RS256 / ES256 with the
// public keys: an algorithm is never verified with another kind of key,
// and `none` is refused), checks `iss` / `aud` when configured and the
// claims of protocol v1.1 (`sub`, `channels`, `ch`).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::protocol {

/// Outcome of verifying a token: the claims wsnode uses, or why it was
/// refused (`user` empty).
struct token_result {
  std::optional<std::string> user;   ///< claim `sub`, a valid user id
  std::optional<std::int64_t> exp;   ///< claim `exp` (seconds since the epoch)
  std::vector<std::string> channels; ///< claim `channels` (connection tokens)
  std::string ch;                    ///< claim `ch` (subscription tokens)
  std::string error;
};

/// The keys and checks of `[auth]`.
struct token_keys {
  std::string secret;      ///< HS256; empty: HS256 tokens are refused
  std::string public_keys; ///< PEM text: one or more RSA or P-256 EC public keys
  std::string issuer;      ///< checked against `iss` when not empty
  std::string audience;    ///< checked against `aud` (string or array) when not empty
};

/// Verifies tokens with a node's keys. Immutable; shared by every thread.
class token_verifier {
public:
  /// Throws std::invalid_argument naming the problem when `public_keys`
  /// holds something that is not an RSA or P-256 EC public key.
  explicit token_verifier(token_keys keys);
  /// A key rotation: verifies with `keys`, and until `until` also accepts
  /// what `old` accepts (with `old`'s checks), so that clients holding a
  /// token signed with the old keys are not cut while they refresh. `old`'s
  /// own predecessors come along while their grace lasts (at most `until`).
  token_verifier(token_keys keys, const token_verifier& old,
                 std::chrono::steady_clock::time_point until);
  ~token_verifier();
  token_verifier(const token_verifier&) = delete;
  token_verifier& operator=(const token_verifier&) = delete;

  /// Verifies signature, `exp` and `nbf` (when present), `iss` / `aud`
  /// (when configured), and that `sub` is a valid user id. Never throws.
  token_result verify(std::string_view token) const;

  /// Number of public keys of each kind (for the start-up log).
  std::size_t rsa_keys() const noexcept;
  std::size_t ec_keys() const noexcept;
  /// Generations of older keys still accepted (their grace not over).
  std::size_t retired_keys() const noexcept;

private:
  struct impl; // one generation of keys and checks
  static std::shared_ptr<const impl> make_impl(token_keys keys);
  struct retired {
    std::shared_ptr<const impl> keys;
    std::chrono::steady_clock::time_point until;
  };
  std::shared_ptr<const impl> impl_;
  std::vector<retired> retired_; // empty but during a rotation's grace
};

/// Verifies `token` with an HS256 `secret` only (see token_verifier).
token_result verify_token(std::string_view token, std::string_view secret);

/// Optional claims of a token made by sign_token.
struct token_claims {
  std::vector<std::string> channels; ///< `channels`; empty: none
  std::string ch;                    ///< `ch`; empty: none
};

/// Signs an HS256 token with `sub = user` and `exp = now + ttl` (for tools
/// and tests; production tokens come from the application's auth service).
std::string sign_token(std::string_view user, std::string_view secret, std::chrono::seconds ttl,
                       const token_claims& extra = {});

} // namespace wsnode::protocol
