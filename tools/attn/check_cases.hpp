#pragma once
// The cases `attn check` runs: a fixed list covering shapes, masks, GQA and dtypes, extended by
// seeded random cases when more are asked for. A case builds its inputs (random normal values,
// rounded to the dtype) and its SdpaParams; each backend then runs it into fresh outputs.

#include <attn/sdpa.hpp>
#include <attn/tensor.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attn_cli {

/// The mask or score feature a case exercises (one per case keeps failures easy to read).
enum class Feature { none, causal, window, lengths, bias, bool_mask, dropout, alibi, softcap, varlen };
const char* feature_name(Feature f);

struct CheckCase {
  std::int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 8, Dv = 8;
  attn::DType dtype = attn::DType::f32;
  Feature feature = Feature::none;
  bool bshd = false;  ///< memory [B, N, H, D] (the logical tensor is permuted) instead of [B, H, N, D]
  /// "bf16 B2 H4/2 N33x47 D24/24 causal bshd"
  std::string name() const;
};

/// The first `count` cases: the fixed list, then random ones drawn with `seed`.
std::vector<CheckCase> make_cases(int count, std::uint64_t seed);
/// Size of the fixed list (the default --cases).
int fixed_case_count();

/// Inputs and params of one case. The params' views point into the tensors held here.
struct CheckProblem {
  attn::Tensor q, k, v, bias, bool_mask;
  attn::SdpaParams params;
  attn::TensorView qv, kv, vv;  ///< logical [B, H, N, D] views (permuted when bshd)
};
std::unique_ptr<CheckProblem> build_problem(const CheckCase& c, std::uint64_t seed);

/// Outputs of one run: out (dtype of q, layout of q) and lse (f32), NaN-filled before the call.
struct CheckOutputs {
  attn::Tensor out, lse;
  attn::TensorView outv;
};
CheckOutputs make_outputs(const CheckCase& c);

/// Gradients of one backward run, in f32 (so the comparison sees the kernels' accumulation, not a
/// final rounding): dq, dk, dv in the layout of q, k, v, and dbias shaped like the bias (when the
/// case has one). NaN-filled before the call.
struct CheckGrads {
  attn::Tensor dq, dk, dv, dbias;
  attn::SdpaGrads views;
};
CheckGrads make_grads(const CheckCase& c, const CheckProblem& p);
/// A random dout (dtype and layout of out), seeded.
CheckOutputs make_dout(const CheckCase& c, std::uint64_t seed);

}  // namespace attn_cli
