// Baseline measurement and the output forms of a run (report.hpp).

#include "report.hpp"

#include <attn/error.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "baselines.hpp"
#include "naive_softmax.hpp"

namespace attn::bench {

Baselines measure_baselines(int threads, int reps, bool small) {
  Baselines b;
  const double seconds = small ? 0.02 : 0.25;
  const int peak_reps = std::max(reps, 3);
  b.fma = fma_peak(threads, peak_reps, seconds);
  b.bf16 = bf16_peak(threads, peak_reps, seconds);
  b.amx = amx_peak(threads, peak_reps, seconds);
  b.sgemm_n = small ? 256 : 2048;
  b.sgemm_gflops = sgemm_gflops(b.sgemm_n, threads, std::max(reps, 3));
  const char* name = "";
  best_softmax_rows(&name);
  b.naive_softmax_isa = name;
  return b;
}

double naive_gflops_for(const Report& report, const Shape& shape, Op op) {
  for (const Result& r : report.results)
    if (r.c.impl == Impl::naive_blas && r.c.op == op && r.c.shape.name() == shape.name()) return r.gflops;
  return 0;
}

nlohmann::json to_json(const Report& report) {
  using nlohmann::json;
  const MachineInfo& m = report.machine;
  const Baselines& b = report.baselines;
  json out;
  out["machine"] = {{"cpu", m.cpu},
                    {"isa", m.isa},
                    {"compiled_isas", m.compiled_isas},
                    {"threads", m.threads},
                    {"openblas_core", m.openblas_core},
                    {"openblas_coretype_env", m.openblas_coretype_env},
                    {"omp_proc_bind", m.omp_proc_bind},
                    {"omp_places", m.omp_places},
                    {"pinned", m.pinned}};
  out["baselines"] = {{"fma_peak_gflops", b.fma.best_gflops},
                      {"fma_peak_median_gflops", b.fma.median_gflops},
                      {"fma_peak_cpu_time_gflops", b.fma.cpu_time_gflops},
                      {"fma_peak_vector", b.fma.vector},
                      {"fma_peak_chains_per_thread", kPeakChains},
                      {"bf16_peak_gflops", b.bf16 ? json(b.bf16->best_gflops) : json(nullptr)},
                      {"amx_peak_gflops", b.amx ? json(b.amx->best_gflops) : json(nullptr)},
                      {"sgemm_gflops", b.sgemm_gflops},
                      {"sgemm_n", b.sgemm_n},
                      {"naive_softmax_isa", b.naive_softmax_isa}};
  out["machine"]["cpu_share_during_peak"] =
      b.fma.cpu_time_gflops > 0 ? b.fma.best_gflops / b.fma.cpu_time_gflops : 1.0;  // < 1: other load
  out["settings"] = {{"shapes", report.shapes}, {"reps", report.reps}, {"warmup", report.warmup},
                     {"timing", "wall clock, median of reps after warm-up"},
                     {"op", op_name(report.op)},
                     {"flops", report.op == Op::fwd ? "2*B*Hq*(visible pairs)*(D+Dv); causal pairs = N(N+1)/2"
                               : report.op == Op::bwd
                                   ? "2.5 * forward flops, forward = 2*B*Hq*(visible pairs)*(D+Dv); causal pairs = N(N+1)/2"
                                   : "3.5 * forward flops (forward + backward), forward = 2*B*Hq*(visible pairs)*(D+Dv); "
                                     "causal pairs = N(N+1)/2"}};
  json results = json::array();
  for (const Result& r : report.results) {
    const Shape& s = r.c.shape;
    const double naive = naive_gflops_for(report, s, r.c.op);
    results.push_back({{"op", op_name(r.c.op)},
                       {"backend", impl_name(r.c.impl)},
                       {"dtype", dtype_name(r.c.dtype)},
                       {"B", s.B}, {"Hq", s.Hq}, {"Hkv", s.Hkv}, {"Nq", s.Nq}, {"Nk", s.Nk}, {"D", s.D}, {"Dv", s.Dv},
                       {"causal", s.causal},
                       {"ms_median", r.timing.median_s * 1e3},
                       {"ms_min", r.timing.min_s * 1e3},
                       {"gflops", r.gflops},
                       {"pct_fma_peak", b.fma.best_gflops > 0 ? 100.0 * r.gflops / b.fma.best_gflops : 0.0},
                       {"pct_amx_peak", b.amx && r.c.dtype == DType::bf16 ? json(100.0 * r.gflops / b.amx->best_gflops)
                                                                           : json(nullptr)},
                       {"ratio_vs_naive", r.c.impl == Impl::cpu && naive > 0 ? json(r.gflops / naive) : json(nullptr)},
                       {"max_abs_diff_vs_naive",
                        r.max_abs_diff_vs_naive >= 0 ? json(r.max_abs_diff_vs_naive) : json(nullptr)}});
  }
  out["results"] = std::move(results);
  return out;
}

std::string format_table(const Report& report) {
  const MachineInfo& m = report.machine;
  const Baselines& b = report.baselines;
  std::ostringstream os;
  char line[256];
  os << "machine: " << m.cpu << ", " << m.threads << " threads" << (m.pinned ? " pinned" : " NOT pinned") << " ("
     << "OMP_PROC_BIND=" << m.omp_proc_bind << " OMP_PLACES=" << m.omp_places << "), attn isa " << m.isa
     << ", OpenBLAS core " << m.openblas_core << "\n";
  std::snprintf(line, sizeof line,
                "fp32 FMA peak %.1f GFLOP/s (%s, %d chains/thread; median %.1f, by thread CPU time %.1f)",
                b.fma.best_gflops, b.fma.vector.c_str(), kPeakChains, b.fma.median_gflops, b.fma.cpu_time_gflops);
  os << line;
  if (b.bf16) {
    std::snprintf(line, sizeof line, ", bf16 vdpbf16ps peak %.1f", b.bf16->best_gflops);
    os << line;
  }
  if (b.amx) {
    std::snprintf(line, sizeof line, ", AMX tdpbf16ps peak %.1f (4 accumulator tiles/thread)", b.amx->best_gflops);
    os << line;
  }
  std::snprintf(line, sizeof line, ", sgemm %lld^3 %.1f GFLOP/s (%.0f%% of peak)\n\n",
                static_cast<long long>(b.sgemm_n), b.sgemm_gflops,
                b.fma.best_gflops > 0 ? 100.0 * b.sgemm_gflops / b.fma.best_gflops : 0.0);
  os << line;
  const double busy = b.fma.cpu_time_gflops > 0 ? b.fma.best_gflops / b.fma.cpu_time_gflops : 1.0;
  if (busy < 0.8) {
    std::snprintf(line, sizeof line,
                  "warning: the machine is loaded: the peak loop's threads ran only %.0f%% of the wall time, so "
                  "every timing here is contended (compare ratios, not absolute figures)\n\n",
                  100 * busy);
    os << line;
  }
  std::snprintf(line, sizeof line, "%-32s %-11s %-5s %10s %9s %7s %7s %10s %9s\n", "shape", "backend", "dtype",
                "ms median", "GFLOP/s", "% peak", "% amx", "cpu/naive", "max|diff|");
  os << line;
  for (const Result& r : report.results) {
    const double naive = naive_gflops_for(report, r.c.shape, r.c.op);
    char ratio[32] = "-";
    if (r.c.impl == Impl::cpu && naive > 0) std::snprintf(ratio, sizeof ratio, "%.2f", r.gflops / naive);
    char diff[32] = "-";
    if (r.max_abs_diff_vs_naive >= 0) std::snprintf(diff, sizeof diff, "%.1e", r.max_abs_diff_vs_naive);
    char amx[32] = "-";
    if (b.amx && r.c.dtype == DType::bf16) std::snprintf(amx, sizeof amx, "%.1f%%", 100.0 * r.gflops / b.amx->best_gflops);
    std::snprintf(line, sizeof line, "%-32s %-11s %-5s %10.3f %9.1f %6.1f%% %7s %10s %9s\n", r.c.shape.name().c_str(),
                  impl_name(r.c.impl), dtype_name(r.c.dtype), r.timing.median_s * 1e3, r.gflops,
                  b.fma.best_gflops > 0 ? 100.0 * r.gflops / b.fma.best_gflops : 0.0, amx, ratio, diff);
    os << line;
  }
  os << "\nop " << op_name(report.op)
     << (report.op == Op::fwd   ? " (forward)"
         : report.op == Op::bwd ? " (backward given out and lse; flops = 2.5x forward)"
                                : " (forward then backward; flops = 3.5x forward)")
     << ";\n% peak = GFLOP/s / fp32 FMA peak (also for bf16 rows); % amx = bf16 GFLOP/s / AMX tile peak; cpu/naive = GFLOP/s ratio to naive_blas f32 on "
        "the same shape;\nmax|diff| = max abs difference of "
     << (report.op == Op::fwd ? "the output" : "dq, dk and dv")
     << " from naive_blas's (bf16 rows: bf16 inputs and outputs).\n";
  return os.str();
}

namespace {

// Series key: everything but N. Label "cpu bf16 D128" (+ " H32/8" for GQA, " B2" for batches).
std::string series_label(const Case& c) {
  std::string label = std::string(impl_name(c.impl)) + " " + dtype_name(c.dtype) + " D" + std::to_string(c.shape.D);
  if (c.shape.Hq != c.shape.Hkv) label += " H" + std::to_string(c.shape.Hq) + "/" + std::to_string(c.shape.Hkv);
  if (c.shape.B != 1) label += " B" + std::to_string(c.shape.B);
  return label;
}

// Line style of a series: colour = backend and dtype, dash = head dim, point = MHA (circle) or
// GQA (square), so a series looks the same in both panels.
std::string series_style(const Case& c) {
  const char* colour = c.impl == Impl::naive_blas ? "#d62728" : c.dtype == DType::bf16 ? "#2ca02c" : "#1f77b4";
  const int dash = c.shape.D == 128 ? 1 : c.shape.D == 64 ? 2 : 3;
  const int point = c.shape.Hq == c.shape.Hkv ? 7 : 5;
  return std::string("lc rgb '") + colour + "' dt " + std::to_string(dash) + " pt " + std::to_string(point);
}

}  // namespace

void write_plot(const Report& report, const std::string& png_path) {
  if (png_path.find_first_of("'\"\n") != std::string::npos)
    throw attn::Error(attn::ErrorKind::value, "--plot", "= " + png_path + ", expected a file name without quotes or newlines");
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    throw attn::Error(attn::ErrorKind::system, "--plot", "needs gnuplot, which was not found, expected it on PATH (Debian package gnuplot-nox)");

  // panel (causal) -> series label -> (N, GFLOP/s) points
  std::map<bool, std::map<std::string, std::map<std::int64_t, double>>> panels;
  std::map<std::string, std::string> style;
  for (const Result& r : report.results) {
    panels[r.c.shape.causal][series_label(r.c)][r.c.shape.Nq] = r.gflops;
    style[series_label(r.c)] = series_style(r.c);
  }

  const Baselines& b = report.baselines;
  double n_min = 1e30, n_max = 0, y_max = std::max(b.fma.best_gflops, b.sgemm_gflops);
  for (const Result& r : report.results) {
    n_min = std::min(n_min, static_cast<double>(r.c.shape.Nq));
    n_max = std::max(n_max, static_cast<double>(r.c.shape.Nq));
    y_max = std::max(y_max, r.gflops);
  }
  std::ostringstream gp;
  gp << "set terminal pngcairo size " << 900 * panels.size() << ",600 noenhanced font ',10'\n"
     << "set output '" << png_path << "'\n";
  int block = 0;
  for (const auto& [causal, series] : panels)
    for (const auto& [label, points] : series) {
      gp << "$s" << block++ << " << EOD\n";
      for (const auto& [n, g] : points) gp << n << " " << g << "\n";
      gp << "EOD\n";
    }
  const char* what = report.op == Op::fwd ? "forward" : report.op == Op::bwd ? "backward" : "forward + backward";
  gp << "set multiplot layout 1," << panels.size() << " title 'attn bench, " << what << ": " << report.machine.cpu << ", "
     << report.machine.threads << " threads, attn isa " << report.machine.isa << "'\n"
     << "set logscale x 2\nset xlabel 'N (Nq = Nk)'\nset ylabel 'GFLOP/s'\nset grid\n"
     << "set xrange [" << n_min / 1.5 << ":" << n_max * 1.5 << "]\n"
     << "set yrange [0:" << 1.1 * y_max << "]\n"
     << "set key outside right top vertical samplen 2\n";
  block = 0;
  for (const auto& [causal, series] : panels) {
    gp << "set title '" << (causal ? "causal" : "non-causal") << "'\nplot ";
    for (const auto& [label, points] : series) {
      gp << "$s" << block++ << " using 1:2 with linespoints " << style[label] << " ps 0.9 lw 2 title '" << label
         << "', ";
    }
    gp << b.fma.best_gflops << " with lines dt 2 lw 2 lc rgb 'black' title 'fp32 FMA peak', " << b.sgemm_gflops
       << " with lines dt 4 lw 1 lc rgb 'gray40' title 'sgemm " << b.sgemm_n << "^3'\n";
  }
  gp << "unset multiplot\n";

  char script[] = "/tmp/attn_bench_plot_XXXXXX";
  const int fd = mkstemp(script);
  if (fd < 0) throw attn::Error(attn::ErrorKind::system, "--plot", "could not create a temporary gnuplot script, expected a writable temporary directory");
  close(fd);
  { std::ofstream(script) << gp.str(); }
  const std::string cmd = std::string("gnuplot '") + script + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::remove(script);
  if (rc != 0) throw attn::Error(attn::ErrorKind::system, "--plot", "gnuplot exited with status " + std::to_string(rc) + " writing " + png_path + ", expected 0");
}

}  // namespace attn::bench
