// `attn bench --op linear`: see linear_bench.hpp. All methods run on the same fp32 BHSD inputs per
// N, on the same threads, medians of `reps` timed runs after one warm-up.

#include "linear_bench.hpp"

#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>
#include <attn/error.hpp>
#include <attn/linear_attention.hpp>
#include <attn/sdpa.hpp>
#include <attn/sparse_attention.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>

#include "env.hpp"
#include "peak.hpp"
#include "sweep.hpp"

namespace attn::bench {
namespace {

enum class Method { linear_elu, linear_favor, exact, local, linear_elu_bwd, strided, local_strided };
constexpr Method kMethods[] = {Method::linear_elu, Method::linear_favor, Method::linear_elu_bwd, Method::local,
                               Method::strided,    Method::local_strided, Method::exact};

const char* method_name(Method m) {
  switch (m) {
    case Method::linear_elu: return "linear elu";
    case Method::linear_favor: return "linear favor";
    case Method::exact: return "exact sdpa";
    case Method::local: return "local w";
    case Method::linear_elu_bwd: return "linear elu bwd";
    case Method::strided: return "strided s";
    case Method::local_strided: return "local+strided s";
  }
  return "?";
}

struct Point {
  Method method;
  bool causal;
  std::int64_t N;
  double median_s, min_s, flops;
  double cpu_s;  // median process CPU time of one run (all threads)
};

double process_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Wall-clock median/min and the median process CPU time of `reps` runs after one warm-up. On a
// shared machine the CPU time shows what the threads reach while scheduled.
struct Timed {
  double median_s, min_s, cpu_s;
};
// One warm-up call, then `reps` timed calls. A warm-up of ≥ kLongCall seconds (exact SDPA at 32k
// and 64k) is itself the one sample: its first-touch costs are negligible at that length.
constexpr double kLongCall = 2.0;

Timed time_with_cpu(const std::function<void()>& fn, int reps) {
  std::vector<double> wall, cpu;
  {
    const double c0 = process_cpu_s();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s >= kLongCall) {
      wall.push_back(s);
      cpu.push_back(process_cpu_s() - c0);
      reps = 0;
    }
  }
  for (int r = 0; r < reps; ++r) {
    const double c0 = process_cpu_s();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(process_cpu_s() - c0);
  }
  auto median = [](std::vector<double> x) {
    std::sort(x.begin(), x.end());
    const std::size_t n = x.size();
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
  };
  return {median(wall), *std::min_element(wall.begin(), wall.end()), median(cpu)};
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::vector<float> r(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.5f);
  for (float& x : r) x = d(rng);
  return r;
}

// Least-squares slope of log t against log N.
double loglog_slope(const std::vector<std::pair<double, double>>& pts) {
  if (pts.size() < 2) return NAN;
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (auto [n, t] : pts) {
    const double x = std::log(n), y = std::log(t);
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double k = static_cast<double>(pts.size());
  return (k * sxy - sx * sy) / (k * sxx - sx * sx);
}

std::string label(Method m, bool causal, std::int64_t window, std::int64_t stride) {
  std::string s = method_name(m);
  if (m == Method::local) s += "=" + std::to_string(window);
  if (m == Method::strided || m == Method::local_strided) s += "=" + std::to_string(stride);
  if (m == Method::local_strided) s += " w=" + std::to_string(window);
  return s + (causal ? " causal" : "");
}

// Visible (query, key) pairs of strided attention with stride s and window w (|i − j| ≤ w, or
// 0 ≤ i − j ≤ w when causal; w < 0: none) on Nq = Nk = N, counted per query: the flops of its
// two products are 2·(D + Dv) per pair.
double strided_pairs(std::int64_t N, std::int64_t s, std::int64_t w, bool causal) {
  double total = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    std::int64_t n = causal ? i / s + 1 : (N - 1 - i % s) / s + 1;  // strided keys
    if (w >= 0) {
      const std::int64_t lo = std::max<std::int64_t>(0, i - w), hi = causal ? i : std::min(N - 1, i + w);
      n += hi - lo + 1;                                                    // window keys
      for (std::int64_t j = i - (i - lo) / s * s; j <= hi; j += s) --n;  // both: counted once
    }
    total += static_cast<double>(n);
  }
  return total;
}

void write_plot(const std::vector<Point>& pts, const LinearBenchOptions& opt, const std::string& title) {
  const std::string& png = opt.plot_path;
  if (png.find_first_of("'\"\n") != std::string::npos)
    throw Error(ErrorKind::value, "--plot", "= " + png + ", expected a file name without quotes or newlines");
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    throw Error(ErrorKind::system, "--plot",
                "needs gnuplot, which was not found, expected it on PATH (Debian package gnuplot-nox)");
  std::map<bool, std::map<std::string, std::map<std::int64_t, double>>> panels;
  for (const Point& p : pts) panels[p.causal][label(p.method, p.causal, opt.window, opt.stride)][p.N] = p.median_s * 1e3;
  std::ostringstream gp;
  gp << "set terminal pngcairo size 1500,600 noenhanced font ',10'\nset output '" << png << "'\n";
  int block = 0;
  for (const auto& [causal, series] : panels)
    for (const auto& [name, points] : series) {
      gp << "$s" << block++ << " << EOD\n";
      for (const auto& [n, ms] : points) gp << n << " " << ms << "\n";
      gp << "EOD\n";
    }
  gp << "set multiplot layout 1,2 title '" << title << "'\n"
     << "set logscale xy 2\nset xlabel 'N (Nq = Nk)'\nset ylabel 'ms (median)'\nset grid\nset key left top\n";
  block = 0;
  for (const auto& [causal, series] : panels) {
    gp << "set title '" << (causal ? "causal" : "non-causal") << "'\nplot ";
    bool first = true;
    for (const auto& [name, points] : series) {
      gp << (first ? "" : ", ") << "$s" << block++ << " using 1:2 with linespoints lw 2 ps 0.8 title '" << name << "'";
      first = false;
    }
    gp << "\n";
  }
  gp << "unset multiplot\n";
  char script[] = "/tmp/attn_linear_plot_XXXXXX";
  const int fd = mkstemp(script);
  if (fd < 0)
    throw Error(ErrorKind::system, "--plot",
                "could not create a temporary gnuplot script, expected a writable temporary directory");
  close(fd);
  { std::ofstream(script) << gp.str(); }
  const int rc = std::system((std::string("gnuplot '") + script + "' 2>&1").c_str());
  std::remove(script);
  if (rc != 0)
    throw Error(ErrorKind::system, "--plot",
                "gnuplot exited with status " + std::to_string(rc) + " writing " + png + ", expected 0");
}

}  // namespace

