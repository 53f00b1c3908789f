#pragma once
// Baselines measured in the same run as attn (docs/architecture.md §8): the machine's sgemm rate and a naive
// three-step attention on OpenBLAS (S = Q·Kᵀ, row softmax, O = P·V).

#include <cstdint>

namespace attn::bench {

/// OpenBLAS sgemm C = A·B, n x n x n, on `threads` OpenBLAS threads: GFLOP/s (2n³ flops), median
/// of `reps` after a warm-up. Leaves OpenBLAS at one thread (what the naive baseline needs).
double sgemm_gflops(std::int64_t n, int threads, int reps);

/// Naive fp32 attention forward on contiguous q [B, Hq, Nq, D], k [B, Hkv, Nk, D],
/// v [B, Hkv, Nk, Dv] -> out [B, Hq, Nq, Dv], scale 1/sqrt(D). Per (b, h), on an OpenMP loop over
/// heads with single-threaded OpenBLAS: S = scale·Q·Kᵀ by cblas_sgemm [Nq, Nk], row softmax with
/// attn's vectorised exp, O = P·V by cblas_sgemm. Causal (bottom-right aligned, = top-left when
/// Nq = Nk) computes the full square and masks it in the softmax: it cannot skip work.
class NaiveAttention {
 public:
  struct Shape {
    std::int64_t B, Hq, Hkv, Nq, Nk, D, Dv;
    bool causal;
  };
  NaiveAttention(const Shape& shape, int threads);
  ~NaiveAttention();
  NaiveAttention(const NaiveAttention&) = delete;
  NaiveAttention& operator=(const NaiveAttention&) = delete;

  void run(float* out, const float* q, const float* k, const float* v);
  /// Name of the softmax implementation in use ("avx512", "avx2", "scalar").
  const char* softmax_isa() const { return softmax_name_; }

 private:
  Shape shape_;
  int threads_;
  float* scores_ = nullptr;  // one [Nq, Nk] buffer per thread
  const char* softmax_name_ = "scalar";
};

/// Naive fp32 attention backward, the strong BLAS baseline of the backward benchmark (the
/// FlashAttention-2 backward of docs/architecture.md §7 done with materialised [Nq, Nk] matrices). Contiguous tensors as NaiveAttention, plus
/// out/dout [B, Hq, Nq, Dv] -> dq [B, Hq, Nq, D], dk [B, Hkv, Nk, D], dv [B, Hkv, Nk, Dv].
/// An OpenMP loop over (b, kv head) units with single-threaded OpenBLAS; each unit runs its G q
/// heads in order (so dK and dV accumulate without sharing), per q head:
///   S = scale·Q·Kᵀ (sgemm), P = softmax(S) (attn's vectorised exp; causal masks the full square),
///   dV += Pᵀ·dO, dP = dO·Vᵀ (sgemm), Δ = rowsum(dO∘O), dS = P∘(dP − Δ) (vectorised rows),
///   dQ = scale·dS·K, dK += scale·dSᵀ·Q (sgemm).
/// Five [Nq, Nk]-sized GEMMs: 2.5× the forward's flops. Two [Nq, Nk] buffers per thread.
class NaiveAttentionBackward {
 public:
  using Shape = NaiveAttention::Shape;
  NaiveAttentionBackward(const Shape& shape, int threads);
  ~NaiveAttentionBackward();
  NaiveAttentionBackward(const NaiveAttentionBackward&) = delete;
  NaiveAttentionBackward& operator=(const NaiveAttentionBackward&) = delete;

  /// `units` > 0 limits the run to the first `units` (b, kv head) units (the memory probe: every
  /// unit reuses the same buffers, so the peak is reached in the first); the rest are not written.
  void run(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
           const float* out, std::int64_t units = -1);

 private:
  Shape shape_;
  int threads_;
  float* p_ = nullptr;   // S, then P: one [Nq, Nk] per thread
  float* dp_ = nullptr;  // dP, then dS: one [Nq, Nk] per thread
  float* delta_ = nullptr;  // Δ: one [Nq] per thread
};

}  // namespace attn::bench
