// The cpu path of linear attention: builds the plan (chunk length, padded widths, the fp32
// projection), picks the kernels of the ISA the cpu backend runs (cpu/isa.hpp, so ATTN_ISA and
// set_isa_override apply here too) and runs one task per (batch row, kv head) on OpenMP threads.

#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "cpu/isa.hpp"
#include "linear/backends.hpp"
#include "linear/cpu_plan.hpp"

namespace attn::linear {

#if ATTN_HAVE_X86_ISAS
extern const LinearKernels kLinearAvx512Kernels;
extern const LinearKernels kLinearAvx2Kernels;
#endif
extern const LinearKernels kLinearScalarKernels;

namespace {

const LinearKernels& kernels() {
  const std::string name = cpu::active_kernels().name;
#if ATTN_HAVE_X86_ISAS
  if (name == "avx512" || name == "avx512bf16") return kLinearAvx512Kernels;
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

void cpu_forward(const LinearProblem& p, const LinearAttentionOutputs& o) {
  const CpuPlan pl = make_plan(p);
  const LinearKernels& k = kernels();
  run_tasks(p, [&](std::int64_t b, std::int64_t kvh) { k.forward_task(pl, o, b, kvh); });
}

void cpu_step(const LinearProblem& p, const TensorView& out) {
  CpuPlan pl = make_plan(p);
  pl.step = true;
  const LinearKernels& k = kernels();
  const LinearAttentionOutputs o{out, {}};
  run_tasks(p, [&](std::int64_t b, std::int64_t kvh) { k.forward_task(pl, o, b, kvh); });
}

void cpu_backward(const LinearProblem& p, const LinearAttentionGrads& g, const TensorView& dout, const TensorView& out,
                  const TensorView& den) {
  const CpuPlan pl = make_plan(p);
  const LinearKernels& k = kernels();
  const BwdArgs a{&g, dout, out, den};
  run_tasks(p, [&](std::int64_t b, std::int64_t kvh) { k.backward_task(pl, a, b, kvh); });
}

}  // namespace attn::linear