void run_linear_bench(const LinearBenchOptions& opt, std::FILE* out) {
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  const MachineInfo machine = machine_info(threads);
  const PeakResult peak = fma_peak(threads, 5, 0.2);
  const std::int64_t B = opt.B, H = opt.H, D = opt.D, Dv = opt.Dv;
  const std::int64_t m =
      opt.favor_m > 0 ? opt.favor_m : static_cast<std::int64_t>(std::ceil(D * std::log(static_cast<double>(D))));
  std::vector<float> omega(static_cast<std::size_t>(m * D));
  favor_projection(TensorView(omega.data(), DType::f32, {m, D}), 2024);

  std::fprintf(
      out,
      "linear attention vs exact and local SDPA, forward (and the elu backward): B=%lld H=%lld D=Dv=%lld fp32, "
      "FAVOR+ m=%lld, local w=%lld\n%s, attn isa %s, %d threads (%s), fp32 FMA peak %.1f GFLOP/s (median %.1f)\n\n",
      static_cast<long long>(B), static_cast<long long>(H), static_cast<long long>(D), static_cast<long long>(m),
      static_cast<long long>(opt.window), machine.cpu.c_str(), machine.isa.c_str(), threads,
      machine.pinned ? "pinned" : "not pinned", peak.best_gflops, peak.median_gflops);
  std::fprintf(out,
               "(GFLOP/s by wall clock against the peak's best; cpu-time GFLOP/s = flops · threads / process CPU "
               "time, against the peak's cpu-time rate %.1f GFLOP/s)\n",
               peak.cpu_time_gflops);
  std::fprintf(out, "%-22s %7s %12s %10s %8s %12s %8s\n", "method", "N", "ms (median)", "GFLOP/s", "% peak",
               "cpu GFLOP/s", "% peak");

  std::vector<Point> pts;
  double rss_before = 0, rss_after = 0;
  const std::int64_t n_max = *std::max_element(opt.lengths.begin(), opt.lengths.end());
  for (std::int64_t N : opt.lengths) {
    const auto nq = static_cast<std::size_t>(B * H * N * D), nv = static_cast<std::size_t>(B * H * N * Dv);
    std::vector<float> q = random_floats(nq, 1), k = random_floats(nq, 2), v = random_floats(nv, 3), o(nv),
                       den(static_cast<std::size_t>(B * H * N)), dq(nq), dk(nq), dv(nv);
    const TensorView qv(q.data(), DType::f32, {B, H, N, D}), kv(k.data(), DType::f32, {B, H, N, D}),
        vv(v.data(), DType::f32, {B, H, N, Dv}), ov(o.data(), DType::f32, {B, H, N, Dv}),
        dnv(den.data(), DType::f32, {B, H, N}), dqv(dq.data(), DType::f32, {B, H, N, D}),
        dkv(dk.data(), DType::f32, {B, H, N, D}), dvv(dv.data(), DType::f32, {B, H, N, Dv});
    if (N == n_max) rss_before = peak_rss_mib();
    for (bool causal : {false, true})
      for (Method method : kMethods) {
        if (method == Method::exact && N > opt.exact_max_n) continue;
        if (!opt.only.empty()) {
          const char* family = method == Method::exact                                       ? "exact"
                               : method == Method::local                                     ? "local"
                               : method == Method::strided || method == Method::local_strided ? "strided"
                                                                                              : "linear";
          if (std::find(opt.only.begin(), opt.only.end(), family) == opt.only.end()) continue;
        }
        std::function<void()> fn;
        LinearAttentionParams lp;
        lp.mask.causal = causal;
        lp.num_threads = threads;
        SdpaParams sp;
        sp.mask.causal = causal;
        sp.num_threads = threads;
        sp.backend = Backend::cpu;
        double flops = 0;
        const double pairs = causal ? static_cast<double>(N) * static_cast<double>(N + 1) / 2
                                    : static_cast<double>(N) * static_cast<double>(N);
        const double bh = static_cast<double>(B * H);
        switch (method) {
          case Method::linear_elu:
            flops = 4.0 * bh * static_cast<double>(N * D * Dv);
            fn = [&, lp] { linear_attention_forward({ov, dnv}, qv, kv, vv, lp); };
            break;
          case Method::linear_favor:
            lp.feature_map = FeatureMap::favor;
            lp.projection = TensorView(omega.data(), DType::f32, {m, D});
            flops = 4.0 * bh * static_cast<double>(N * m * Dv) + 4.0 * bh * static_cast<double>(N * D * m);
            fn = [&, lp] { linear_attention_forward({ov, dnv}, qv, kv, vv, lp); };
            break;
          case Method::linear_elu_bwd:
            linear_attention_forward({ov, dnv}, qv, kv, vv, lp);
            flops = 8.0 * bh * static_cast<double>(N * D * Dv);  // the forward's two products, twice
            fn = [&, lp] { linear_attention_backward({dqv, dkv, dvv}, vv, qv, kv, vv, ov, dnv, lp); };
            break;
          case Method::exact:
            flops = 2.0 * bh * pairs * static_cast<double>(D + Dv);
            fn = [&, sp] { sdpa_forward({ov, {}, {}}, qv, kv, vv, sp); };
            break;
          case Method::strided:
          case Method::local_strided: {
            StridedAttentionParams st;
            st.stride = opt.stride;
            st.causal = causal;
            st.num_threads = threads;
            // The union's window: w/2 each side, or the w − 1 before when causal (as local's).
            const std::int64_t w = method == Method::strided ? -1 : causal ? opt.window - 1 : opt.window / 2;
            st.window = std::max<std::int64_t>(w, 0);
            flops = 2.0 * bh * strided_pairs(N, opt.stride, w, causal) * static_cast<double>(D + Dv);
            fn = [&, st] { strided_attention_forward({ov, {}, {}}, qv, kv, vv, st); };
            break;
          }
          case Method::local: {
            // w keys per query: w/2 each side, or the w − 1 before and itself when causal.
            sp.mask.window_left = causal ? opt.window - 1 : opt.window / 2;
            sp.mask.window_right = causal ? 0 : opt.window / 2;
            double vis = 0;
            for (std::int64_t i = 0; i < N; ++i)
              vis += static_cast<double>(std::min(N - 1, i + sp.mask.window_right) -
                                         std::max<std::int64_t>(0, i - sp.mask.window_left) + 1);
            flops = 2.0 * bh * vis * static_cast<double>(D + Dv);
            fn = [&, sp] { sdpa_forward({ov, {}, {}}, qv, kv, vv, sp); };
            break;
          }
        }
        const Timed t = time_with_cpu(fn, opt.reps);
        pts.push_back({method, causal, N, t.median_s, t.min_s, flops, t.cpu_s});
        const double gf = flops / t.median_s * 1e-9, gf_cpu = flops * threads / t.cpu_s * 1e-9;
        std::fprintf(out, "%-22s %7lld %12.3f %10.1f %7.1f%% %12.1f %7.1f%%\n",
                     label(method, causal, opt.window, opt.stride).c_str(), static_cast<long long>(N), t.median_s * 1e3, gf,
                     100 * gf / peak.best_gflops, gf_cpu, 100 * gf_cpu / peak.cpu_time_gflops);
        std::fflush(out);
      }
    if (N == n_max) rss_after = peak_rss_mib();
  }

  // Summary: slopes, crossovers, causal linear vs peak, memory.
  std::fprintf(out, "\n%-22s %14s %14s %26s\n", "method", "slope (wall)", "slope (cpu)", "beats exact sdpa from N =");
  nlohmann::json summary = nlohmann::json::array();
  for (bool causal : {false, true})
    for (Method method : kMethods) {
      std::vector<std::pair<double, double>> fit, fit_cpu;
      for (const Point& p : pts)
        if (p.method == method && p.causal == causal) {
          fit.emplace_back(static_cast<double>(p.N), p.median_s);
          fit_cpu.emplace_back(static_cast<double>(p.N), p.cpu_s);
        }
      if (fit.empty()) continue;
      const double slope = loglog_slope(fit), slope_cpu = loglog_slope(fit_cpu);
      std::string beats = "-";
      if (method != Method::exact && method != Method::linear_elu_bwd) {
        beats = "not within measured N";
        for (const Point& e : pts) {
          if (e.method != Method::exact || e.causal != causal) continue;
          auto it = std::find_if(pts.begin(), pts.end(), [&](const Point& p) {
            return p.method == method && p.causal == causal && p.N == e.N;
          });
          if (it != pts.end() && it->median_s < e.median_s) {
            beats = (e.N == opt.lengths.front() ? "<= " : "") + std::to_string(e.N);
            break;
          }
        }
      }
      std::fprintf(out, "%-22s %14.3f %14.3f %26s\n", label(method, causal, opt.window, opt.stride).c_str(), slope, slope_cpu,
                   beats.c_str());
      summary.push_back({{"method", label(method, causal, opt.window, opt.stride)},
                         {"slope", slope},
                         {"slope_cpu_time", slope_cpu},
                         {"beats_exact_from", beats}});
    }
  std::fprintf(out, "\ncausal linear elu, 4·B·H·N·D·Dv flops, against the fp32 FMA peak (%.1f GFLOP/s):\n",
               peak.best_gflops);
  for (const Point& p : pts)
    if (p.method == Method::linear_elu && p.causal)
      std::fprintf(out, "  N=%-6lld %6.1f GFLOP/s = %5.1f%% of peak (wall clock); %6.1f GFLOP/s = %5.1f%% (cpu time)\n",
                   static_cast<long long>(p.N), p.flops / p.median_s * 1e-9,
                   100 * p.flops / p.median_s * 1e-9 / peak.best_gflops, p.flops * threads / p.cpu_s * 1e-9,
                   100 * p.flops * threads / p.cpu_s * 1e-9 / peak.cpu_time_gflops);
  const double inputs_mib = 4.0 * static_cast<double>(B * H * n_max * (3 * D + 3 * Dv + 1)) / (1024.0 * 1024.0);
  std::fprintf(
      out,
      "\nmemory at N=%lld: peak RSS %.1f MiB before the first call at this N, %.1f MiB after every method at it "
      "(inputs, outputs and gradients of this N: %.1f MiB; one [N, N] fp32 score matrix would be %.1f MiB)\n",
      static_cast<long long>(n_max), rss_before, rss_after, inputs_mib,
      4.0 * static_cast<double>(n_max) * static_cast<double>(n_max) / (1024.0 * 1024.0));

  if (!opt.json_path.empty()) {
    nlohmann::json j = {{"op", "linear"},
                        {"cpu", machine.cpu},
                        {"isa", machine.isa},
                        {"threads", threads},
                        {"pinned", machine.pinned},
                        {"fma_peak_gflops", peak.best_gflops},
                        {"fma_peak_cpu_time_gflops", peak.cpu_time_gflops},
                        {"B", B},
                        {"H", H},
                        {"D", D},
                        {"Dv", Dv},
                        {"favor_m", m},
                        {"window", opt.window},
                        {"reps", opt.reps},
                        {"rss_mib_before_nmax", rss_before},
                        {"rss_mib_after_nmax", rss_after},
                        {"summary", summary}};
    nlohmann::json rows = nlohmann::json::array();
    for (const Point& p : pts)
      rows.push_back({{"method", method_name(p.method)},
                      {"causal", p.causal},
                      {"N", p.N},
                      {"median_s", p.median_s},
                      {"min_s", p.min_s},
                      {"cpu_s", p.cpu_s},
                      {"gflops", p.flops / p.median_s * 1e-9},
                      {"cpu_time_gflops", p.flops * threads / p.cpu_s * 1e-9}});
    j["results"] = rows;
    std::ofstream f(opt.json_path);
    f << j.dump(2) << "\n";
    if (!f) throw Error(ErrorKind::system, "--json", "= " + opt.json_path + ", which cannot be written, expected a writable path");
    std::fprintf(out, "wrote %s\n", opt.json_path.c_str());
  }
  if (!opt.plot_path.empty()) {
    std::ostringstream title;
    title << "attn bench --op linear: B=" << B << " H=" << H << " D=" << D << " fp32, " << machine.cpu << ", "
          << threads << " threads";
    write_plot(pts, opt, title.str());
    std::fprintf(out, "wrote %s\n", opt.plot_path.c_str());
  }
}

}  // namespace attn::bench
