#pragma once
/// Training utilities for attn::nn modules (docs/nn.md): AdamW with decoupled weight decay
/// (Loshchilov & Hutter 2019, as torch.optim.AdamW), gradient clipping by the global L2 norm, and
/// a linear-warmup + cosine learning-rate schedule.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attn/nn/module.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.01;
  /// Which parameters decay; default: rank ≥ 2 (weight matrices and embeddings), not biases or
  /// norm gains (the GPT-2 / BERT convention).
  std::function<bool(const Parameter&)> decays;
};

/// One AdamW state per parameter of a module (f32 or f64 parameters; the state has their dtype).
/// step(lr), with t the number of steps taken so far plus one:
///   θ ← θ − lr·λ·θ (when the parameter decays);  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
///   θ ← θ − lr·(m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
///
/// One step is one parallel pass over all parameters, cut into fixed chunks (each element's update
/// is the same arithmetic on any thread count); step(lr, grad_scale) uses grad_scale·g (rounded to
/// the parameter's dtype, as clip_grad_norm's in-place scaling would) without writing g: the clip
/// fused into the update (grad_norm + clip_scale below).
class AdamW {
 public:
  /// Keeps the module's parameter views: the module must outlive the optimizer.
  AdamW(const Module& module, AdamWConfig config = {});
  void step(double lr) { step(lr, 1.0); }
  void step(double lr, double grad_scale);
  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return config_; }
  /// The state as named views: "exp_avg.<name>", "exp_avg_sq.<name>" (for checkpoints).
  std::vector<Parameter> state() const;

 private:
  AdamWConfig config_;
  std::vector<Parameter> params_;
  std::vector<bool> decay_;
  std::vector<Tensor> m_, v_;
  struct Chunk {
    std::size_t param;
    std::int64_t begin, end;
  };
  std::vector<Chunk> chunks_;  // the parameters cut into pieces of at most kChunk elements
  std::int64_t t_ = 0;
};

/// The global L2 norm ‖g‖ of every gradient of `module`, in fp64: one parallel pass over fixed
/// chunks of the gradients whose partial sums add in a fixed order, so the same bits on any
/// thread count.
double grad_norm(const Module& module);
/// The factor clip_grad_norm scales by: max_norm / (norm + 1e−6) when norm > max_norm, else 1.
double clip_scale(double norm, double max_norm);
/// Scales every gradient of `module` by clip_scale(‖g‖, max_norm) (torch.nn.utils.clip_grad_norm_);
/// returns ‖g‖ (grad_norm) before clipping.
double clip_grad_norm(const Module& module, double max_norm);

struct LrSchedule {
  double base_lr = 1e-3;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  double min_lr = 0.0;
  /// lr of step s (0-based): base·(s + 1)/warmup during warmup, then
  /// min + ½(base − min)(1 + cos(π·(s − warmup)/(total − warmup))), min after total.
  double at(std::int64_t step) const;
};

}  // namespace attn::nn
