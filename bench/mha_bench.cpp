// `attn bench --op mha` (see mha_bench.hpp). Flops: projections 2·M·E·(E + 2·Hkv·hd) + 2·M·E² forward
// (M = B·N), twice that again in backward (dX and dW of each); attention 4·B·Hq·N²·hd forward
// (half when causal), 2.5× that in backward (docs/performance.md).

#include "mha_bench.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <tuple>
#include <thread>

#include <nlohmann/json.hpp>

#include "attn/error.hpp"
#include "attn/nn/make_attention.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/nn/weight_cache.hpp"
#include "attn/sdpa.hpp"
#include "baselines.hpp"
#include "env.hpp"
#include "nn/gemm.hpp"
#include "nn/bf16_weights.hpp"
#include "nn/gemm_bf16.hpp"
#include "sweep.hpp"

namespace attn::bench {
namespace {

void fill(std::vector<float>& v, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (float& x : v) x = d(rng);
}

// The module's own GEMM path, so that "gemm" is what its projections cost when timed alone: fp32
// on OpenBLAS calls split between the OpenMP threads (nn/gemm.hpp), or, with bf16 matmuls, what
// nn::Linear does (src/nn/linear.cpp): the activation operands rounded to bf16 copies at each call,
// the weight operand B (`weight`) rounded once — and packed into oneDNN's layout with
// ATTN_WEIGHT_CACHE=packed — while the module keeps its copy (under the WeightCacheGuard of
// run_mha_bench, attn/nn/weight_cache.hpp), or rounded at each call otherwise; then oneDNN's matmul. The precision is the process-wide setting the module reads.
void module_gemm(bool tb, std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
                 const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc, bool ta, bool weight) {
  if (nn::float32_matmul_precision() != nn::MatmulPrecision::bf16) {
    nn::detail::gemm<float>(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  static std::vector<std::uint16_t> a16, b16;  // reused between calls, as the module reuses its scratch
  struct Kept {
    std::vector<std::uint16_t> plain;
    nn::detail::PackedLayout layout;
    std::vector<std::uint8_t> packed;
  };
  // Weights rounded (and packed) once, per weight and GEMM shape (a later case may get a freed
  // weight's address: its values are not what this timing is about, its shape is in the key).
  static std::map<std::tuple<const float*, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool>, Kept> kept;
  const std::int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  a16.resize(static_cast<std::size_t>(a_rows * a_cols));
  nn::detail::round_rows_to_bf16(A, a_rows, a_cols, lda, a16.data(), a_cols);
  if (weight && nn::weight_cache_enabled()) {
    Kept& w = kept[{B, tb, M, N, K, ldc, beta != 0.0f}];
    if (w.plain.empty()) {
      w.plain.resize(static_cast<std::size_t>(b_rows * b_cols));
      nn::detail::round_rows_to_bf16(B, b_rows, b_cols, ldb, w.plain.data(), b_cols);
      if (nn::detail::weight_packing_enabled())
        w.layout = nn::detail::packed_layout_bf16(tb, M, N, K, a_cols, beta, ldc);
      if (w.layout.id >= 0) {
        w.packed.resize(w.layout.bytes);
        nn::detail::pack_weights_bf16(tb, N, K, w.plain.data(), b_cols, w.layout, w.packed.data());
      }
    }
    if (w.layout.id >= 0)
      nn::detail::gemm_bf16_packed(tb, M, N, K, a16.data(), a_cols, w.packed.data(), w.layout, beta, C, ldc);
    else
      nn::detail::gemm_bf16(ta, tb, M, N, K, a16.data(), a_cols, w.plain.data(), b_cols, beta, C, ldc);
    return;
  }
  b16.resize(static_cast<std::size_t>(b_rows * b_cols));
  nn::detail::round_rows_to_bf16(B, b_rows, b_cols, ldb, b16.data(), b_cols);
  nn::detail::gemm_bf16(ta, tb, M, N, K, a16.data(), a_cols, b16.data(), b_cols, beta, C, ldc);
}

// The same GEMM as one plain OpenBLAS call on OpenBLAS's own threads (as a user calling sgemm would
// get it): the alternative the split of nn/gemm.hpp must not lose to.
void sgemm_blas_threads(bool tb, std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
                        const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc, bool ta = false) {
  nn::detail::gemm_call<float>(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

// [B, H, N, hd] view of heads at columns h·hd of a [B·N, ld] row-major buffer (batch first).
TensorView heads(float* p, std::int64_t ld, std::int64_t B, std::int64_t H, std::int64_t N, std::int64_t hd) {
  return TensorView(p, DType::f32, {B, H, N, hd}, {N * ld, hd, ld, 1});
}

struct Case {
  std::string kind;
  std::int64_t B, E, Hq, Hkv, N;
};

// Runs every function once (warm-up), then `reps` rounds of all of them in order, each call timed.
std::vector<Timing> time_interleaved(const std::vector<std::function<void()>>& fns, int reps) {
  for (const auto& f : fns) f();
  std::vector<std::vector<double>> s(fns.size());
  for (int r = 0; r < std::max(reps, 1); ++r)
    for (std::size_t i = 0; i < fns.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fns[i]();
      s[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  std::vector<Timing> out;
  for (auto& v : s) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    out.push_back({n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v.front()});
  }
  return out;
}

// oneDNN's bf16 matmul n³ on operands already rounded (the best bf16 GEMM here, as sgemm_gflops is
// for fp32), median of `reps`.
double bf16_gemm_gflops(std::int64_t n, int reps) {
  std::vector<std::uint16_t> a(static_cast<std::size_t>(n * n)), b(a.size());
  std::vector<float> c(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<std::uint16_t>(0x3f00 + i % 97);  // bf16 values in [0.5, 1)
    b[i] = static_cast<std::uint16_t>(0x3f00 + i % 89);
  }
  std::vector<double> seconds;
  for (int r = -1; r < std::max(reps, 1); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    nn::detail::gemm_bf16(false, true, n, n, n, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r >= 0) seconds.push_back(dt);
  }
  std::sort(seconds.begin(), seconds.end());
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / seconds[seconds.size() / 2] *
         1e-9;
}

// The paired same-shape reference (bf16 matmuls, docs/nn.md "Projections against a paired
// same-shape GEMM"): each projection call of the module, made through its own Linear objects the
// way mha_forward.cpp and mha_backward.cpp make it (rounding included), alternated call by call
// with oneDNN's bf16 matmul of the same GEMM shapes on operands already in bf16 and plain
// row-major (the bare GEMM, no rounding, no bias); which of the two runs first alternates by round.
struct PairedStep {
  std::function<void()> module, ref;
};

// Median and range over rounds of (Σ module calls / Σ reference calls), the reference's median
// time, and per step the median of its own pair ratios.
struct PairedTiming {
  double ratio = 0, ratio_min = 0, ratio_max = 0, ref_ms = 0;
  std::vector<double> step_ratio;
};

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

PairedTiming time_paired(const std::vector<PairedStep>& steps, int rounds) {
  for (const PairedStep& s : steps) s.module(), s.ref();  // warm-up
  std::vector<double> ratios, refs;
  std::vector<std::vector<double>> step(steps.size());
  auto timed = [](const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int r = 0; r < rounds; ++r) {
    double tm = 0, tr = 0;
    for (std::size_t i = 0; i < steps.size(); ++i) {
      double a, b;
      if (r % 2 == 0) {
        a = timed(steps[i].module);
        b = timed(steps[i].ref);
      } else {
        b = timed(steps[i].ref);
        a = timed(steps[i].module);
      }
      tm += a;
      tr += b;
      step[i].push_back(a / b);
    }
    ratios.push_back(tm / tr);
    refs.push_back(tr);
  }
  PairedTiming t;
  t.ratio = median_of(ratios);
  t.ratio_min = *std::min_element(ratios.begin(), ratios.end());
  t.ratio_max = *std::max_element(ratios.begin(), ratios.end());
  t.ref_ms = median_of(refs) * 1e3;
  for (const auto& s : step) t.step_ratio.push_back(median_of(s));
  return t;
}

std::vector<std::uint16_t> rounded(const std::vector<float>& v) {
  std::vector<std::uint16_t> r(v.size());
  const auto n = static_cast<std::int64_t>(v.size());
  nn::detail::round_rows_to_bf16(v.data(), 1, n, n, r.data(), n);
  return r;
}

// Times one configuration: the module, then its GEMM calls and SDPA calls on their own.
void run_case(const Case& c, const MhaBenchOptions& o, double best_rate, std::vector<MhaBenchResult>& results) {
  nn::MhaConfig cfg;
  cfg.embed_dim = c.E;
  cfg.num_heads = c.Hq;
  cfg.num_kv_heads = c.Hkv;
  cfg.batch_first = true;
  auto m = nn::make_attention(c.kind, cfg);
  const std::int64_t hd = c.E / c.Hq, kv = c.Hkv * hd, Etot = c.E + 2 * kv, M = c.B * c.N;
  std::vector<float> x(static_cast<std::size_t>(M * c.E)), dout(x.size());
  fill(x, 1);
  fill(dout, 2);
  const TensorView xv(x.data(), DType::f32, {c.B, c.N, c.E}), dov(dout.data(), DType::f32, {c.B, c.N, c.E});
  nn::MhaOptions mo;
  mo.is_causal = o.causal;

  // The module's own calls, on buffers of the module's shapes.
  const float* w_qkv = m->q_proj().weight();  // [W_q; W_k; W_v] rows, contiguous
  const float* w_o = m->out_proj().weight();
  std::vector<float> qkv(static_cast<std::size_t>(M * Etot)), ctx(static_cast<std::size_t>(M * c.E)), out(ctx.size()),
      dctx(ctx.size()), dq(ctx.size()), dk(static_cast<std::size_t>(M * kv)), dv(dk.size()), dx(ctx.size()),
      dw(static_cast<std::size_t>(Etot * c.E + c.E * c.E)), lse(static_cast<std::size_t>(c.B * c.Hq * c.N));
  fill(qkv, 3);
  fill(ctx, 4);
  SdpaParams sp;
  sp.mask.causal = o.causal;
  sp.mask.alignment = Alignment::top_left;
  const TensorView q = heads(qkv.data(), Etot, c.B, c.Hq, c.N, hd),
                   k = heads(qkv.data() + c.E, Etot, c.B, c.Hkv, c.N, hd),
                   v = heads(qkv.data() + c.E + kv, Etot, c.B, c.Hkv, c.N, hd);
  const TensorView ctxv = heads(ctx.data(), c.E, c.B, c.Hq, c.N, hd),
                   dctxv = heads(dctx.data(), c.E, c.B, c.Hq, c.N, hd);
  const TensorView lsev(lse.data(), DType::f32, {c.B, c.Hq, c.N});
  const TensorView dqv = heads(dq.data(), c.E, c.B, c.Hq, c.N, hd), dkv = heads(dk.data(), kv, c.B, c.Hkv, c.N, hd),
                   dvv = heads(dv.data(), kv, c.B, c.Hkv, c.N, hd);
  bool blas_threads = false;  // true: every call below as one OpenBLAS call on its own threads
  auto sgemm = [&](bool tb, std::int64_t M_, std::int64_t N_, std::int64_t K_, const float* A, std::int64_t lda,
                   const float* B_, std::int64_t ldb, float beta, float* C, std::int64_t ldc, bool ta = false) {
    if (blas_threads)
      sgemm_blas_threads(tb, M_, N_, K_, A, lda, B_, ldb, beta, C, ldc, ta);
    else  // B is a weight in the forward and dx GEMMs (not transposed A), an activation in dW's
      module_gemm(tb, M_, N_, K_, A, lda, B_, ldb, beta, C, ldc, ta, !ta);
  };
  auto gemm_fwd = [&] {
    sgemm(true, M, Etot, c.E, x.data(), c.E, w_qkv, c.E, 0.0f, qkv.data(), Etot);
    sgemm(true, M, c.E, c.E, ctx.data(), c.E, w_o, c.E, 0.0f, out.data(), c.E);
  };
  auto gemm_bwd = [&] {
    sgemm(false, M, c.E, c.E, dout.data(), c.E, w_o, c.E, 0.0f, dctx.data(), c.E);                 // dctx = dout·W_o
    sgemm(false, c.E, c.E, M, dout.data(), c.E, ctx.data(), c.E, 1.0f, dw.data(), c.E, true);      // dW_o
    sgemm(false, M, c.E, c.E, dq.data(), c.E, w_qkv, c.E, 0.0f, dx.data(), c.E);                   // dx = dq·W_q
    sgemm(false, M, c.E, kv, dk.data(), kv, w_qkv + c.E * c.E, c.E, 1.0f, dx.data(), c.E);         // + dk·W_k
    sgemm(false, M, c.E, kv, dv.data(), kv, w_qkv + (c.E + kv) * c.E, c.E, 1.0f, dx.data(), c.E);  // + dv·W_v
    sgemm(false, c.E, c.E, M, dq.data(), c.E, x.data(), c.E, 1.0f, dw.data(), c.E, true);          // dW_q
    sgemm(false, kv, c.E, M, dk.data(), kv, x.data(), c.E, 1.0f, dw.data(), c.E, true);            // dW_k
    sgemm(false, kv, c.E, M, dv.data(), kv, x.data(), c.E, 1.0f, dw.data(), c.E, true);            // dW_v
  };
  auto sdpa_fwd = [&] { sdpa_forward({ctxv, lsev, {}}, q, k, v, sp); };
  auto sdpa_bwd = [&] { sdpa_backward({dqv, dkv, dvv, {}}, dctxv, q, k, v, ctxv, lsev, sp); };

  // The paired reference (bf16 matmuls): the module's projection calls through its own Linears, as
  // mha_forward.cpp / mha_backward.cpp make them, each against the bare GEMMs of that call.
  std::vector<PairedStep> paired_fwd, paired_fwdbwd;
  nn::Linear<float>& lq = m->q_proj();
  nn::Linear<float> fused(c.E, Etot, lq.weight(), lq.weight_grad(), lq.bias(), lq.bias_grad());
  fused.share_bf16_weights(lq);
  std::vector<std::uint16_t> x16, ctx16, dout16, dq16, dk16, dv16, wqkv16, wo16, xb16, cb16;
  const std::int64_t E = c.E;  // captured by reference below, as everything else
  nn::Linear<float>& lo = m->out_proj();
  if (o.bf16_matmuls) {
    fill(dq, 5);
    fill(dk, 6);
    fill(dv, 7);
    x16 = rounded(x);
    ctx16 = rounded(ctx);
    dout16 = rounded(dout);
    dq16 = rounded(dq);
    dk16 = rounded(dk);
    dv16 = rounded(dv);
    wqkv16 = rounded(std::vector<float>(w_qkv, w_qkv + Etot * c.E));
    wo16 = rounded(std::vector<float>(w_o, w_o + c.E * c.E));
    using nn::detail::gemm_bf16;
    // The module's side: x and ctx rounded once in the forward (round_once, src/nn/mha_impl.hpp) and
    // those copies taken by the backward's dW GEMMs; each Linear rounds its d once for dx and dW.
    const auto round_into = [](const std::vector<float>& src, std::int64_t rows, std::int64_t cols,
                               std::vector<std::uint16_t>& dst) {
      dst.resize(static_cast<std::size_t>(rows * cols));
      nn::detail::round_rows_to_bf16(src.data(), rows, cols, cols, dst.data(), cols);
      return dst.data();
    };
    const PairedStep qkv_fwd{
        [&] { fused.forward(x.data(), M, E, qkv.data(), Etot, round_into(x, M, E, xb16)); },
        [&] { gemm_bf16(false, true, M, Etot, E, x16.data(), E, wqkv16.data(), E, 0.0f, qkv.data(), Etot); }};
    const PairedStep out_fwd{
        [&] { lo.forward(ctx.data(), M, E, out.data(), E, round_into(ctx, M, E, cb16)); },
        [&] { gemm_bf16(false, true, M, E, E, ctx16.data(), E, wo16.data(), E, 0.0f, out.data(), E); }};
    const PairedStep out_bwd{
        [&] { lo.backward(ctx.data(), E, dout.data(), E, M, dctx.data(), E, false, cb16.data(), E); },
        [&] {
          gemm_bf16(false, false, M, E, E, dout16.data(), E, wo16.data(), E, 0.0f, dctx.data(), E);
          gemm_bf16(true, false, E, E, M, dout16.data(), E, ctx16.data(), E, 1.0f, dw.data(), E);
        }};
    const PairedStep qkv_bwd{
        [&] {
          lq.backward(x.data(), E, dq.data(), E, M, dx.data(), E, false, xb16.data(), E);
          m->k_proj().backward(x.data(), E, dk.data(), kv, M, dx.data(), E, true, xb16.data(), E);
          m->v_proj().backward(x.data(), E, dv.data(), kv, M, dx.data(), E, true, xb16.data(), E);
        },
        [&] {
          const std::uint16_t* wk16 = wqkv16.data() + E * E;
          const std::uint16_t* wv16 = wk16 + kv * E;
          gemm_bf16(false, false, M, E, E, dq16.data(), E, wqkv16.data(), E, 0.0f, dx.data(), E);
          gemm_bf16(false, false, M, E, kv, dk16.data(), kv, wk16, E, 1.0f, dx.data(), E);
          gemm_bf16(false, false, M, E, kv, dv16.data(), kv, wv16, E, 1.0f, dx.data(), E);
          gemm_bf16(true, false, E, E, M, dq16.data(), E, x16.data(), E, 1.0f, dw.data(), E);
          gemm_bf16(true, false, kv, E, M, dk16.data(), kv, x16.data(), E, 1.0f, dw.data() + E * E, E);
          gemm_bf16(true, false, kv, E, M, dv16.data(), kv, x16.data(), E, 1.0f, dw.data() + (E + kv) * E, E);
        }};
    paired_fwd = {qkv_fwd, out_fwd};
    paired_fwdbwd = {qkv_fwd, out_fwd, out_bwd, qkv_bwd};
  }

  const double Md = static_cast<double>(M), Ed = static_cast<double>(c.E);
  const double proj_fwd_flops = 2 * Md * Ed * static_cast<double>(Etot) + 2 * Md * Ed * Ed;
  const double attn_fwd_flops = 4.0 * static_cast<double>(c.B * c.Hq) * static_cast<double>(c.N) *
                                static_cast<double>(c.N) * static_cast<double>(hd) * (o.causal ? 0.5 : 1.0);
  for (const char* op : {"fwd", "fwdbwd"}) {
    const bool bwd = op[3] == 'b';
    // Interleaved: each repetition runs the module, its GEMMs and its SDPA calls back to back, so
    // that load changes on a shared machine hit the three alike; medians of each.
    sdpa_fwd();  // lse for the backward
    const std::vector<Timing> t = time_interleaved({[&] {
                                                      m->forward(xv, xv, xv, mo);
                                                      if (bwd) m->backward(dov);
                                                    },
                                                    [&] {
                                                      gemm_fwd();
                                                      if (bwd) gemm_bwd();
                                                    },
                                                    [&] {
                                                      sdpa_fwd();
                                                      if (bwd) sdpa_bwd();
                                                    }},
                                                   o.repeats);
    const Timing &tm = t[0], &tg = t[1], &ts = t[2];
    MhaBenchResult r{
        c.kind, op, c.B, c.E, c.Hq, c.Hkv, c.N, tm.median_s * 1e3, tg.median_s * 1e3, ts.median_s * 1e3, 0, 0, 0, 0,
        0,      0,  0,   0,   0,    0,     {}};
    if (!o.bf16_matmuls) {
      // The same GEMMs on OpenBLAS's own pool, timed apart (its workers spin after each call and
      // would slow whatever ran next, docs/nn.md "Threads"), then a pause for them to go idle.
      blas_threads = true;
      openblas_set_num_threads(omp_get_max_threads());
      const Timing tb = time_interleaved({[&] {
                                           gemm_fwd();
                                           if (bwd) gemm_bwd();
                                         }},
                                         o.repeats)[0];
      openblas_set_num_threads(1);
      blas_threads = false;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      r.blas_ms = tb.median_s * 1e3;
      r.module_gemm_vs_blas = tb.median_s / tg.median_s;
    }
    if (o.bf16_matmuls) {
      const PairedTiming pt = time_paired(bwd ? paired_fwdbwd : paired_fwd, std::max(o.repeats, 7));
      r.paired_ratio = pt.ratio;
      r.paired_min = pt.ratio_min;
      r.paired_max = pt.ratio_max;
      r.paired_ref_gflops = proj_fwd_flops * (bwd ? 3 : 1) / pt.ref_ms * 1e-6;
      r.paired_steps = pt.step_ratio;
    }
    r.gemm_gflops = proj_fwd_flops * (bwd ? 3 : 1) / tg.median_s * 1e-9;
    r.sdpa_gflops = attn_fwd_flops * (bwd ? 3.5 : 1) / ts.median_s * 1e-9;
    r.overhead = tm.median_s / (tg.median_s + ts.median_s) - 1;
    r.proj_vs_sgemm = r.gemm_gflops / best_rate;
    results.push_back(r);
  }
}

}  // namespace

std::vector<MhaBenchResult> run_mha_bench(const MhaBenchOptions& o, std::FILE* out) {
  if (o.bf16_matmuls && !nn::bf16_matmul_available())
    throw Error(ErrorKind::unsupported, "--bf16-matmuls", "was given, expected a build with oneDNN (bf16 matmuls "
                "are not available in this one)");
  const nn::MatmulPrecisionGuard precision(o.bf16_matmuls ? nn::MatmulPrecision::bf16 : nn::MatmulPrecision::f32);
  // The module's weights do not change here: bf16 copies are kept (ATTN_WEIGHT_CACHE=off times
  // the rounding at every call instead; docs/nn.md "bf16 weight copies").
  const nn::WeightCacheGuard weight_cache;
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  const MachineInfo mi = machine_info(threads);
  const double sgemm_rate = sgemm_gflops(2048, threads, 3);
  openblas_set_num_threads(threads);  // sgemm_gflops leaves OpenBLAS at one thread
  // 7 runs: the first ones can meet OpenBLAS's pool still spinning after sgemm_gflops (docs/nn.md, "Threads").
  const double bf16_rate = o.bf16_matmuls ? bf16_gemm_gflops(2048, 7) : 0.0;
  std::fprintf(out, "mha bench: %s, %d threads, OpenBLAS core %s, attn ISA %s, %s, B = %lld, %s\n", mi.cpu.c_str(),
               threads, mi.openblas_core.c_str(), mi.isa.c_str(),
               !o.bf16_matmuls              ? "fp32"
               : nn::weight_cache_enabled() ? "bf16 matmuls (oneDNN, bf16 weights kept) + fp32 SDPA"
                                            : "bf16 matmuls (oneDNN, weights rounded per call) + fp32 SDPA",
               static_cast<long long>(o.batch), o.causal ? "causal" : "not causal");
  std::fprintf(out, "OpenBLAS sgemm 2048^3 (same run): %.1f GFLOP/s", sgemm_rate);
  if (o.bf16_matmuls) {
    std::fprintf(out, "; oneDNN bf16 matmul 2048^3: %.1f GFLOP/s (\"of best\" is of this)", bf16_rate);
  }
  const double best_rate = o.bf16_matmuls ? bf16_rate : sgemm_rate;
  std::fprintf(out, "; medians of %d interleaved runs after one warm-up\n\n", o.repeats);
  std::fprintf(out, "%-4s %-6s %5s %3s %4s %5s %9s %9s %9s %6s %9s %8s %8s %8s %8s\n", "kind", "op", "E", "Hq", "Hkv",
               "N", "module ms", "gemm ms", "sdpa ms", "attn%", "overhead", "proj GF/s", "of best", "blas ms",
               "vs blas");
  std::vector<MhaBenchResult> results;
  for (std::int64_t E : o.embed_dims)
    for (std::int64_t H : o.heads)
      for (const std::string& kind : o.kinds)
        for (std::int64_t N : o.lengths) {
          if (E % H) continue;
          const std::int64_t Hkv = kind == "mha" ? H : kind == "mqa" ? 1 : H / 4;
          const std::size_t first = results.size();
          run_case({kind, o.batch, E, H, Hkv, N}, o, best_rate, results);
          for (std::size_t i = first; i < results.size(); ++i) {
            const MhaBenchResult& r = results[i];
            std::fprintf(out, "%-4s %-6s %5lld %3lld %4lld %5lld %9.2f %9.2f %9.2f %5.0f%% %8.1f%% %9.1f %7.0f%%",
                         r.kind.c_str(), r.op.c_str(), static_cast<long long>(r.E), static_cast<long long>(r.Hq),
                         static_cast<long long>(r.Hkv), static_cast<long long>(r.N), r.module_ms, r.gemm_ms, r.sdpa_ms,
                         100 * r.sdpa_ms / (r.gemm_ms + r.sdpa_ms), 100 * r.overhead, r.gemm_gflops,
                         100 * r.proj_vs_sgemm);
            if (r.blas_ms > 0)
              std::fprintf(out, " %8.2f %7.2fx\n", r.blas_ms, r.module_gemm_vs_blas);
            else
              std::fprintf(out, " %8s %8s\n", "-", "-");
            std::fflush(out);
          }
        }
  std::fprintf(out,
               "\nmodule: nn::MultiheadAttention<float> (self-attention, fused QKV GEMM); gemm: its sgemm calls alone "
               "(2 forward, 8 backward); sdpa: attn::sdpa_forward (+ sdpa_backward) on the same strided head views; "
               "overhead = module / (gemm + sdpa) - 1; blas: the same GEMMs as plain OpenBLAS calls on its own "
               "threads (fp32), vs blas = blas / gemm (> 1: the module's GEMM path is the faster).\n");
  if (o.bf16_matmuls) {
    // The paired same-shape reference (time_paired): the target is proj/ref ≤ 1.05.
    std::fprintf(out,
                 "\nprojections against the same-shape bare GEMMs (oneDNN bf16 matmul on bf16 operands), alternated "
                 "call by call, %d rounds: proj/ref = median over rounds of sum(module calls) / sum(reference calls) "
                 "[range]; per call: qkv, out (forward), out', qkv' (backward)\n",
                 std::max(o.repeats, 7));
    std::fprintf(out, "%-4s %-6s %5s %3s %4s %5s %9s %8s %15s   %s\n", "kind", "op", "E", "Hq", "Hkv", "N", "ref GF/s",
                 "proj/ref", "range", "per call");
    std::vector<double> ratios;
    for (const MhaBenchResult& r : results) {
      std::fprintf(out, "%-4s %-6s %5lld %3lld %4lld %5lld %9.1f %8.3f   [%5.3f, %5.3f]  ", r.kind.c_str(),
                   r.op.c_str(), static_cast<long long>(r.E), static_cast<long long>(r.Hq),
                   static_cast<long long>(r.Hkv), static_cast<long long>(r.N), r.paired_ref_gflops, r.paired_ratio,
                   r.paired_min, r.paired_max);
      for (double x : r.paired_steps) std::fprintf(out, " %5.3f", x);
      std::fprintf(out, "\n");
      ratios.push_back(r.paired_ratio);
    }
    if (!ratios.empty()) {
      const auto within = std::count_if(ratios.begin(), ratios.end(), [](double x) { return x <= 1.05; });
      std::fprintf(out, "proj/ref over the %zu configurations: median %.3f, range %.3f-%.3f, %lld within 5 %%\n",
                   ratios.size(), median_of(ratios), *std::min_element(ratios.begin(), ratios.end()),
                   *std::max_element(ratios.begin(), ratios.end()), static_cast<long long>(within));
    }
  }
  if (!o.json_path.empty()) {
    nlohmann::json j = {
        {"op", "mha"},
        {"machine", {{"cpu", mi.cpu}, {"isa", mi.isa}, {"openblas_core", mi.openblas_core}, {"threads", threads}}},
        {"sgemm_2048_gflops", sgemm_rate},
        {"bf16_matmul_2048_gflops", bf16_rate},
        {"causal", o.causal},
        {"bf16_matmuls", o.bf16_matmuls},
        {"bf16_weights_kept", o.bf16_matmuls && nn::weight_cache_enabled()},
        {"repeats", o.repeats}};
    nlohmann::json rs = nlohmann::json::array();
    for (const MhaBenchResult& r : results)
      rs.push_back({{"kind", r.kind},
                    {"op", r.op},
                    {"B", r.B},
                    {"E", r.E},
                    {"Hq", r.Hq},
                    {"Hkv", r.Hkv},
                    {"N", r.N},
                    {"module_ms", r.module_ms},
                    {"gemm_ms", r.gemm_ms},
                    {"sdpa_ms", r.sdpa_ms},
                    {"gemm_gflops", r.gemm_gflops},
                    {"sdpa_gflops", r.sdpa_gflops},
                    {"overhead", r.overhead},
                    {"proj_vs_sgemm", r.proj_vs_sgemm},
                    {"blas_ms", r.blas_ms},
                    {"module_gemm_vs_blas", r.module_gemm_vs_blas},
                    {"paired_proj_vs_ref", r.paired_ratio},
                    {"paired_proj_vs_ref_min", r.paired_min},
                    {"paired_proj_vs_ref_max", r.paired_max},
                    {"paired_ref_gflops", r.paired_ref_gflops},
                    {"paired_per_call", r.paired_steps}});
    j["results"] = rs;
    std::ofstream f(o.json_path);
    f << j.dump(2) << "\n";
    if (!f) throw Error(ErrorKind::system, "--json", "= " + o.json_path + ", which cannot be written, expected a writable path");
    std::fprintf(out, "wrote %s\n", o.json_path.c_str());
  }
  return results;
}

}  // namespace attn::bench
