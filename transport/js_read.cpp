// Reads of a channel's history in JetStream: its newest message by
// subject, then older ones by the stream sequences each message links to
// (up to 16 asked at once), newest first, until enough are read, the
// chain ends (older messages were dropped: history_size) or it reaches
// the epoch's marker. An empty channel gets its epoch, as its first
// append would give it.
#include "transport/js_store.hpp"

#include <algorithm>
#include <map>
#include <mutex>

namespace wsnode::transport::js {

namespace {

struct walk {
  std::mutex mu;
  std::string ch;
  std::uint64_t after = 0;
  std::size_t max_count = 0;
  history_engine::read_done done;
  clock::time_point deadline;
  engine_read_result result;
  std::map<std::uint64_t, engine_message> got; // by offset
  std::size_t outstanding = 0;
  bool ended = false; // nothing older to read
  bool failed = false;
  std::string next_links; // the links of the oldest message asked for
  std::uint64_t oldest_asked = 0;
  bool finished = false;
};
using walk_ptr = std::shared_ptr<walk>;

// How many messages the read returns at most: those above `after`.
std::size_t wanted(const walk& w) {
  return std::min<std::uint64_t>(w.max_count, w.result.top - std::min(w.after, w.result.top));
}

void finish(const walk_ptr& w, bool ok) {
  {
    std::lock_guard<std::mutex> g{w->mu};
    if (w->finished)
      return;
    w->finished = true;
    w->result.ok = ok;
    if (!ok) {
      w->result.error = unavailable;
    } else { // the newest `wanted`, oldest first
      auto keep = wanted(*w);
      for (auto it = w->got.rbegin(); it != w->got.rend() && w->result.messages.size() < keep; ++it)
        w->result.messages.push_back(std::move(it->second));
      std::reverse(w->result.messages.begin(), w->result.messages.end());
    }
  }
  w->done(std::move(w->result));
}

void read_more(const std::shared_ptr<store>& s, const walk_ptr& w);

// Keeps a record's messages above `after`. A record wsnode did not write,
// the epoch's marker, or one that reaches `after` ends the walk. Under w.mu.
void take(walk& w, std::optional<std::vector<engine_message>> msgs) {
  if (!msgs || msgs->empty() || msgs->front().off <= w.after + 1)
    w.ended = true;
  if (!msgs)
    return;
  for (auto& msg : *msgs)
    if (msg.off > w.after)
      w.got.emplace(msg.off, std::move(msg));
}

void read_top(const std::shared_ptr<store>& s, const walk_ptr& w) {
  const auto& n = *s->space_of(w->ch);
  s->direct_last(n.data_stream, s->data_subject(n, w->ch), w->deadline, [s, w](const reply& r) {
    if (r.status() == 404) {
      return s->write_marker(w->ch, w->deadline, [s, w](pub_ack a, std::string ep) {
        if (a.what == pub_ack::kind::ok) {
          w->result.ep = std::move(ep);
          return finish(w, true);
        }
        if (a.what == pub_ack::kind::wrong_last) // another writer made it
          return read_top(s, w);
        finish(w, false);
      });
    }
    auto last = s->parse_last(r);
    if (!last)
      return finish(w, false);
    {
      std::lock_guard<std::mutex> g{w->mu};
      w->result.ep = last->ep;
      w->result.top = last->off;
      if (wanted(*w) > 0) {
        take(*w, s->messages(r));
        w->next_links = last->links;
      }
    }
    read_more(s, w);
  });
}

void read_more(const std::shared_ptr<store>& s, const walk_ptr& w) {
  std::vector<std::uint64_t> seqs;
  {
    std::lock_guard<std::mutex> g{w->mu};
    auto want = wanted(*w);
    auto need = want - std::min(want, w->got.size());
    if (need > 0 && !w->ended) // no links: the chain ends
      seqs = split_links(w->next_links, std::min(need, prev_links));
    w->outstanding = seqs.size();
    w->oldest_asked = seqs.empty() ? 0 : seqs.back();
    w->next_links.clear();
  }
  if (seqs.empty())
    return finish(w, true);
  const auto& n = *s->space_of(w->ch);
  for (auto seq : seqs)
    s->direct_seq(n.data_stream, seq, w->deadline, [s, w, seq](const reply& r) {
      bool last_one = false;
      {
        std::lock_guard<std::mutex> g{w->mu};
        if (r.timed_out() || (r.status() != 0 && r.status() != 404)) {
          w->failed = true;
        } else if (r.status() == 404) {
          w->ended = true; // dropped (history_size): older ones are gone too
        } else {
          if (r.header(h_ep) != w->result.ep)
            w->ended = true; // an earlier epoch
          else
            take(*w, s->messages(r));
          if (seq == w->oldest_asked)
            w->next_links = std::string{r.header(h_prev)};
        }
        last_one = --w->outstanding == 0;
      }
      if (!last_one)
        return;
      if (w->failed)
        return finish(w, false);
      read_more(s, w);
    });
}

} // namespace

void read_channel(const std::shared_ptr<store>& s, const std::string& ch, std::uint64_t after,
                  std::size_t max_count, history_engine::read_done done) {
  auto w = std::make_shared<walk>();
  w->ch = ch;
  w->after = after;
  w->max_count = max_count;
  w->done = std::move(done);
  w->deadline = clock::now() + s->opts.timeout;
  read_top(s, w);
}

} // namespace wsnode::transport::js
