#include "transport/nats_subjects.hpp"

namespace wsnode::transport::nats {

namespace {

bool kept(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == ':' || c == '@' || c == '-';
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1; // lower case is never written, so never accepted: one spelling per name
}

} // namespace

std::string encode_token(std::string_view name) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(name.size() + 8);
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    if (kept(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  return out;
}

std::optional<std::string> decode_token(std::string_view token) {
  if (token.empty())
    return std::nullopt;
  std::string out;
  out.reserve(token.size());
  for (std::size_t i = 0; i < token.size(); ++i) {
    auto c = static_cast<unsigned char>(token[i]);
    if (kept(c)) {
      out.push_back(token[i]);
      continue;
    }
    if (c != '%' || i + 2 >= token.size())
      return std::nullopt;
    int hi = hex_value(token[i + 1]);
    int lo = hex_value(token[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    auto byte = static_cast<unsigned char>(hi * 16 + lo);
    if (kept(byte))
      return std::nullopt; // written plain by encode_token, never escaped
    out.push_back(static_cast<char>(byte));
    i += 2;
  }
  return out;
}

std::string topic_subject(std::string_view prefix, topic_kind kind, std::string_view name) {
  std::string s;
  s.reserve(prefix.size() + 3 + name.size());
  s.append(prefix);
  s.append(kind == topic_kind::channel ? ".c." : ".u.");
  s.append(encode_token(name));
  return s;
}

std::string node_subject(std::string_view prefix, std::string_view node) {
  std::string s{prefix};
  s.append(".n.");
  s.append(encode_token(node));
  return s;
}

std::string heartbeat_subject(std::string_view prefix) {
  return std::string{prefix} + ".hb";
}

std::optional<parsed_subject> parse_topic_subject(std::string_view prefix,
                                                  std::string_view subject) {
  if (subject.size() < prefix.size() + 4 || !subject.starts_with(prefix) ||
      subject[prefix.size()] != '.' || subject[prefix.size() + 2] != '.')
    return std::nullopt;
  char k = subject[prefix.size() + 1];
  if (k != 'c' && k != 'u')
    return std::nullopt;
  auto name = decode_token(subject.substr(prefix.size() + 3));
  if (!name)
    return std::nullopt;
  return parsed_subject{k == 'c' ? topic_kind::channel : topic_kind::user, std::move(*name)};
}

} // namespace wsnode::transport::nats
