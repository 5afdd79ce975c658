#include "app/reload.hpp"

#include "app/config_reload.hpp"
#include "app/node_parts.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <exception>

namespace wsnode {

reloader::reloader(config running, std::filesystem::path file, rlim_t fd_limit,
                   std::shared_ptr<const protocol::token_verifier> verifier, transport::server& srv,
                   session_publisher sessions, metrics& m)
  : running_(std::move(running)), file_(std::move(file)), fd_limit_(fd_limit),
    verifier_(std::move(verifier)), srv_(srv), sessions_(std::move(sessions)), m_(m) {}

reload_result reloader::reload() {
  auto done = [&](reload_result r) {
    bump(m_.config_reloads[static_cast<std::size_t>(r)], 1);
    return r;
  };
  reload_plan plan;
  std::shared_ptr<const protocol::token_verifier> verifier = verifier_;
  try {
    plan = plan_reload(running_, load_config(file_));
    if (plan.keys_changed) // the old keys stay accepted for key_grace_ms
      verifier = make_verifier(plan.next, verifier_.get());
  } catch (const std::exception& e) {
    spdlog::error("reload refused: {}: {}; the running configuration stays", file_.string(),
                  e.what());
    return done(reload_result::error);
  }
  for (const auto& k : plan.restart_only)
    spdlog::warn("reload: {} changed in {} but needs a restart; it keeps its running value", k,
                 file_.string());
  if (plan.changed.empty()) {
    spdlog::info("reload: nothing to apply from {}", file_.string());
  } else {
    const auto& next = plan.next;
    srv_.reload(make_access(next, fd_limit_, verifier));
    sessions_(make_session_config(
                  next, std::make_shared<const actors::namespace_table>(next.namespaces), verifier),
              plan.namespaces_changed);
    spdlog::default_logger()->set_level(spdlog::level::from_str(next.log_level));
    spdlog::info("reload: applied {}{}", fmt::join(plan.changed, ", "),
                 !plan.keys_changed || !verifier ? std::string{}
                 : next.key_grace.count() > 0
                     ? fmt::format(" (tokens of the old keys accepted for {} ms more)",
                                   next.key_grace.count())
                     : std::string{" (tokens of the old keys refused from now: key_grace_ms = 0)"});
    verifier_ = std::move(verifier);
    running_ = std::move(plan.next);
  }
  return done(plan.restart_only.empty() ? reload_result::ok : reload_result::restart_needed);
}

} // namespace wsnode
