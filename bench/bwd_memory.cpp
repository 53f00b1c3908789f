// Peak memory of the backward, one child process per backend (bwd_memory.hpp).

#include "bwd_memory.hpp"

#include <attn/error.hpp>
#include <attn/sdpa.hpp>
#include <attn/tensor.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "baselines.hpp"

namespace attn::bench {
namespace {

long max_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;  // KiB on Linux
}

long vm_hwm_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

// Cheap reproducible values in [-1, 1): the probe measures memory, and filling 512 MiB with
// std::normal_distribution takes seconds.
void fill_random(float* x, std::int64_t n, std::uint32_t seed) {
  std::uint32_t s = seed * 2654435761u + 1u;
  for (std::int64_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    x[i] = static_cast<float>(s >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}

}  // namespace

Shape memory_shape() { return Shape{1, 16, 16, 16384, 16384, 128, 128, true}; }

std::string shape_spec(const Shape& s) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%lldx%lldx%lldx%lldx%lld%s", static_cast<long long>(s.B), static_cast<long long>(s.Hq),
                static_cast<long long>(s.Hkv), static_cast<long long>(s.Nq), static_cast<long long>(s.D),
                s.causal ? "c" : "");
  return buf;
}

MemoryProbe run_memory_probe(const std::string& backend, const Shape& s, int threads) {
  if (backend != "cpu" && backend != "naive")
    throw attn::Error(attn::ErrorKind::value, "--memory-probe", "= '" + backend + "', expected cpu or naive");
  if (s.Nq != s.Nk || s.D != s.Dv) throw attn::Error(attn::ErrorKind::value, "--memory-probe", "got a shape with Nq != Nk or D != Dv, expected Nq = Nk and D = Dv");
  Tensor q(DType::f32, {s.B, s.Hq, s.Nq, s.D}), k(DType::f32, {s.B, s.Hkv, s.Nk, s.D}),
      v(DType::f32, {s.B, s.Hkv, s.Nk, s.Dv}), dout(DType::f32, {s.B, s.Hq, s.Nq, s.Dv}),
      out(DType::f32, {s.B, s.Hq, s.Nq, s.Dv}), lse(DType::f32, {s.B, s.Hq, s.Nq}),
      dq(DType::f32, {s.B, s.Hq, s.Nq, s.D}), dk(DType::f32, {s.B, s.Hkv, s.Nk, s.D}),
      dv(DType::f32, {s.B, s.Hkv, s.Nk, s.Dv});
  std::uint32_t seed = 1;
  for (Tensor* t : {&q, &k, &v, &dout}) fill_random(t->ptr<float>(), t->numel(), seed++);
  for (Tensor* t : {&out, &lse, &dq, &dk, &dv}) std::fill_n(t->ptr<float>(), t->numel(), 0.0f);  // touched: resident

  SdpaParams params;
  params.backend = Backend::cpu;
  params.num_threads = threads;
  params.mask.causal = s.causal;
  params.mask.alignment = Alignment::bottom_right;
  sdpa_forward({out, lse, {}}, q, k, v, params);

  MemoryProbe probe;
  probe.backend = backend;
  probe.units_total = s.B * s.Hkv;
  probe.before_backward_kib = max_rss_kib();
  const auto t0 = std::chrono::steady_clock::now();
  if (backend == "cpu") {
    sdpa_backward({dq, dk, dv, {}}, dout, q, k, v, out, lse, params);
    probe.units_run = probe.units_total;
  } else {
    NaiveAttentionBackward naive({s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.D, s.Dv, s.causal}, 1);
    probe.units_run = 1;
    naive.run(dq.ptr<float>(), dk.ptr<float>(), dv.ptr<float>(), dout.ptr<float>(), q.ptr<float>(), k.ptr<float>(),
              v.ptr<float>(), out.ptr<float>(), probe.units_run);
  }
  probe.backward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  probe.peak_rss_kib = max_rss_kib();
  probe.vm_hwm_kib = vm_hwm_kib();
  return probe;
}

std::string format_memory_probe(const MemoryProbe& p) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "attn-memory-probe backend=%s peak_rss_kib=%ld vm_hwm_kib=%ld before_backward_kib=%ld "
                "backward_s=%.3f units=%lld/%lld",
                p.backend.c_str(), p.peak_rss_kib, p.vm_hwm_kib, p.before_backward_kib, p.backward_s,
                static_cast<long long>(p.units_run), static_cast<long long>(p.units_total));
  return buf;
}

bool parse_memory_probe(const std::string& line, MemoryProbe& p) {
  char backend[16] = {};
  long long run = 0, total = 0;
  if (std::sscanf(line.c_str(),
                  "attn-memory-probe backend=%15s peak_rss_kib=%ld vm_hwm_kib=%ld before_backward_kib=%ld "
                  "backward_s=%lf units=%lld/%lld",
                  backend, &p.peak_rss_kib, &p.vm_hwm_kib, &p.before_backward_kib, &p.backward_s, &run, &total) != 7)
    return false;
  p.backend = backend;
  p.units_run = run;
  p.units_total = total;
  return true;
}

MemoryProbe spawn_memory_probe(const std::string& backend, const Shape& shape, int threads) {
  // popen runs /bin/sh, for which /proc/self/exe would be the shell: resolve it here.
  std::array<char, PATH_MAX> exe{};
  const ssize_t len = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (len <= 0) throw attn::Error(attn::ErrorKind::system, "--memory", "could not resolve /proc/self/exe, expected the path of this executable");
  const std::string path(exe.data(), static_cast<std::size_t>(len));
  if (path.find('\'') != std::string::npos) throw attn::Error(attn::ErrorKind::system, "--memory", "found a quote in the executable's path, expected a path without quotes");
  char args[256];
  std::snprintf(args, sizeof args, " bench --memory-probe %s --shapes %s --threads %d", backend.c_str(),
                shape_spec(shape).c_str(), threads);
  std::string cmd = "'";
  cmd += path;
  cmd += "'";
  cmd += args;
  std::fflush(stdout);
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw attn::Error(attn::ErrorKind::system, "--memory", "could not start " + cmd + ", expected a child process");
  MemoryProbe probe;
  bool found = false;
  std::string output;
  char line[512];
  while (std::fgets(line, sizeof line, pipe)) {
    output += line;
    std::string l = line;
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    if (parse_memory_probe(l, probe)) found = true;
  }
  const int rc = pclose(pipe);
  if (rc != 0 || !found)
    throw attn::Error(attn::ErrorKind::system, "--memory",
                      "ran the " + backend + " probe, which exited with status " + std::to_string(rc) + ", expected 0: " + output);
  return probe;
}

}  // namespace attn::bench
