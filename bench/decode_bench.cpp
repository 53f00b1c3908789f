// The decode benchmark (see decode_bench.hpp). Cache bytes read per call:
//   Σ_b len_b · Hkv · (D + Dv) · sizeof(element)  (+ 2 fp32 scales per token and head for i8).

#include "decode_bench.hpp"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace attn::bench {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t llc_bytes() {
  std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index3/size");
  std::string s;
  if (f >> s && !s.empty()) {
    std::int64_t v = std::stoll(s);
    if (s.back() == 'K') v <<= 10;
    if (s.back() == 'M') v <<= 20;
    if (v > 0) return v;
  }
  const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return v > 0 ? v : (std::int64_t{32} << 20);
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

int thread_count(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

/// Pins OpenMP thread t to CPU t (mod the CPUs available); the pool keeps its threads, so later
/// parallel regions with the same count run pinned too.
void pin_threads(int threads) {
#pragma omp parallel num_threads(threads)
  {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(omp_get_thread_num() % std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)), &set);
    sched_setaffinity(0, sizeof(set), &set);
  }
}

/// Reads `n` words in parallel (static partition); returns a checksum so the reads stay.
std::uint64_t stream_read(const std::uint64_t* p, std::int64_t n, int threads) {
  std::uint64_t x = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(^ : x)
  for (std::int64_t i = 0; i < n; ++i) x ^= p[i];
  return x;
}

struct Buffer {
  std::unique_ptr<std::uint64_t[]> data;
  std::int64_t words = 0;
  explicit Buffer(std::int64_t bytes) : data(new std::uint64_t[static_cast<std::size_t>(bytes / 8)]), words(bytes / 8) {
    for (std::int64_t i = 0; i < words; ++i) data[i] = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull;
  }
};

std::uint64_t g_sink = 0;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

KvCache make_cache(const DecodeBenchOptions& o, std::int64_t B, std::int64_t Nk, DType dtype, KvLayout layout) {
  KvCacheConfig cfg;
  cfg.batch = B;
  cfg.kv_heads = o.Hkv;
  cfg.head_dim = o.D;
  cfg.capacity = Nk;
  cfg.dtype = dtype;
  cfg.layout = layout;
  KvCache cache(cfg);
  const std::int64_t step = 1024;
  std::vector<float> k(static_cast<std::size_t>(B * o.Hkv * step * o.D));
  std::uint32_t state = 12345;
  for (float& x : k) {
    state = state * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<std::int32_t>(state >> 8) - (1 << 23)) / static_cast<float>(1 << 23);
  }
  const TensorView kv(k.data(), DType::f32, {B, o.Hkv, step, o.D});
  for (std::int64_t t = 0; t < Nk; t += step) {
    std::vector<std::int64_t> counts(static_cast<std::size_t>(B), std::min(step, Nk - t));
    cache.append(kv, kv, {}, counts);
  }
  return cache;
}

void write_json(const DecodeBenchOptions& o, double bw, int threads, const std::vector<DecodeBenchResult>& rs) {
  std::ofstream f(o.json_path);
  f << "{\n  \"machine\": {\"cpu\": \"" << cpu_model() << "\", \"threads\": " << threads
    << ", \"threads_pinned\": true, \"llc_bytes\": " << llc_bytes() << ", \"cold_cache\": " << (o.cold ? "true" : "false")
    << "},\n  \"baselines\": {\"read_bandwidth_gbps\": " << bw << "},\n  \"results\": [\n";
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const DecodeBenchResult& r = rs[i];
    f << "    {\"op\": \"decode\", \"cache_dtype\": \"" << r.cache_dtype << "\", \"layout\": \"" << r.layout
      << "\", \"B\": " << r.B << ", \"Hq\": " << r.Hq << ", \"Hkv\": " << r.Hkv << ", \"Nk\": " << r.Nk
      << ", \"D\": " << r.D << ", \"Nq\": 1, \"ms_median\": " << r.ms_median << ", \"gbps\": " << r.gbps
      << ", \"fraction_of_bandwidth\": " << r.fraction_of_bandwidth << "}" << (i + 1 < rs.size() ? "," : "") << "\n";
  }
  f << "  ]\n}\n";
}

}  // namespace

