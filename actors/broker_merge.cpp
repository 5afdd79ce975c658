// broker_core's merged frames (danmaku): in a namespace with `merge_ms`, a
// channel's messages reach the sessions that opted in with `batch=1` as one
// JSON array per window, built once and shared by all of them, so that a
// busy room costs one frame per viewer and window instead of one per
// message (goim merges a room's messages the same way). Sessions without
// `batch=1` get each message at once, as always.
//
// A window opens with its first message and goes out when `merge_ms` has
// passed (the shard's timer), when it holds `merge_max` messages, or when
// one more would make it longer than the largest frame a client accepts.
// It also goes out early whenever the order of what a batched session sees
// could change otherwise: before any other frame of the channel (join,
// leave, resync), before a batched session starts to take its messages
// from the window (a new subscription, a recovered one that caught up), so
// that no array repeats what a session got alone or holds what was
// published before it subscribed. Each node merges what it delivers: the
// backbone carries every message alone, so that sessions without `batch=1`
// on every node get it as soon as it is published.
#include "actors/broker.hpp"

#include "protocol/codec.hpp"

namespace wsnode::actors {

namespace {

// Sends `frame` to those of `subs` whose batched() is `batched`, in one
// hand-over; returns how many queued it and counts the others in `skipped`.
template <class Subscribers>
std::size_t send_where(const Subscribers& subs, const frame_ptr& frame, bool lossy, bool batched,
                       std::size_t& skipped) {
  std::size_t queued = 0;
  send_batch batch;
  for (const auto& [sid, sink] : subs) {
    if (sink->batched() != batched) {
      ++skipped;
      continue;
    }
    auto r = lossy ? sink->send_lossy(frame) : sink->send(frame);
    queued += r == send_result::queued ? 1 : 0;
  }
  return queued;
}

} // namespace

std::size_t broker_core::fan_out_channel(std::string_view ch, const frame_ptr& frame) {
  const auto* subs = channels_.find(ch);
  if (subs == nullptr)
    return 0;
  const namespace_options* ns = namespaces_ ? &namespaces_->of_channel(ch) : nullptr;
  bool is_lossy = ns != nullptr && ns->lossy;
  // (no window of ch can be open here: set_namespaces sends them all
  // before a reload switches merging off)
  if (ns == nullptr || !ns->merges() || !merge_timer_)
    return fan_out(subs, frame, is_lossy);
  if (!protocol::is_msg_frame(*frame)) { // an event comes alone, after the messages before it
    flush_window(ch);
    return fan_out(subs, frame, is_lossy);
  }
  std::size_t batched = 0;
  auto queued = send_where(*subs, frame, is_lossy, false, batched);
  bump(metrics_.deliveries, queued);
  if (batched == 0)
    return queued;
  auto it = windows_.find(ch);
  if (it != windows_.end() && it->second.bytes + frame->size() + 2 > max_merged_bytes_) {
    flush_window(ch); // the array would be too long: it goes without this one
    it = windows_.end();
  }
  if (it == windows_.end())
    it = windows_.emplace(std::string{ch}, merge_window{}).first;
  auto& w = it->second;
  if (w.frames.empty()) {
    w.id = ++next_window_;
    merge_timer_(ch, ns->merge_ms, w.id);
  }
  w.frames.push_back(frame);
  w.bytes += frame->size() + 1; // and its comma (or a bracket)
  if (w.frames.size() >= ns->merge_max)
    flush_window(ch);
  return queued; // the batched sessions' deliveries count when their array goes
}

void broker_core::set_namespaces(std::shared_ptr<const namespace_table> ns) {
  std::vector<std::string> open;
  open.reserve(windows_.size());
  for (const auto& [ch, w] : windows_)
    open.push_back(ch);
  for (const auto& ch : open)
    flush_window(ch);
  namespaces_ = std::move(ns);
}

void broker_core::merge_due(std::string_view ch, std::uint64_t window) {
  auto it = windows_.find(ch);
  if (it != windows_.end() && it->second.id == window)
    flush_window(ch);
}

void broker_core::flush_window(std::string_view ch) {
  auto it = windows_.find(ch);
  if (it == windows_.end())
    return;
  auto frames = std::move(it->second.frames);
  auto bytes = it->second.bytes;
  windows_.erase(it);
  const auto* subs = channels_.find(ch);
  if (frames.empty() || subs == nullptr)
    return;
  frame_ptr out;
  if (frames.size() == 1) {
    out = std::move(frames.front()); // one message: its own frame, as without batch=1
  } else {
    std::string a;
    a.reserve(bytes + 1);
    for (const auto& f : frames) {
      a += a.empty() ? '[' : ',';
      a += *f;
    }
    a += ']';
    out = make_frame(std::move(a));
    bump(metrics_.merged_frames, 1);
    bump(metrics_.merged_messages, frames.size());
  }
  std::size_t plain = 0; // they had each message at once
  auto queued = send_where(*subs, out, lossy(ch), true, plain);
  bump(metrics_.deliveries, queued * frames.size());
}

} // namespace wsnode::actors
