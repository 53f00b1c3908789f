// Peak loops. Each kernel is compiled for its ISA with a target attribute (the file builds with
// baseline flags) and called only when __builtin_cpu_supports says the CPU has it. The chains
// are kPeakChains accumulators updated by acc = acc * a + b with a just below 1, so the values
// stay finite and normal; the fold over an index sequence unrolls the chains so they live in
// registers (checked with objdump: the loop body is 12 vfmadd on registers, no loads/stores).

#include "peak.hpp"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <utility>
#include <vector>

#include "cpu/isa.hpp"
#include "cpu/amx/tiles.hpp"

// The AMX loop uses the kernels' tile operations (cpu/amx/tiles_hw.hpp) in a target region.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16")
#endif
#include "cpu/amx/tiles_hw.hpp"
namespace attn::bench {
namespace {
// 4 accumulator tiles fed by 2 A and 2 B tiles that stay in registers: the instruction rate.
__attribute__((noinline)) float amx_loop(std::int64_t iters) {
  using T = cpu::amx::HwTiles;
  alignas(64) std::uint16_t ab[4][16 * 32];
  for (auto& t : ab)
    for (auto& x : t) x = 0x3A83;  // bf16 ≈ 1e-3: no overflow in any run length
  alignas(64) float c[16 * 16];
  T::begin();
  T::zero<0>();
  T::zero<1>();
  T::zero<2>();
  T::zero<3>();
  T::load<4>(ab[0], 64);
  T::load<5>(ab[1], 64);
  T::load<6>(ab[2], 64);
  T::load<7>(ab[3], 64);
  for (std::int64_t it = 0; it < iters; ++it) {
    T::dot<0, 4, 6>();
    T::dot<1, 4, 7>();
    T::dot<2, 5, 6>();
    T::dot<3, 5, 7>();
  }
  T::store<0>(c, 64);
  T::end();
  return c[0];
}
}  // namespace
}  // namespace attn::bench
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace attn::bench {
namespace {

using Clock = std::chrono::steady_clock;

template <std::size_t... I>
__attribute__((target("avx2,fma"), noinline)) float fma_loop_ymm(std::int64_t iters, std::index_sequence<I...>) {
  __m256 acc[sizeof...(I)];
  ((acc[I] = _mm256_set1_ps(static_cast<float>(I))), ...);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
  for (std::int64_t it = 0; it < iters; ++it) ((acc[I] = _mm256_fmadd_ps(acc[I], a, b)), ...);
  __m256 sum = _mm256_setzero_ps();
  ((sum = _mm256_add_ps(sum, acc[I])), ...);
  return _mm256_cvtss_f32(sum);
}

template <std::size_t... I>
__attribute__((target("avx512f"), noinline)) float fma_loop_zmm(std::int64_t iters, std::index_sequence<I...>) {
  __m512 acc[sizeof...(I)];
  ((acc[I] = _mm512_set1_ps(static_cast<float>(I))), ...);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
  for (std::int64_t it = 0; it < iters; ++it) ((acc[I] = _mm512_fmadd_ps(acc[I], a, b)), ...);
  __m512 sum = _mm512_setzero_ps();
  ((sum = _mm512_add_ps(sum, acc[I])), ...);
  return _mm512_cvtss_f32(sum);  // lane 0 depends on every chain: keeps the loop alive
}

template <std::size_t... I>
__attribute__((target("avx512f,avx512bf16"), noinline)) float dpbf16_loop(std::int64_t iters,
                                                                          std::index_sequence<I...>) {
  __m512 acc[sizeof...(I)];
  ((acc[I] = _mm512_set1_ps(static_cast<float>(I))), ...);
  // bf16 pairs (1e-3, 1e-3): each instruction adds 2e-6 per lane; no overflow in any run length.
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3A83), b = (__m512bh)_mm512_set1_epi16(0x3A83);
  for (std::int64_t it = 0; it < iters; ++it) ((acc[I] = _mm512_dpbf16_ps(acc[I], a, b)), ...);
  __m512 sum = _mm512_setzero_ps();
  ((sum = _mm512_add_ps(sum, acc[I])), ...);
  return _mm512_cvtss_f32(sum);  // lane 0 depends on every chain: keeps the loop alive
}

using LoopFn = float (*)(std::int64_t);

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Rates {
  std::vector<double> wall, cpu_time;  // GFLOP/s per repetition
};

// Runs `loop` on every thread at once; GFLOP/s for each repetition, by wall clock and by the
// threads' CPU time.
Rates run_on_threads(LoopFn loop, double flops_per_iter, int threads, int reps, double seconds) {
  // Calibrate on one thread so one repetition lasts about `seconds`.
  std::int64_t iters = 1 << 16;
  volatile float sink = 0;
  for (;;) {
    const auto t0 = Clock::now();
    sink = sink + loop(iters);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > seconds / 8 || iters > (std::int64_t{1} << 40)) {
      iters = std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(iters) * seconds / dt));
      break;
    }
    iters *= 4;
  }
  const double flops = flops_per_iter * static_cast<double>(iters);
  Rates rates;
  for (int r = -1; r < reps; ++r) {  // r = -1: warm-up (thread start, clocks)
    float partial = 0;
    double cpu_rate = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : partial, cpu_rate)
    {
      const double c0 = thread_cpu_seconds();
      partial += loop(iters);
      cpu_rate += flops / std::max(thread_cpu_seconds() - c0, 1e-9) * 1e-9;
    }
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink + partial;
    if (r >= 0) {
      rates.wall.push_back(flops * threads / dt * 1e-9);
      rates.cpu_time.push_back(cpu_rate);
    }
  }
  return rates;
}

PeakResult summarise(Rates rates, const char* vector) {
  std::sort(rates.wall.begin(), rates.wall.end());
  return {rates.wall.back(), rates.wall[rates.wall.size() / 2],
          *std::max_element(rates.cpu_time.begin(), rates.cpu_time.end()), vector};
}

constexpr auto kChains = std::make_index_sequence<kPeakChains>{};

}  // namespace

PeakResult fma_peak(int threads, int reps, double seconds) {
  reps = std::max(reps, 1);
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    LoopFn loop = [](std::int64_t n) { return fma_loop_zmm(n, kChains); };
    return summarise(run_on_threads(loop, 2.0 * 16 * kPeakChains, threads, reps, seconds), "zmm");
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    LoopFn loop = [](std::int64_t n) { return fma_loop_ymm(n, kChains); };
    return summarise(run_on_threads(loop, 2.0 * 8 * kPeakChains, threads, reps, seconds), "ymm");
  }
  return {};
}

std::optional<PeakResult> bf16_peak(int threads, int reps, double seconds) {
  reps = std::max(reps, 1);
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) return std::nullopt;
  LoopFn loop = [](std::int64_t n) { return dpbf16_loop(n, kChains); };
  return summarise(run_on_threads(loop, 4.0 * 16 * kPeakChains, threads, reps, seconds), "zmm");
}

std::optional<PeakResult> amx_peak(int threads, int reps, double seconds) {
  reps = std::max(reps, 1);
  if (!cpu::isa_supported("amx")) return std::nullopt;
  return summarise(run_on_threads(amx_loop, 4.0 * 16 * 16 * 32 * 2, threads, reps, seconds), "amx");
}

}  // namespace attn::bench
