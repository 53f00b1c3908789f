// Baselines: OpenBLAS sgemm rate and the naive BLAS attention. OpenBLAS is the pthread build; its
// kernel is forced by OPENBLAS_CORETYPE (env.hpp) before it loads.

#include "baselines.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "naive_softmax.hpp"

extern "C" void openblas_set_num_threads(int num_threads);

namespace attn::bench {
namespace {

float* alloc_floats(std::int64_t n) {
  return static_cast<float*>(::operator new[](static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * sizeof(float),
                                              std::align_val_t{64}));
}
void free_floats(float* p) { ::operator delete[](p, std::align_val_t{64}); }

}  // namespace

double sgemm_gflops(std::int64_t n, int threads, int reps) {
  std::vector<float> a(static_cast<std::size_t>(n * n)), b(a.size()), c(a.size());
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : a) x = dist(rng);
  for (auto& x : b) x = dist(rng);
  const int ni = static_cast<int>(n);
  openblas_set_num_threads(threads);
  std::vector<double> seconds;
  for (int r = -1; r < std::max(reps, 1); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0f, a.data(), ni, b.data(), ni, 0.0f,
                c.data(), ni);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r >= 0) seconds.push_back(dt);
  }
  openblas_set_num_threads(1);
  std::sort(seconds.begin(), seconds.end());
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / seconds[seconds.size() / 2] *
         1e-9;
}

NaiveAttention::NaiveAttention(const Shape& shape, int threads) : shape_(shape), threads_(std::max(threads, 1)) {
  scores_ = alloc_floats(shape_.Nq * shape_.Nk * threads_);
  best_softmax_rows(&softmax_name_);
}

NaiveAttention::~NaiveAttention() { free_floats(scores_); }

void NaiveAttention::run(float* out, const float* q, const float* k, const float* v) {
  const Shape& s = shape_;
  const std::int64_t G = s.Hq / s.Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.D));
  const std::int64_t causal_offset = s.causal ? s.Nk - s.Nq : -1;
  const SoftmaxRowsFn softmax_rows = best_softmax_rows();
  const int nq = static_cast<int>(s.Nq), nk = static_cast<int>(s.Nk), d = static_cast<int>(s.D),
            dv = static_cast<int>(s.Dv);
  openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
  for (std::int64_t bh = 0; bh < s.B * s.Hq; ++bh) {
    const std::int64_t b = bh / s.Hq, h = bh % s.Hq, hk = b * s.Hkv + h / G;
    const float* q_bh = q + bh * s.Nq * s.D;
    const float* k_bh = k + hk * s.Nk * s.D;
    const float* v_bh = v + hk * s.Nk * s.Dv;
    float* out_bh = out + bh * s.Nq * s.Dv;
    float* scores = scores_ + static_cast<std::int64_t>(omp_get_thread_num()) * s.Nq * s.Nk;  // S, then P: [Nq, Nk]
    // 1. S = scale·Q·Kᵀ
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, scale, q_bh, d, k_bh, d, 0.0f, scores, nk);
    // 2. P = softmax(S) by rows, causal mask applied here
    softmax_rows(scores, s.Nq, s.Nk, s.Nk, causal_offset);
    // 3. O = P·V
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, dv, nk, 1.0f, scores, nk, v_bh, dv, 0.0f, out_bh, dv);
  }
}

NaiveAttentionBackward::NaiveAttentionBackward(const Shape& shape, int threads)
    : shape_(shape), threads_(std::max(threads, 1)) {
  p_ = alloc_floats(shape_.Nq * shape_.Nk * threads_);
  dp_ = alloc_floats(shape_.Nq * shape_.Nk * threads_);
  delta_ = alloc_floats(shape_.Nq * threads_);
}

NaiveAttentionBackward::~NaiveAttentionBackward() {
  free_floats(p_);
  free_floats(dp_);
  free_floats(delta_);
}

void NaiveAttentionBackward::run(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                 const float* v, const float* out, std::int64_t units) {
  const Shape& s = shape_;
  const std::int64_t G = s.Hq / s.Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.D));
  const std::int64_t causal_offset = s.causal ? s.Nk - s.Nq : -1;
  const SoftmaxRowsFn softmax_rows = best_softmax_rows();
  const BwdRowFns rows = best_bwd_rows();
  const int nq = static_cast<int>(s.Nq), nk = static_cast<int>(s.Nk), d = static_cast<int>(s.D),
            dv_ = static_cast<int>(s.Dv);
  const std::int64_t n_units = units > 0 ? std::min(units, s.B * s.Hkv) : s.B * s.Hkv;
  openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
  for (std::int64_t unit = 0; unit < n_units; ++unit) {  // unit = b * Hkv + kv head
    const std::int64_t b = unit / s.Hkv, hk = unit % s.Hkv;
    const std::int64_t t = omp_get_thread_num();
    float* p = p_ + t * s.Nq * s.Nk;    // S, then P
    float* dp = dp_ + t * s.Nq * s.Nk;  // dP, then dS
    float* delta = delta_ + t * s.Nq;
    const float* k_u = k + unit * s.Nk * s.D;
    const float* v_u = v + unit * s.Nk * s.Dv;
    float* dk_u = dk + unit * s.Nk * s.D;
    float* dv_u = dv + unit * s.Nk * s.Dv;
    for (std::int64_t g = 0; g < G; ++g) {
      const std::int64_t bh = b * s.Hq + hk * G + g;
      const float* q_h = q + bh * s.Nq * s.D;
      const float* o_h = out + bh * s.Nq * s.Dv;
      const float* do_h = dout + bh * s.Nq * s.Dv;
      float* dq_h = dq + bh * s.Nq * s.D;
      const float beta = g == 0 ? 0.0f : 1.0f;  // dK, dV: the first q head writes, the others add
      // 1. S = scale·Q·Kᵀ; 2. P = softmax(S), causal mask on the full square
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, scale, q_h, d, k_u, d, 0.0f, p, nk);
      softmax_rows(p, s.Nq, s.Nk, s.Nk, causal_offset);
      // 3. dV += Pᵀ·dO   [Nk, Dv] = [Nk, Nq]·[Nq, Dv]
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, dv_, nq, 1.0f, p, nk, do_h, dv_, beta, dv_u, dv_);
      // 4. dP = dO·Vᵀ    [Nq, Nk] = [Nq, Dv]·[Dv, Nk]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, dv_, 1.0f, do_h, dv_, v_u, dv_, 0.0f, dp, nk);
      // 5. Δ = rowsum(dO∘O); dS = P∘(dP − Δ)
      rows.delta(delta, do_h, o_h, s.Nq, s.Dv);
      rows.ds(dp, p, delta, s.Nq, s.Nk, s.Nk);
      // 6. dQ = scale·dS·K  [Nq, D] = [Nq, Nk]·[Nk, D]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, scale, dp, nk, k_u, d, 0.0f, dq_h, d);
      // 7. dK += scale·dSᵀ·Q  [Nk, D] = [Nk, Nq]·[Nq, D]
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d, nq, scale, dp, nk, q_h, d, beta, dk_u, d);
    }
  }
}

}  // namespace attn::bench
