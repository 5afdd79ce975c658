// libFuzzer target for every parser that reads network input: client
// frames, API bodies, server frames (clients/tools) and JWTs (?token=).
// The first byte picks the parser; the rest is the input. Besides "no crash,
// no leak, no UB" it checks that what parses re-encodes to something that
// parses to the same command.
#include "protocol/auth_token.hpp"
#include "protocol/codec.hpp"
#include "protocol/json_scan.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

using namespace wsnode::protocol;

void check(bool ok) {
  if (!ok)
    std::abort();
}

void round_trip(const command& c) {
  auto text = encode_command(c); // `again` views into it
  auto again = parse_command(text, parse_limits{1 << 20});
  auto* back = std::get_if<command>(&again);
  check(back != nullptr);
  check(back->kind == c.kind && back->ch == c.ch && back->to == c.to && back->data == c.data &&
        back->id == c.id);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string_view in{reinterpret_cast<const char*>(data) + 1, size - 1};
  parse_limits limits;
  limits.max_data_bytes = 256;
  switch (data[0] % 4) {
  case 0: {
    auto r = parse_command(in, limits);
    if (auto* c = std::get_if<command>(&r)) {
      check(json::validate(in));
      round_trip(*c);
      if (c->kind == op::pub)
        check(parse_server_frame(encode_msg(c->ch, "fuzz", c->data)).has_value());
    } else {
      auto& e = std::get<command_error>(r);
      check(parse_server_frame(encode_err(e.id, e.code, e.msg)).has_value());
    }
    break;
  }
  case 1:
    (void)parse_api_body(in, (size & 1) ? op::pub : op::send, limits);
    break;
  case 2: {
    auto f = parse_server_frame(in);
    if (f)
      check(json::validate(in));
    break;
  }
  case 3:
    (void)verify_token(in, "fuzz-secret");
    break;
  }
  return 0;
}
