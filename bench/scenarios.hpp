// The benchmark scenarios: idle, fanout, danmaku, chat.
#pragma once

#include "bench/engine.hpp"
#include "bench/report.hpp"

#include <string>
#include <vector>

namespace wsnode::bench {

struct scenario_options {
  engine_options eng;
  std::string target;             ///< for the report
  std::size_t connections = 1000; ///< idle: connections; fanout/danmaku: subscribers
  std::size_t messages = 1000;    ///< fanout: messages to publish
  std::size_t size = 100;         ///< payload bytes
  double rate = 0;                ///< publishes/s in total (0: as fast as the window allows)
  std::size_t window = 64;        ///< publishes in flight (see delivery_bound)
  bool delivery_bound = false;    ///< fanout: in flight = not yet delivered to every subscriber (else: not yet acknowledged)
  std::size_t rooms = 100;        ///< danmaku
  double zipf_s = 1.0;            ///< danmaku audience skew
  std::size_t publishers = 10;    ///< danmaku
  std::size_t pairs = 100;        ///< chat
  double duration_s = 10;         ///< danmaku/chat publishing time
  double hold_s = 0;              ///< idle: seconds to hold the connections
  std::string channel;            ///< idle: one channel for all (default: 100 channels)
  std::string user_prefix = "idle"; ///< idle: user ids are PREFIX0, PREFIX1, ...
  std::uint64_t expect = 0;       ///< idle: stop holding once this many messages arrived
  double drain_s = 5;           ///< give up waiting for deliveries after this long without progress
  bool http_publish = false;    ///< wsnode: publish over /api/publish
  bool split_nodes = false;     ///< chat: partners on different nodes (wsnode behind nginx)
  bool progress = false;        ///< a progress line on stderr
  std::vector<int> server_pids; ///< processes whose CPU and RSS count as the server's
};

result run_idle(const scenario_options& o);
result run_fanout(const scenario_options& o);
result run_danmaku(const scenario_options& o);
result run_chat(const scenario_options& o);

} // namespace wsnode::bench
