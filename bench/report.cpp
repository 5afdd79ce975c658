#include "bench/report.hpp"

#include <fmt/format.h>

#include <ctime>
#include <fstream>
#include <sstream>
#include <sys/resource.h>
#include <unistd.h>

namespace wsnode::bench {

proc_sample sample_processes(const std::vector<int>& pids) {
  proc_sample s;
  static const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (int pid : pids) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (std::getline(stat, line)) {
      // fields after the ")" that ends the command name: state is field 3
      auto rp = line.rfind(')');
      std::istringstream in(line.substr(rp + 2));
      std::string field;
      double utime = 0, stime = 0;
      for (int i = 3; i <= 15 && (in >> field); ++i) {
        if (i == 14)
          utime = std::stod(field);
        if (i == 15)
          stime = std::stod(field);
      }
      s.cpu_s += (utime + stime) / tick;
    }
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) {
        s.rss_bytes += std::stoull(line.substr(6)) * 1024;
        break;
      }
    }
  }
  return s;
}

double self_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::uint64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string to_json(const result& r) {
  const auto& h = r.latency;
  std::string curve = "[";
  for (const auto& [n, rss] : r.rss_curve)
    curve += fmt::format("{}[{},{}]", curve.size() > 1 ? "," : "", n, rss);
  curve += "]";
  return fmt::format(
      R"({{"scenario":"{}","protocol":"{}","target":"{}","connections":{},"connect_failures":{},)"
      R"("connect_seconds":{:.3f},"connect_rate":{:.1f},"published":{},"expected":{},"delivered":{},)"
      R"("lost":{},"duplicates":{},"errors":{},"seconds":{:.3f},"offered_rate":{},"payload":{},)"
      R"("delivered_per_s":{:.1f},"latency_us":{{"p50":{},"p90":{},"p99":{},"p999":{},"max":{},)"
      R"("mean":{:.1f}}},"server_cpu_s":{:.3f},"bench_cpu_s":{:.3f},"delivered_per_server_cpu_s":{:.1f},)"
      R"("server_rss_before":{},"server_rss_after":{},"rss_per_connection":{:.1f},"rss_curve":{},)"
      R"("bound":"{}","client_reads":{},"client_read_bytes":{},"bytes_per_client_read":{:.1f},)"
      R"("deliveries_per_client_read":{:.3f},"client_us_per_delivery":{:.3f}}})",
      r.scenario, r.protocol, r.target, r.connections, r.connect_failures, r.connect_seconds,
      r.connect_seconds > 0 ? double(r.connections) / r.connect_seconds : 0.0, r.published,
      r.expected, r.delivered, r.lost, r.duplicates, r.errors, r.seconds, r.offered_rate, r.payload,
      r.delivered_per_s(), h.quantile(0.5), h.quantile(0.9), h.quantile(0.99), h.quantile(0.999),
      h.max(), h.mean(), r.server_cpu_s, r.bench_cpu_s, r.per_server_core(), r.server_rss_before,
      r.server_rss_after, r.rss_per_connection(), curve, r.bound, r.client_reads,
      r.client_read_bytes, r.bytes_per_client_read(), r.deliveries_per_client_read(),
      r.client_us_per_delivery());
}

std::string to_table(const result& r) {
  const auto& h = r.latency;
  std::string out = fmt::format("wsbench {} against {} ({})\n", r.scenario, r.target, r.protocol);
  auto row = [&](std::string_view k, const std::string& v) {
    out += fmt::format("  {:<28} {}\n", k, v);
  };
  row("connections", fmt::format("{} ({} failed) in {:.2f} s = {:.0f}/s", r.connections,
                                 r.connect_failures, r.connect_seconds,
                                 r.connect_seconds > 0 ? r.connections / r.connect_seconds : 0));
  if (r.published > 0 || r.expected > 0) {
    row("published", fmt::format("{} x {} B{}", r.published, r.payload,
                                 r.offered_rate > 0 ? fmt::format(" at {}/s", r.offered_rate)
                                                    : fmt::format(" ({}-bounded window)", r.bound)));
    row("delivered", fmt::format("{} of {} in {:.2f} s = {:.0f} msgs/s", r.delivered, r.expected,
                                 r.seconds, r.delivered_per_s()));
    row("lost / duplicates / errors", fmt::format("{} / {} / {}", r.lost, r.duplicates, r.errors));
    row("latency us p50/p90/p99/p999",
        fmt::format("{} / {} / {} / {} (max {})", h.quantile(0.5), h.quantile(0.9),
                    h.quantile(0.99), h.quantile(0.999), h.max()));
  }
  row("server CPU", fmt::format("{:.2f} s ({:.0f} deliveries per server CPU second)",
                                r.server_cpu_s, r.per_server_core()));
  row("wsbench CPU", fmt::format("{:.2f} s ({:.2f} us per delivery)", r.bench_cpu_s,
                                 r.client_us_per_delivery()));
  if (r.client_reads > 0)
    row("client reads", fmt::format("{} ({:.0f} bytes, {:.2f} deliveries per read)", r.client_reads,
                                    r.bytes_per_client_read(), r.deliveries_per_client_read()));
  if (r.server_rss_after > 0)
    row("server RSS", fmt::format("{:.1f} MiB -> {:.1f} MiB ({:.2f} KiB per connection)",
                                  r.server_rss_before / 1048576.0, r.server_rss_after / 1048576.0,
                                  r.rss_per_connection() / 1024));
  return out;
}

} // namespace wsnode::bench
