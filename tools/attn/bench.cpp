// `attn bench [--quick] [--shapes S] [--op fwd|bwd|fwdbwd|decode|mha|linear] [--json FILE] [--plot FILE.png]
// [--threads N] [--reps N]`: (`--op linear`: bench/linear_bench.hpp) the sweep of bench/sweep.hpp (forward, backward, or both) on attn's cpu
// backend (fp32, bf16) and the naive BLAS baseline, with the fp32 FMA peak, the bf16 peak and the
// sgemm rate measured in the same run (docs/architecture.md §8). A progress bar on stderr, the table on
// stdout. `attn bench --memory [--shapes S]`: peak RSS of the cpu and the naive backward at
// N = 16k, each in a child process (`--memory-probe cpu|naive`, bench/bwd_memory.hpp).
//
// The process re-executes itself once so that OPENBLAS_CORETYPE (OpenBLAS's best kernel for the
// CPU) and OMP_PROC_BIND=spread / OMP_PLACES=cores take effect: both libraries read them at load.

#include <attn/error.hpp>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bwd_memory.hpp"
#include "commands.hpp"
#include "env.hpp"
#include "report.hpp"
#include "decode_bench.hpp"
#include "mha_bench.hpp"
#include "linear_bench.hpp"
#include "sweep.hpp"

namespace attn_cli {
namespace {

struct BenchOptions {
  bool quick = false;
  std::string shapes;
  std::string op = "fwd";
  std::string json_path, plot_path;
  int threads = 0;
  int reps = 0;
  bool memory = false;
  bool bf16_matmuls = false;  // --op mha: the projections as bf16 matmuls
  std::string memory_probe;  // internal: the child of --memory
};

// Progress on stderr: a bar redrawn in place on a terminal, one line per case otherwise. Weighted
// by flops so that the bar tracks time.
class Progress {
 public:
  explicit Progress(double total_flops) : total_(total_flops), tty_(isatty(STDERR_FILENO) != 0) {}
  void show(int index, int count, double done_flops, const std::string& what) const {
    constexpr int kWidth = 30;
    const double frac = total_ > 0 ? done_flops / total_ : 0;
    const int filled = static_cast<int>(frac * kWidth);
    if (tty_) {
      std::fprintf(stderr, "\r\033[K[%s%s] %3.0f%% %d/%d %s", std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, '.').c_str(), 100 * frac, index, count, what.c_str());
    } else {
      std::fprintf(stderr, "[%d/%d] %s\n", index, count, what.c_str());
    }
    std::fflush(stderr);
  }
  void done() const {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  double total_;
  bool tty_;
};

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    diff = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(diff, d);
  }
  return diff;
}

/// `--op decode`: the KV-cache decode sweep of bench/decode_bench.cpp (also `attn bench-decode`).
int run_decode(const BenchOptions& opt) {
  attn::bench::DecodeBenchOptions d;
  d.json_path = opt.json_path;
  d.threads = opt.threads;
  if (opt.reps > 0) d.repeats = opt.reps;
  if (opt.quick) {
    d.batches = {1};
    d.lengths = {4096, 16384};
  }
  attn::bench::run_decode_bench(d, stdout);
  return 0;
}

/// `--op mha`: the module benchmark of bench/mha_bench.cpp (torch's side: bench/mha_torch.py).
int run_mha(const BenchOptions& opt) {
  attn::bench::MhaBenchOptions m;
  m.json_path = opt.json_path;
  m.threads = opt.threads;
  m.bf16_matmuls = opt.bf16_matmuls;
  if (opt.reps > 0) m.repeats = opt.reps;
  if (opt.quick) {
    m.embed_dims = {512};
    m.heads = {8};
    m.kinds = {"mha", "gqa"};
    m.lengths = {512};
  } else if (opt.shapes == "smoke") {
    m.embed_dims = {64};
    m.heads = {4};
    m.lengths = {32};
    m.repeats = 1;
  } else if (!opt.shapes.empty()) {
    throw attn::Error(attn::ErrorKind::value, "--shapes", "was given with --op mha, expected --quick or --shapes smoke (the sweep is E x heads x kind x N)");
  }
  attn::bench::run_mha_bench(m, stdout);
  return 0;
}

/// `--memory-probe cpu|naive` (the child of --memory): one line on stdout.
int run_memory_probe(const BenchOptions& opt, int threads) {
  const auto shapes = opt.shapes.empty() ? std::vector<attn::bench::Shape>{attn::bench::memory_shape()}
                                         : attn::bench::shape_set(opt.shapes);
  const auto probe = attn::bench::run_memory_probe(opt.memory_probe, shapes.front(), threads);
  std::printf("%s\n", attn::bench::format_memory_probe(probe).c_str());
  return 0;
}

