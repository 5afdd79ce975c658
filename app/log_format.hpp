// [log] format = "json": one JSON object per log line, for log shippers
// (docs/operations.md "[log]").
#pragma once

#include <spdlog/formatter.h>

#include <memory>

namespace wsnode {

/// Formats each log message as one line of JSON:
/// `{"time":"2026-11-25T15:54:08.701Z","level":"info","logger":"wsnode","msg":"..."}`.
/// The time is UTC. The message is escaped (quotes, backslashes, control
/// characters); valid UTF-8 passes through and each byte of an invalid
/// sequence becomes U+FFFD, so every line parses as JSON.
/// Threading: spdlog calls it under its sink's lock; it keeps no state.
class json_log_formatter final : public spdlog::formatter {
public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

} // namespace wsnode
