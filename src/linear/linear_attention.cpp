// The public entry points of linear attention (include/attn/linear_attention.hpp): validate, then
// run the reference (params.backend = reference, or automatic with f64 inputs: exact fp64, O(N²))
// or the cpu path (cpu, or automatic with f32/bf16/f16 inputs: fp32 compute).

#include "attn/linear_attention.hpp"

#include "attn/error.hpp"
#include "linear/backends.hpp"
#include "linear/problem.hpp"

namespace attn {
namespace {
bool use_reference(const LinearAttentionParams& params, const TensorView& q) {
  return params.backend == Backend::reference || (params.backend == Backend::automatic && q.dtype == DType::f64);
}
}  // namespace

const char* feature_map_name(FeatureMap map) { return map == FeatureMap::elu ? "elu" : "favor"; }

std::int64_t linear_attention_features(const LinearAttentionParams& params, std::int64_t D) {
  if (params.feature_map == FeatureMap::elu) return D;
  ATTN_CHECK(params.projection.defined() && params.projection.rank == 2, value, "params.projection",
             "is not given (or not rank 2), expected an [m, D] matrix for feature_map = favor");
  return params.projection.shape[0];
}

void linear_attention_forward(const LinearAttentionOutputs& outputs, const TensorView& q, const TensorView& k,
                              const TensorView& v, const LinearAttentionParams& params) {
  const linear::LinearProblem p = linear::validate_forward(outputs, q, k, v, params);
  if (use_reference(params, q))
    linear::reference_forward(p, outputs);
  else
    linear::cpu_forward(p, outputs);
}

void linear_attention_backward(const LinearAttentionGrads& grads, const TensorView& dout, const TensorView& q,
                               const TensorView& k, const TensorView& v, const TensorView& out, const TensorView& den,
                               const LinearAttentionParams& params) {
  const linear::LinearProblem p = linear::validate_backward(grads, dout, q, k, v, out, den, params);
  if (use_reference(params, q))
    linear::reference_backward(p, grads, dout);
  else
    linear::cpu_backward(p, grads, dout, out, den);
}

void linear_attention_step(const TensorView& out, const LinearAttentionState& state_out, const TensorView& q,
                           const TensorView& k, const TensorView& v, const LinearAttentionState& state_in,
                           const LinearAttentionParams& params) {
  const linear::LinearProblem p = linear::validate_step(out, state_out, q, k, v, state_in, params);
  if (use_reference(params, q))
    linear::reference_step(p, out);
  else
    linear::cpu_step(p, out);
}

}  // namespace attn
