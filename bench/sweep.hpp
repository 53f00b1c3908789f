#pragma once
// The benchmark sweep shared by `attn bench` and attn_gbench: shape sets, the cases run on each
// shape (attn's cpu backend in fp32 and bf16, the naive BLAS baseline in fp32), one-case runners
// and median timing.

#include <attn/tensor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace attn::bench {

/// One forward problem: q [B, Hq, Nq, D], k/v [B, Hkv, Nk, D/Dv], causal bottom-right aligned
/// (the same as top-left when Nq = Nk).
struct Shape {
  std::int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 64, Dv = 64;
  bool causal = false;
  /// "B1 H16/16 N2048 D128 causal" (Nq/Nk shown apart only when they differ).
  std::string name() const;
};

/// Query-key pairs that are visible (causal: N(N+1)/2 when Nq = Nk).
double visible_pairs(const Shape& s);
/// Forward flops (docs/performance.md): 2·B·Hq·(visible pairs)·(D + Dv).
double fwd_flops(const Shape& s);

/// What a case measures: the forward, the backward (given the forward's out and lse, computed once
/// before timing), or both in sequence.
enum class Op { fwd, bwd, fwdbwd };
const char* op_name(Op op);
/// "fwd", "bwd" or "fwdbwd"; throws attn::Error otherwise.
Op parse_op(const std::string& name);
/// Flops of one run of `op`: the forward's, 2.5× it for the backward (five GEMM-sized products
/// against two), 3.5× for both.
double op_flops(const Shape& s, Op op);

/// Named shape sets: "full" (B=1, H=16, D ∈ {64, 128}, N ∈ {512 .. 4096}, causal and not, plus
/// GQA Hq=32/Hkv=8 D=128 N=2048), "quick" (a subset that runs in well under a minute), "smoke"
/// (tiny, for the ctest). Otherwise a comma-separated list of B x Hq x Hkv x N x D with an
/// optional trailing "c" for causal, e.g. "1x16x16x1024x128c,1x32x8x2048x128". Throws attn::Error.
std::vector<Shape> shape_set(const std::string& name);

enum class Impl { cpu, naive_blas };
const char* impl_name(Impl impl);

/// What one measurement runs.
struct Case {
  Shape shape;
  Impl impl = Impl::cpu;
  DType dtype = DType::f32;
  Op op = Op::fwd;
};
/// For each shape: naive_blas f32, cpu f32, cpu bf16 (the naive baseline is fp32 only).
std::vector<Case> cases_for(const std::vector<Shape>& shapes, Op op = Op::fwd);

/// One prepared case: owns random inputs and outputs; run() executes the case's op once. For the
/// backward, the constructor runs the forward once (same implementation) for out and lse.
class CaseRunner {
 public:
  CaseRunner(const Case& c, int threads);
  ~CaseRunner();
  CaseRunner(const CaseRunner&) = delete;
  CaseRunner& operator=(const CaseRunner&) = delete;
  void run();
  /// The output of the last run() as fp32, row-major: fwd: out [B, Hq, Nq, Dv]; bwd and fwdbwd:
  /// dq, dk and dv one after the other.
  std::vector<float> output_f32() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct Timing {
  double median_s = 0, min_s = 0;
};
/// Runs fn `warmup` times, then `reps` times timed (wall clock); median and minimum.
Timing time_runs(const std::function<void()>& fn, int warmup, int reps);

}  // namespace attn::bench
