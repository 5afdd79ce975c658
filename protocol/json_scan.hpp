// Validation and zero-copy member scanning of JSON documents.
//
// Client frames pass their `data` through verbatim: the server forwards the
// exact bytes the publisher sent, so numbers, escapes and key order survive.
// Boost.JSON's validating parser checks the whole document first (syntax,
// UTF-8, depth); only then does the scanner below walk the top-level object
// to find where each member's value starts and ends. The scanner trusts that
// the document is valid and must never be given one that was not validated.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace wsnode::protocol::json {

/// Deepest nesting of arrays/objects accepted in a document.
inline constexpr std::size_t max_depth = 32;

/// Returns true when `text` is exactly one valid JSON value (RFC 8259,
/// valid UTF-8, nesting no deeper than `max_depth`), surrounding whitespace
/// allowed.
bool validate(std::string_view text) noexcept;

/// Decodes one raw JSON string token, quotes included (`"a\u00e9"` -> "aé").
/// Returns nullopt when `raw` is not a string token.
std::optional<std::string> decode_string(std::string_view raw);

/// Encodes `s` as a JSON string token (quotes, escapes) appended to `out`.
void append_string(std::string& out, std::string_view s);

namespace detail {

constexpr bool is_ws(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/// Skips whitespace from `i`; returns the new index.
std::size_t skip_ws(std::string_view s, std::size_t i) noexcept;

/// Returns the index one past the value that starts at `i` (valid input).
std::size_t skip_value(std::string_view s, std::size_t i) noexcept;

} // namespace detail

/// Calls `f(key_raw, value_raw)` for each member of the top-level object of
/// the already validated document `doc`, in document order. `key_raw` is the
/// key between its quotes, escapes not decoded; `value_raw` is the member's
/// value exactly as written. `f` returns false to stop early. Returns false
/// when the top level is not an object.
template <class F>
bool for_each_member(std::string_view doc, F&& f) {
  using detail::skip_value;
  using detail::skip_ws;
  std::size_t i = skip_ws(doc, 0);
  if (i >= doc.size() || doc[i] != '{')
    return false;
  i = skip_ws(doc, i + 1);
  while (i < doc.size() && doc[i] == '"') {
    std::size_t key_end = skip_value(doc, i);
    std::string_view key = doc.substr(i + 1, key_end - i - 2);
    i = skip_ws(doc, key_end) + 1; // past ':'
    i = skip_ws(doc, i);
    std::size_t value_end = skip_value(doc, i);
    if (!f(key, doc.substr(i, value_end - i)))
      return true;
    i = skip_ws(doc, value_end);
    if (i < doc.size() && doc[i] == ',')
      i = skip_ws(doc, i + 1);
  }
  return true;
}

/// Calls `f(value_raw)` for each element of the top-level array of the
/// already validated document `raw`, in order; `f` returns false to stop
/// early. Returns false when the top level is not an array.
template <class F>
bool for_each_element(std::string_view raw, F&& f) {
  using detail::skip_value;
  using detail::skip_ws;
  std::size_t i = skip_ws(raw, 0);
  if (i >= raw.size() || raw[i] != '[')
    return false;
  i = skip_ws(raw, i + 1);
  while (i < raw.size() && raw[i] != ']') {
    std::size_t end = skip_value(raw, i);
    if (!f(raw.substr(i, end - i)))
      return true;
    i = skip_ws(raw, end);
    if (i < raw.size() && raw[i] == ',')
      i = skip_ws(raw, i + 1);
  }
  return true;
}

} // namespace wsnode::protocol::json
