#pragma once
// The module benchmark behind `attn bench --op mha`: nn::MultiheadAttention<float> self-attention
// on (B, N, E) inputs, forward and forward+backward, against the sum of the module's own calls
// timed alone in the same run — its projection/out-projection sgemms and its sdpa_forward /
// sdpa_backward on the same strided head views — and OpenBLAS sgemm 2048³ (the best GEMM here).
// Reports the time split (projections vs attention), the module's overhead over that sum and the
// projections' rate as a fraction of the sgemm rate, and (fp32) the same GEMMs as plain threaded
// OpenBLAS calls, the other way to run them. The torch side is bench/mha_torch.py.

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace attn::bench {

struct MhaBenchOptions {
  std::vector<std::int64_t> embed_dims{512, 1024};
  std::vector<std::int64_t> heads{8, 16};
  std::vector<std::string> kinds{"mha", "gqa", "mqa"};  ///< gqa: num_kv_heads = heads / 4
  std::vector<std::int64_t> lengths{512, 2048};
  std::int64_t batch = 1;
  bool causal = false;
  int repeats = 5;
  int threads = 0;  ///< 0 = all
  /// The module under nn::MatmulPrecisionGuard(bf16) (its Linears round x, W and dy to bf16 and
  /// multiply on oneDNN), and the "gemm" column the same calls alone; the SDPA stays fp32.
  bool bf16_matmuls = false;
  std::string json_path;
};

struct MhaBenchResult {
  std::string kind, op;  ///< op: "fwd" or "fwdbwd"
  std::int64_t B, E, Hq, Hkv, N;
  double module_ms, gemm_ms, sdpa_ms;  ///< medians
  double gemm_gflops, sdpa_gflops;
  double overhead;       ///< module / (gemm + sdpa) − 1
  double proj_vs_sgemm;  ///< gemm_gflops / the same run's best GEMM 2048³ rate (sgemm; oneDNN bf16 with bf16_matmuls)
  /// fp32: the same GEMMs as plain OpenBLAS calls on OpenBLAS's own threads (median), and that
  /// time / gemm_ms (> 1: the module's OpenMP-split path is faster); 0 with bf16_matmuls.
  double blas_ms, module_gemm_vs_blas;
  /// bf16 matmuls: the module's projection calls against the bare oneDNN bf16 GEMMs of the same
  /// shapes on bf16 operands, alternated call by call: the median over rounds of Σ module / Σ
  /// reference, its range, the reference's rate, and per call (fwd: QKV, out; fwdbwd: + out's
  /// backward, QKV's backward) the median of its own pair ratios. 0 / empty without bf16 matmuls.
  double paired_ratio = 0, paired_min = 0, paired_max = 0, paired_ref_gflops = 0;
  std::vector<double> paired_steps;
};

std::vector<MhaBenchResult> run_mha_bench(const MhaBenchOptions& options, std::FILE* out);

}  // namespace attn::bench
