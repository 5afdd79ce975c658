#include "actors/reply_order.hpp"

namespace wsnode::actors {

std::uint64_t reply_order::hold(std::string_view id, std::string_view ch) {
  if (!held_)
    held_ = std::make_unique<held_replies>();
  auto& r = held_->replies.emplace_back();
  r.id = std::string{id};
  r.ch = std::string{ch};
  return held_->base + held_->replies.size() - 1;
}

reply_order::held_reply* reply_order::slot(std::uint64_t n) noexcept {
  if (!held_ || n < held_->base || n - held_->base >= held_->replies.size())
    return nullptr;
  return &held_->replies[n - held_->base];
}

void reply_order::reply(frame_sink& sink, frame_ptr frame) {
  if (!held_) {
    sink.send(std::move(frame));
    return;
  }
  auto& r = held_->replies.emplace_back();
  r.frame = std::move(frame);
  r.ready = true;
}

void reply_order::flush(frame_sink& sink, std::vector<std::string>& released) {
  if (!held_)
    return;
  auto& held = held_->replies;
  std::size_t n = 0;
  while (n < held.size() && held[n].ready) {
    auto& r = held[n++];
    sink.send(std::move(r.frame));
    for (auto& f : r.more)
      sink.send_replay(std::move(f));
    if (r.release)
      released.push_back(std::move(r.ch));
  }
  if (n == held.size()) {
    held_.reset(); // no slot is outstanding: numbering starts afresh
    return;
  }
  held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(n));
  held_->base += n;
}

} // namespace wsnode::actors
