#pragma once
// Baselines measured in the same run as attn (DESIGN.md §12): the machine's sgemm rate and a naive
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

}  // namespace attn::bench
