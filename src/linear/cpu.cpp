// The cpu path of linear attention: builds the plan (chunk length, padded widths, the fp32
// projection), picks the kernels of the ISA the cpu backend runs (cpu/isa.hpp, so ATTN_ISA and
// set_isa_override apply here too) and runs one task per (batch row, kv head) on OpenMP threads.
// Causal forwards and steps run the recurrent form (recurrent_kernel.hpp), faster than the chunked
// one on the machine of docs/linear_attention.md; ATTN_LINEAR_CAUSAL=chunked selects the chunked
// form (for comparisons and tests).

#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "cpu/isa.hpp"
#include "linear/backends.hpp"
#include "linear/cpu_plan.hpp"

namespace attn::linear {

// ATTN_ISA_<NAME> is defined where src/cpu/CMakeLists.txt compiles that ISA (the same x86 guard as
// src/linear/CMakeLists.txt's isa_avx2.cpp / isa_avx512.cpp).
#if ATTN_ISA_AVX512
extern const LinearKernels kLinearAvx512Kernels;
#endif
#if ATTN_ISA_AVX2
extern const LinearKernels kLinearAvx2Kernels;
#endif
extern const LinearKernels kLinearScalarKernels;

namespace {

const LinearKernels& kernels() {
  const std::string name = cpu::active_kernels().name;
// The SDPA entries amx and avx512bf16 run on CPUs with AVX-512 F/BW/DQ/VL: their linear kernels are
// the AVX-512 ones. amx_emu (the tile emulation, tests only) and scalar get the scalar kernels.
#if ATTN_ISA_AVX512
  if ((name == "amx" || name == "avx512bf16" || name == "avx512") && cpu::isa_supported("avx512"))
    return kLinearAvx512Kernels;
#endif
#if ATTN_ISA_AVX2
  if (name == "avx2") return kLinearAvx2Kernels;
#endif
  return kLinearScalarKernels;
}

// Default chunk: 64 positions (measured against 32 and 128 in docs/linear_attention.md);
// ATTN_LINEAR_CHUNK overrides it for sweeps, params.chunk per call. Rounded up to kPad.
std::int64_t chunk_length(const LinearProblem& p) {
  std::int64_t c = p.chunk;
  if (c == 0) {
    const char* env = std::getenv("ATTN_LINEAR_CHUNK");
    c = env ? std::atoll(env) : 64;
    if (c <= 0) c = 64;
  }
  return pad(c);
}

// The task of a forward or step call: recurrent for causal calls unless ATTN_LINEAR_CAUSAL=chunked.
LinearFwdTaskFn forward_task(const LinearProblem& p, const LinearKernels& k) {
  if (!p.causal) return k.forward_task;
  const char* env = std::getenv("ATTN_LINEAR_CAUSAL");
  return env && std::string(env) == "chunked" ? k.forward_task : k.recurrent_task;
}

CpuPlan make_plan(const LinearProblem& p) {
  CpuPlan pl;
  pl.p = &p;
  pl.C = chunk_length(p);
  pl.Dp = pad(p.D);
  pl.Fp = pad(p.F);
  pl.Dvp = pad(p.Dv);
  if (p.map == FeatureMap::favor) {
    const FeatureSpec s = feature_spec(p);
    pl.omega_t.assign(static_cast<std::size_t>(pl.Dp * pl.Fp), 0.0f);
    pl.omega.assign(static_cast<std::size_t>(pl.Fp * pl.Dp), 0.0f);
    for (std::int64_t l = 0; l < p.F; ++l)
      for (std::int64_t d = 0; d < p.D; ++d) {
        const auto w = static_cast<float>(s.omega[static_cast<std::size_t>(l * p.D + d)]);
        pl.omega_t[static_cast<std::size_t>(d * pl.Fp + l)] = w;
        pl.omega[static_cast<std::size_t>(l * pl.Dp + d)] = w;
      }
    pl.c = static_cast<float>(p.favor_scale());
    pl.log_norm = static_cast<float>(-0.5 * std::log(static_cast<double>(p.F)));
  }
  return pl;
}

template <class Fn>
void run_tasks(const LinearProblem& p, Fn&& fn) {
  const std::int64_t tasks = p.B * p.Hkv;
  const int threads = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t t = 0; t < tasks; ++t) fn(t / p.Hkv, t % p.Hkv);
}

}  // namespace

const char* cpu_kernels_name() { return kernels().name; }

void cpu_forward(const LinearProblem& p, const LinearAttentionOutputs& o) {
  const CpuPlan pl = make_plan(p);
  const LinearFwdTaskFn task = forward_task(p, kernels());
  run_tasks(p, [&](std::int64_t b, std::int64_t kvh) { task(pl, o, b, kvh); });
}

void cpu_step(const LinearProblem& p, const TensorView& out) {
  CpuPlan pl = make_plan(p);
  pl.step = true;
  const LinearFwdTaskFn task = forward_task(p, kernels());
  const LinearAttentionOutputs o{out, {}};
  run_tasks(p, [&](std::int64_t b, std::int64_t kvh) { task(pl, o, b, kvh); });
}

void cpu_backward(const LinearProblem& p, const LinearAttentionGrads& g, const TensorView& dout, const TensorView& out,
                  const TensorView& den) {
  const CpuPlan pl = make_plan(p);
  const LinearKernels& k = kernels();
  const BwdArgs a{&g, dout, out, den};
  run_tasks(p, [&](std::int64_t b, std::int64_t kvh) { k.backward_task(pl, a, b, kvh); });
}

}  // namespace attn::linear