/// `--memory`: peak RSS of the cpu and naive backward, each in a fresh child process.
int run_memory(const BenchOptions& opt, int threads) {
  const attn::bench::Shape shape = opt.shapes.empty() ? attn::bench::memory_shape()
                                                      : attn::bench::shape_set(opt.shapes).front();
  const double mib = 1.0 / 1024;
  const double inputs_mib =
      4.0 * static_cast<double>(4 * shape.B * shape.Hq * shape.Nq * shape.D + 4 * shape.B * shape.Hkv * shape.Nk * shape.D) /
      (1024.0 * 1024.0);
  std::printf("backward peak memory, %s fp32: each backend in a fresh process (getrusage ru_maxrss)\n",
              shape.name().c_str());
  std::printf("q, k, v, out, dout, dq, dk, dv take %.0f MiB; cpu forward for out and lse on %d threads first\n\n",
              inputs_mib, threads);
  std::printf("%-8s %14s %18s %16s %13s %9s\n", "backend", "peak RSS MiB", "before bwd MiB", "bwd extra MiB",
              "bwd seconds", "units");
  nlohmann::json probes = nlohmann::json::array();
  for (const char* backend : {"cpu", "naive"}) {
    std::fprintf(stderr, "memory probe: %s backward on %s\n", backend, shape.name().c_str());
    const auto p = attn::bench::spawn_memory_probe(backend, shape, threads);
    char units[48];
    std::snprintf(units, sizeof units, "%lld/%lld", static_cast<long long>(p.units_run),
                  static_cast<long long>(p.units_total));
    std::printf("%-8s %14.1f %18.1f %16.1f %13.2f %9s\n", backend, p.peak_rss_kib * mib,
                p.before_backward_kib * mib, (p.peak_rss_kib - p.before_backward_kib) * mib, p.backward_s, units);
    probes.push_back({{"backend", p.backend},
                      {"peak_rss_mib", p.peak_rss_kib * mib},
                      {"vm_hwm_mib", p.vm_hwm_kib * mib},
                      {"before_backward_mib", p.before_backward_kib * mib},
                      {"backward_extra_mib", (p.peak_rss_kib - p.before_backward_kib) * mib},
                      {"backward_s", p.backward_s},
                      {"units_run", p.units_run},
                      {"units_total", p.units_total}});
  }
  std::printf("\ncpu: attn::sdpa_backward on %d threads; naive: the naive BLAS backward on 1 thread (one [N, N] P "
              "and dP), first (b, kv head) unit only\n(every unit reuses its buffers, so the peak is the same).\n",
              threads);
  if (!opt.json_path.empty()) {
    nlohmann::json j = {{"op", "bwd_memory"},
                        {"shape", shape.name()},
                        {"B", shape.B}, {"Hq", shape.Hq}, {"Hkv", shape.Hkv}, {"N", shape.Nq}, {"D", shape.D},
                        {"causal", shape.causal},
                        {"threads", threads},
                        {"measure", "getrusage ru_maxrss of a fresh child process per backend"},
                        {"probes", probes}};
    std::ofstream out(opt.json_path);
    out << j.dump(2) << "\n";
    if (!out) throw attn::Error(attn::ErrorKind::system, "--json", "= " + opt.json_path + ", which cannot be written, expected a writable path");
    std::printf("wrote %s\n", opt.json_path.c_str());
  }
  return 0;
}

/// `--op linear`: linear vs exact and local attention against N (bench/linear_bench.hpp).
int run_linear(const BenchOptions& opt) {
  attn::bench::LinearBenchOptions l;
  l.threads = opt.threads;
  if (opt.reps > 0) l.reps = opt.reps;
  l.json_path = opt.json_path;
  l.plot_path = opt.plot_path;
  if (opt.shapes == "smoke") {
    l.lengths = {64, 128, 256};
    l.H = 2;
    l.D = l.Dv = 16;
    l.window = 32;
    l.stride = 8;
    l.exact_max_n = 256;
  } else if (opt.shapes == "sparse") {  // the sparse rows only: local, strided, their union, exact to 8k
    l.only = {"local", "strided", "exact"};
    l.exact_max_n = 8192;
  } else if (opt.quick) {
    l.lengths = {1024, 2048, 4096, 8192};
    l.exact_max_n = 4096;
  }
  attn::bench::run_linear_bench(l, stdout);
  return 0;
}

