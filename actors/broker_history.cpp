// broker_core's side of history channels: the subscriptions of a node get
// a channel's messages in offset order, once each, from the position their
// `ack` gave (see history/service.hpp for where the messages come from).
//
// A new subscription is "held": it joins the channel's subscribers at once
// (so nothing published after it is missed) but its frames wait in a
// held_sink while the session reads the position and sends the ack and
// any replay; then release() hands over what came after the position, and
// the subscription gets the plain sink once it has caught up. Per node and
// channel, `streams_` remembers the last offset delivered: a repeat is
// dropped; after a gap (a message lost between nodes, or an owner that died
// before it sent one) newer messages wait while the broker fills the gap
// from the owner's history, so the clients see every message once, in
// order. The owner also announces its committed top for a while after each
// write (note_top), so a gap at the tail of a stream, with nothing after it
// to reveal it, is filled too. Only when the owner cannot vouch for what
// was missed (a failed fill, a new epoch) does every subscription here end
// with `resync` (the clients subscribe again with `since` and recover).
#include "actors/broker.hpp"

#include "protocol/codec.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

namespace wsnode::actors {

namespace {
/// Frames one held subscription keeps at most while its read is under way.
constexpr std::size_t max_held_frames = 10000;
} // namespace

class broker_core::held_sink final : public frame_sink {
public:
  held_sink(sink_ptr real, std::size_t ch_size) : real_(std::move(real)), ch_size_(ch_size) {}

  send_result send(frame_ptr f) override { return take(std::move(f), false); }
  send_result send_lossy(frame_ptr f) override { return take(std::move(f), true); }

  // the broker's thread only
  send_result take(frame_ptr f, bool lossy) {
    auto off = protocol::msg_offset(*f, ch_size_);
    if (off == 0) // a join/leave event: not part of the stream (dropped before the ack)
      return released_ ? forward(std::move(f), lossy) : send_result::queued;
    if (!released_) {
      if (held_.size() >= max_held_frames)
        overflow_ = true;
      else if (!broken_)
        held_.push_back(std::move(f));
      return send_result::queued;
    }
    if (off <= pos_)
      return send_result::queued; // the replay held it already
    caught_up_ = true;
    return forward(std::move(f), lossy);
  }
  send_result forward(frame_ptr f, bool lossy) {
    return lossy ? real_->send_lossy(std::move(f)) : real_->send(std::move(f));
  }
  void close(std::uint16_t code, std::string reason) override {
    real_->close(code, std::move(reason));
  }
  void input_done() override { real_->input_done(); }

