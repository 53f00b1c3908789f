#pragma once
// The bf16 GEMMs of the BERT encoder's bf16 mode (docs/embeddings.md §2), on oneDNN's matmul:
//   x [M, K] (bf16 bits, row stride K) · Wᵀ with fp32 accumulation, then one epilogue (Bf16Epilogue)
//   inside the GEMM kernel — fp32 accumulation onto y, the bias, exact gelu, the bf16 output —
//   so that no separate pass over the output runs.
// W [N, K] (fp32, as the checkpoint holds it) is rounded to bf16 (nearest even) once, at
// construction, and reordered into the layout oneDNN's kernel asks for (blocked pairs for AMX /
// AVX512_BF16 brgemm); it is never rounded again.
//
// Threads: the encoder splits its rows between OpenMP threads and each thread runs its own rows'
// GEMMs (docs/embeddings.md §2). So every primitive here is created single-threaded (OpenMP's
// thread count set to 1 while oneDNN plans it) and runs on the calling thread. Primitives exist
// for blocks of kBlockRows rows and for the multiples of 16 below (created at construction, never
// after): a call runs M as full blocks, then the remainder as one smaller block; a remainder that
// is not a multiple of 16 goes through the thread's scratch rows, zero-padded.
//
// Without oneDNN, or where oneDNN would fall back to its reference matmul (a CPU without AVX-512),
// construction throws attn::Error (kind unsupported) saying so.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attn::models::detail {

/// Per-thread working memory of Bf16Matmul's calls (oneDNN's scratchpad, padded rows).
/// One per thread; grown on demand.
struct Bf16Scratch {
  std::vector<std::uint8_t> pad;
  std::vector<std::uint16_t> x;
  std::vector<std::uint8_t> y;
};

/// What a Bf16Matmul call computes from P = x·Wᵀ (fp32 accumulation), fixed at construction;
/// b is the bias [N] given to the constructor, gelu the exact one, ½·z·erfc(−z/√2).
enum class Bf16Epilogue {
  accumulate,         ///< y (fp32) += P
  bias_accumulate,    ///< y (fp32) += P + b          (y holds the residual: bias and residual in the GEMM)
  bias_to_bf16,       ///< yb (bf16)  = bf16(P + b)
  bias_gelu_to_bf16,  ///< yb (bf16)  = bf16(gelu(P + b))
};

class Bf16Matmul {
 public:
  static constexpr std::int64_t kBlockRows = 64;

  /// W [N, K] row-major fp32; b [N] for the epilogues with a bias (copied), else null.
  Bf16Matmul(const float* W, std::int64_t N, std::int64_t K, Bf16Epilogue epilogue = Bf16Epilogue::accumulate,
             const float* b = nullptr);
  ~Bf16Matmul();
  Bf16Matmul(Bf16Matmul&&) noexcept;
  Bf16Matmul& operator=(Bf16Matmul&&) noexcept;

  /// accumulate / bias_accumulate: y [M, N] += x [M, K]·Wᵀ (+ b) on the calling thread; x bf16
  /// bits, rows contiguous (stride K), y rows contiguous (stride N). M ≥ 0.
  void accumulate(const std::uint16_t* x, std::int64_t M, float* y, Bf16Scratch& scratch) const;
  /// bias_to_bf16 / bias_gelu_to_bf16: yb [M, N] (bf16 bits, stride N) = the epilogue of x·Wᵀ.
  void to_bf16(const std::uint16_t* x, std::int64_t M, std::uint16_t* yb, Bf16Scratch& scratch) const;

  std::int64_t rows_out() const { return N_; }
  std::int64_t cols_in() const { return K_; }
  Bf16Epilogue epilogue() const { return epilogue_; }
  /// oneDNN's implementation for the full blocks, e.g. "brg:avx512_core_amx_bf16".
  const std::string& impl() const;

 private:
  void run(const std::uint16_t* x, std::int64_t M, void* y, Bf16Scratch& scratch) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::int64_t N_ = 0, K_ = 0;
  Bf16Epilogue epilogue_ = Bf16Epilogue::accumulate;
};

/// oneDNN's implementation name for a single-threaded bf16 matmul [kBlockRows, K] × [K, N] on this
/// CPU, or why there is none ("none (...)"); no weights needed.
std::string bf16_matmul_probe(std::int64_t N, std::int64_t K);

}  // namespace attn::models::detail