int run_bench(const BenchOptions& opt) {
  attn::bench::ensure_bench_environment();
  if (opt.op == "decode") return run_decode(opt);
  if (opt.op == "mha") return run_mha(opt);
  if (opt.op == "linear") return run_linear(opt);
  if (!opt.memory_probe.empty() || opt.memory) {
    const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
    omp_set_num_threads(threads);
    return opt.memory_probe.empty() ? run_memory(opt, threads) : run_memory_probe(opt, threads);
  }
  const attn::bench::Op op = attn::bench::parse_op(opt.op);
  const std::string shapes = !opt.shapes.empty() ? opt.shapes : opt.quick ? "quick" : "full";
  const int reps = opt.reps > 0 ? opt.reps : opt.quick ? 3 : 5;
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  omp_set_num_threads(threads);

  attn::bench::Report report;
  report.shapes = shapes;
  report.reps = reps;
  report.warmup = 1;
  report.op = op;
  const auto cases = attn::bench::cases_for(attn::bench::shape_set(shapes), op);
  report.machine = attn::bench::machine_info(threads);

  double total = 0, done = 0;
  for (const auto& c : cases) total += attn::bench::op_flops(c.shape, op) * (reps + report.warmup);
  Progress progress(total);
  progress.show(0, static_cast<int>(cases.size()), 0, "baselines: FMA peak, bf16 peak, sgemm");
  report.baselines = attn::bench::measure_baselines(threads, reps, shapes == "smoke");

  std::vector<float> naive_out;  // output of the naive baseline on naive_shape
  std::string naive_shape;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    progress.show(static_cast<int>(i), static_cast<int>(cases.size()), done,
                  std::string(attn::bench::impl_name(c.impl)) + " " + attn::dtype_name(c.dtype) + " " + c.shape.name());
    attn::bench::CaseRunner runner(c, threads);
    const auto timing = attn::bench::time_runs([&] { runner.run(); }, report.warmup, reps);
    attn::bench::Result result{c, timing, attn::bench::op_flops(c.shape, op) / timing.median_s * 1e-9};
    // Both implementations see the same inputs (bf16: rounded): their outputs must agree.
    if (c.impl == attn::bench::Impl::naive_blas) {
      naive_out = runner.output_f32();
      naive_shape = c.shape.name();
    } else if (naive_shape == c.shape.name()) {
      result.max_abs_diff_vs_naive = max_abs_diff(runner.output_f32(), naive_out);
    }
    report.results.push_back(result);
    done += attn::bench::op_flops(c.shape, op) * (reps + report.warmup);
  }
  progress.done();
  naive_out.clear();

  std::fputs(attn::bench::format_table(report).c_str(), stdout);
  std::fflush(stdout);
  if (!opt.json_path.empty()) {
    std::ofstream out(opt.json_path);
    out << attn::bench::to_json(report).dump(2) << "\n";
    if (!out) throw attn::Error(attn::ErrorKind::system, "--json", "= " + opt.json_path + ", which cannot be written, expected a writable path");
    std::printf("wrote %s\n", opt.json_path.c_str());
  }
  if (!opt.plot_path.empty()) {
    attn::bench::write_plot(report, opt.plot_path);
    std::printf("wrote %s\n", opt.plot_path.c_str());
  }
  return 0;
}

}  // namespace

void add_bench(CLI::App& app) {
  auto opt = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand(
      "bench", "Benchmark attention against baselines measured in the same run (FMA peak, sgemm, naive BLAS attention)");
  cmd->add_flag("--quick", opt->quick, "A small subset of the sweep (well under a minute)");
  cmd->add_option("--shapes", opt->shapes,
                  "full (default), quick, smoke, or a list of BxHqxHkvxNxD[c] (c = causal), e.g. 1x16x16x1024x128c; "
                  "with --op linear: sparse (only local, strided and exact rows)");
  cmd->add_option("--op", opt->op,
                  "Operation to benchmark: fwd, bwd (backward given out and lse), fwdbwd (both), decode (KV cache, "
                  "GB/s), mha (nn::MultiheadAttention forward and forward+backward, split into GEMMs and SDPA), "
                  "or linear (linear attention vs exact and local SDPA against N = 1k..64k, H=8, D=64; "
                  "--quick to 8k, --shapes smoke tiny)")
      ->check(CLI::IsMember({"fwd", "bwd", "fwdbwd", "decode", "mha", "linear"}));
  cmd->add_flag("--memory", opt->memory,
                "Peak RSS of the cpu and naive backward (default shape 1x16x16x16384x128c, or the first of --shapes), "
                "each in a fresh child process");
  cmd->add_option("--memory-probe", opt->memory_probe, "Internal: one --memory child (cpu or naive)")
      ->check(CLI::IsMember({"cpu", "naive"}));
  cmd->add_flag("--bf16-matmuls", opt->bf16_matmuls,
                "With --op mha: the projections as bf16 matmuls with fp32 accumulation on oneDNN "
                "(nn::set_float32_matmul_precision(bf16)); the SDPA stays fp32");
  cmd->add_option("--json", opt->json_path, "Write the results, baselines and machine as JSON");
  cmd->add_option("--plot", opt->plot_path, "Write a PNG plot of GFLOP/s against N (needs gnuplot)");
  cmd->add_option("--threads", opt->threads, "Threads (default: all)")->check(CLI::PositiveNumber);
  cmd->add_option("--reps", opt->reps, "Timed repetitions per case after one warm-up (default 5, --quick 3)")
      ->check(CLI::PositiveNumber);
  cmd->callback([opt] { exit_code() = run_bench(*opt); });
}

}  // namespace attn_cli