  sink_ptr real_;
  std::size_t ch_size_;
  std::vector<frame_ptr> held_;
  std::string ep_;
  std::uint64_t pos_ = 0;
  bool positioned_ = false;
  bool released_ = false;
  bool caught_up_ = false;
  bool broken_ = false; // the stream broke before release: resync then
  bool overflow_ = false;
};

broker_core::held_sink* broker_core::find_held(sid_type sid, std::string_view ch) {
  auto it = held_.find(sid);
  if (it == held_.end())
    return nullptr;
  for (auto& [name, h] : it->second)
    if (name == ch)
      return h.get();
  return nullptr;
}

void broker_core::erase_held(sid_type sid, std::string_view ch) {
  auto it = held_.find(sid);
  if (it == held_.end())
    return;
  std::erase_if(it->second, [&](const auto& e) { return e.first == ch; });
  if (it->second.empty())
    held_.erase(it);
}

bool broker_core::subscribe_held(sid_type sid, std::string_view ch, ready_fn ready) {
  auto it = sessions_.find(sid);
  if (it == sessions_.end())
    return false;
  erase_held(sid, ch); // a repeated sub starts over
  auto h = std::make_shared<held_sink>(it->second.sink, ch.size());
  if (channels_.add(ch, sid, h.get()) && occupancy_)
    occupancy_(topic_kind::channel, ch, true);
  held_[sid].emplace_back(std::string{ch}, std::move(h));
  want(topic_kind::channel, ch, std::move(ready));
  update_gauges();
  return true;
}

void broker_core::set_position(sid_type sid, std::string_view ch, std::string ep,
                               std::uint64_t off) {
  if (auto* h = find_held(sid, ch)) {
    h->ep_ = std::move(ep);
    h->pos_ = off;
    h->positioned_ = true;
  }
}

void broker_core::resync(sid_type sid, std::string_view ch, frame_sink& sink,
                         clock::time_point now) {
  sink.send(make_frame(protocol::encode_resync(ch)));
  bump(metrics_.resyncs, 1);
  erase_held(sid, ch);
  if (channels_.remove(ch, sid))
    unwant(topic_kind::channel, ch, now);
  update_gauges();
}

void broker_core::release(sid_type sid, std::string_view ch) {
  auto* h = find_held(sid, ch);
  if (h == nullptr || h->released_)
    return;
  auto now = clock::now();
  auto s = streams_.find(ch);
  bool other_epoch = s != streams_.end() && s->second.ep != h->ep_;
  if (h->broken_ || h->overflow_ || !h->positioned_ || other_epoch)
    return resync(sid, ch, *h->real_, now);
  // what arrived while the ack was prepared, after the position, with no hole
  auto held = std::move(h->held_);
  h->held_.clear();
  std::uint64_t next = h->pos_ + 1;
  for (auto& f : held) {
    auto off = protocol::msg_offset(*f, ch.size());
    if (off < next)
      continue;
    if (off != next)
      return resync(sid, ch, *h->real_, now);
    h->real_->send(std::move(f));
    ++next;
  }
  if (s != streams_.end() && s->second.last >= next) // delivered here, never held
    return resync(sid, ch, *h->real_, now);
  h->released_ = true;
  h->pos_ = next - 1;
  if (s == streams_.end()) // the first position here: a new epoch must show as one
    s = streams_.emplace(std::string{ch}, stream{h->ep_, h->pos_}).first;
  if (s != streams_.end() && s->second.last == h->pos_) {
    flush_window(ch);                       // it got those alone: the window goes out without it
    channels_.add(ch, sid, h->real_.get()); // caught up: the plain sink from now on
    erase_held(sid, ch);
  }
}

void broker_core::drop_held(sid_type sid, std::string_view ch, clock::time_point now) {
  if (find_held(sid, ch) == nullptr)
    return;
  erase_held(sid, ch);
  if (channels_.remove(ch, sid))
    unwant(topic_kind::channel, ch, now);
  update_gauges();
}

void broker_core::break_stream(std::string_view ch, clock::time_point now) {
  flush_window(ch); // what was delivered goes out before the resync
  auto* subs = channels_.find(ch);
  std::vector<std::pair<sid_type, frame_sink*>> ended;
  if (subs != nullptr)
    for (const auto& [sid, sink] : *subs) {
      auto* h = find_held(sid, ch);
      if (h != nullptr && !h->released_) {
        h->broken_ = true; // its ack is on the way: resync at release
        h->held_.clear();
        continue;
      }
      ended.emplace_back(sid, h != nullptr ? h->real_.get() : sink);
    }
  for (auto& [sid, sink] : ended)
    resync(sid, ch, *sink, now);
  // the order starts afresh with the next message (held subscriptions
  // still pending resync at their release)
  if (auto s = streams_.find(ch); s != streams_.end())
    streams_.erase(s);
}

std::size_t broker_core::deliver_ordered(std::string_view ch, std::string_view ep,
                                         std::uint64_t off, const frame_ptr& frame,
                                         bool propagate) {
  if (propagate && backbone_->clustered()) {
    backbone_->publish(topic_kind::channel, ch, make_frame(encode_ordered(ep, *frame)));
  }
  if (channels_.find(ch) == nullptr)
    return 0;
  auto it = streams_.find(ch);
  if (it == streams_.end()) {
    streams_.emplace(std::string{ch}, stream{std::string{ep}, off});
    return deliver_next(ch, frame, off);
  }
  auto& s = it->second;
  if (s.ep != ep) { // a new epoch: what was before is gone
    break_stream(ch, clock::now());
    it = streams_.find(ch); // gone when nobody was left
    if (it == streams_.end())
      it = streams_.emplace(std::string{ch}, stream{}).first;
    it->second = {std::string{ep}, off};
    return 0;
  }
  if (off <= s.last)
    return 0;             // a repeat (a new owner sends its newest messages again)
  if (off > s.last + 1) { // a gap: wait for the owner to fill it
    if (s.ahead.size() >= max_held_frames) {
      bump(metrics_.history_fill_failures, 1);
      break_stream(ch, clock::now());
      return 0;
    }
    s.ahead.emplace(off, frame);
    if (!s.filling)
      request_fill(ch, s);
    return 0;
  }
  s.last = off;
  auto n = deliver_next(ch, frame, off);
  drain_ahead(ch);
  return n;
}

std::size_t broker_core::deliver_next(std::string_view ch, const frame_ptr& frame,
                                      std::uint64_t off) {
  auto* subs = channels_.find(ch);
  if (subs == nullptr)
    return 0;
  auto n = fan_out_channel(ch, frame);
  // held subscriptions that have caught up get their plain sink back
  std::vector<std::pair<sid_type, frame_sink*>> caught;
  for (const auto& [sid, sink] : *subs) {
    auto h = held_.find(sid);
    if (h == held_.end())
      continue;
    for (auto& [name, hs] : h->second)
      if (name == ch && hs->released_ && (hs->caught_up_ || off >= hs->pos_))
        caught.emplace_back(sid, hs->real_.get());
  }
  if (!caught.empty())
    flush_window(ch); // they got its messages alone: it goes out without them
  for (auto& [sid, real] : caught) {
    channels_.add(ch, sid, real);
    erase_held(sid, ch);
  }
  return n;
}

// What waited past a gap that is filled now goes out, in order.
void broker_core::drain_ahead(std::string_view ch) {
  for (;;) {
    auto it = streams_.find(ch);
    if (it == streams_.end())
      return;
    auto& s = it->second;
    while (!s.ahead.empty() && s.ahead.begin()->first <= s.last)
      s.ahead.erase(s.ahead.begin());
    if (s.ahead.empty() || s.ahead.begin()->first != s.last + 1)
      return;
    auto off = s.ahead.begin()->first;
    auto frame = std::move(s.ahead.begin()->second);
    s.ahead.erase(s.ahead.begin());
    s.last = off;
    deliver_next(ch, frame, off);
  }
}

void broker_core::request_fill(std::string_view ch, stream& s) {
  if (!fill_) {
    bump(metrics_.history_fill_failures, 1);
    return break_stream(ch, clock::now());
  }
  s.filling = true;
  spdlog::debug("history: filling {} after {} (epoch {}, {} waiting)", ch, s.last, s.ep,
                s.ahead.size());
  fill_(std::string{ch}, s.ep, s.last);
}

void broker_core::note_top(std::string_view ch, std::string_view ep, std::uint64_t term,
                           std::uint64_t top) {
  auto it = streams_.find(ch);
  if (it == streams_.end())
    return; // nobody here listens
  auto& s = it->second;
  if (term < s.term)
    return; // an owner that has been replaced (it cannot commit anything new)
  s.term = term;
  if (s.ep != ep) { // the channel's history started again: what is here is gone
    bump(metrics_.history_fill_failures, 1);
    return break_stream(ch, clock::now());
  }
  if (top > s.last && !s.filling)
    request_fill(ch, s);
}

void broker_core::fill_done(const std::string& ch, const std::string& ep, std::uint64_t after,
                            bool ok, std::vector<frame_ptr> frames) {
  auto it = streams_.find(ch);
  spdlog::debug("history: fill of {} after {}: {} with {} messages{}", ch, after,
                ok ? "ok" : "failed", frames.size(),
                it == streams_.end() || it->second.ep != ep ? " (stream gone)" : "");
  if (it == streams_.end() || it->second.ep != ep)
    return; // the stream ended or started again meanwhile
  it->second.filling = false;
  if (!ok) { // the owner cannot vouch for what was missed
    bump(metrics_.history_fill_failures, 1);
    return break_stream(ch, clock::now());
  }
  for (auto& f : frames) {
    it = streams_.find(ch);
    if (it == streams_.end())
      return;
    auto off = protocol::msg_offset(*f, ch.size());
    if (off <= it->second.last)
      continue;
    if (off != it->second.last + 1) {
      bump(metrics_.history_fill_failures, 1);
      return break_stream(ch, clock::now());
    }
    it->second.last = off;
    deliver_next(ch, f, off);
    bump(metrics_.history_filled, 1);
  }
  drain_ahead(ch);
  it = streams_.find(ch);
  if (it == streams_.end() || it->second.ahead.empty())
    return;
  if (it->second.last == after) { // no progress: the owner does not hold what is missing
    bump(metrics_.history_fill_failures, 1);
    return break_stream(ch, clock::now());
  }
  request_fill(ch, it->second);
}

std::string broker_core::encode_top(std::string_view ep, std::uint64_t term, std::uint64_t top) {
  std::string out{ep};
  out += "|#";
  out += std::to_string(term);
  out += ':';
  out += std::to_string(top);
  return out;
}

bool broker_core::split_top(std::string_view inner, std::uint64_t& term, std::uint64_t& top) {
  if (inner.empty() || inner[0] != '#')
    return false;
  auto colon = inner.find(':');
  if (colon == std::string_view::npos)
    return false;
  auto num = [](std::string_view d, std::uint64_t& out) {
    auto [p, ec] = std::from_chars(d.data(), d.data() + d.size(), out);
    return ec == std::errc{} && p == d.data() + d.size() && !d.empty();
  };
  return num(inner.substr(1, colon - 1), term) && num(inner.substr(colon + 1), top);
}

bool broker_core::split_ordered(const std::string& wire, std::string_view& ep, frame_ptr& frame) {
  auto bar = wire.find('|');
  if (bar == std::string::npos || bar == 0 || bar > protocol::max_epoch_length)
    return false;
  ep = std::string_view{wire}.substr(0, bar);
  frame = make_frame(wire.substr(bar + 1));
  return true;
}

std::vector<std::string> broker_core::history_channels() const {
  std::vector<std::string> out;
  out.reserve(streams_.size());
  for (const auto& [ch, s] : streams_)
    out.push_back(ch);
  return out;
}

} // namespace wsnode::actors