double measure_read_bandwidth_gbps(int threads) {
  threads = thread_count(threads);
  pin_threads(threads);
  const std::int64_t bytes = std::max<std::int64_t>(std::int64_t{1} << 30, 8 * llc_bytes());
  Buffer buf(bytes);
  std::vector<double> gbps;
  for (int rep = 0; rep < 7; ++rep) {
    const auto t0 = Clock::now();
    g_sink ^= stream_read(buf.data.get(), buf.words, threads);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rep > 0) gbps.push_back(static_cast<double>(bytes) / s * 1e-9);
  }
  return median(gbps);
}

std::vector<DecodeBenchResult> run_decode_bench(const DecodeBenchOptions& o, std::FILE* out) {
  const int threads = thread_count(o.threads);
  const double bw = measure_read_bandwidth_gbps(threads);
  Buffer flush(std::max<std::int64_t>(2 * llc_bytes(), std::int64_t{64} << 20));
  std::fprintf(out, "decode bench: %s, %d threads (pinned), %s cache, LLC %lld MiB\n", cpu_model().c_str(), threads,
               o.cold ? "cold" : "warm", static_cast<long long>(llc_bytes() >> 20));
  std::fprintf(out, "read bandwidth (streaming read, same run): %.1f GB/s\n\n", bw);
  std::fprintf(out, "%-5s %-10s %3s %6s %9s %8s %7s %6s\n", "dtype", "layout", "B", "Nk", "cache MB", "ms", "GB/s", "of bw");
  std::vector<DecodeBenchResult> results;
  for (std::int64_t B : o.batches)
    for (std::int64_t Nk : o.lengths)
      for (DType dtype : o.dtypes)
        for (KvLayout layout : o.layouts) {
          const double es = static_cast<double>(dtype_size(dtype));
          const double bytes = static_cast<double>(B * o.Hkv * Nk) * (2.0 * static_cast<double>(o.D) * es +
                                                                     (dtype == DType::i8 ? 8.0 : 0.0));
          if (bytes > o.max_cache_gb * 1e9) {
            std::fprintf(out, "%-5s %-10s %3lld %6lld   skipped: cache of %.1f GB > --max-cache-gb\n", dtype_name(dtype),
                         kv_layout_name(layout), static_cast<long long>(B), static_cast<long long>(Nk), bytes * 1e-9);
            continue;
          }
          const KvCache cache = make_cache(o, B, Nk, dtype, layout);
          std::vector<float> q(static_cast<std::size_t>(B * o.Hq * o.D), 0.01f), outb(q.size());
          const TensorView qv(q.data(), DType::f32, {B, o.Hq, 1, o.D}), ov(outb.data(), DType::f32, {B, o.Hq, 1, o.D});
          DecodeParams dp;
          dp.num_threads = threads;
          std::vector<double> ms;
          for (int rep = 0; rep <= o.repeats; ++rep) {
            if (o.cold) g_sink ^= stream_read(flush.data.get(), flush.words, threads);
            const auto t0 = Clock::now();
            decode(ov, qv, cache, dp);
            const double t = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            if (rep > 0) ms.push_back(t);  // the first call warms the pool and the page tables
          }
          DecodeBenchResult r{dtype_name(dtype), kv_layout_name(layout), B, o.Hq, o.Hkv, Nk, o.D, median(ms), 0, 0};
          r.gbps = bytes / (r.ms_median * 1e-3) * 1e-9;
          r.fraction_of_bandwidth = r.gbps / bw;
          std::fprintf(out, "%-5s %-10s %3lld %6lld %9.1f %8.3f %7.1f %5.0f%%\n", r.cache_dtype.c_str(), r.layout.c_str(),
                       static_cast<long long>(B), static_cast<long long>(Nk), bytes * 1e-6, r.ms_median, r.gbps,
                       100.0 * r.fraction_of_bandwidth);
          std::fflush(out);
          results.push_back(r);
        }
  if (!o.json_path.empty()) write_json(o, bw, threads, results);
  std::fprintf(out, "(checksum %llu)\n", static_cast<unsigned long long>(g_sink & 1));
  return results;
}

}  // namespace attn::bench
