// AdamW, gradient clipping and the warmup + cosine schedule (include/attn/nn/optim.hpp).

#include "attn/nn/optim.hpp"

#include <cmath>
#include <cstring>
#include <numbers>

#include "attn/error.hpp"
#include "attn/nn/weight_cache.hpp"

namespace attn::nn {
namespace {

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, double lr, double wd, double b1, double b2, double eps,
                  double bc1, double bc2) {
  const T decay = static_cast<T>(1.0 - lr * wd), tb1 = static_cast<T>(b1), tb2 = static_cast<T>(b2);
  const T step = static_cast<T>(lr / bc1), tbc2 = static_cast<T>(1.0 / std::sqrt(bc2)), teps = static_cast<T>(eps);
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (std::int64_t i = 0; i < n; ++i) {
    m[i] = tb1 * m[i] + (T(1) - tb1) * g[i];
    v[i] = tb2 * v[i] + (T(1) - tb2) * g[i] * g[i];
    p[i] = p[i] * decay - step * m[i] / (std::sqrt(v[i]) * tbc2 + teps);
  }
}

}  // namespace

AdamW::AdamW(const Module& module, AdamWConfig config) : config_(std::move(config)), params_(module.parameters()) {
  ATTN_CHECK(config_.beta1 >= 0 && config_.beta1 < 1 && config_.beta2 >= 0 && config_.beta2 < 1, value, "beta",
             "beta1 = ", config_.beta1, ", beta2 = ", config_.beta2, ", expected both in [0, 1)");
  ATTN_CHECK(config_.eps > 0, value, "eps", "eps = ", config_.eps, ", expected > 0");
  ATTN_CHECK(config_.weight_decay >= 0, value, "weight_decay", "weight_decay = ", config_.weight_decay,
             ", expected ≥ 0");
  for (const Parameter& p : params_) {
    ATTN_CHECK(p.value.dtype == DType::f32 || p.value.dtype == DType::f64, dtype, "module", "parameter ", p.name,
               " has dtype ", dtype_name(p.value.dtype), ", expected f32 or f64");
    decay_.push_back(config_.decays ? config_.decays(p) : p.value.rank >= 2);
    const std::int64_t n = p.value.numel();
    m_.emplace_back(p.value.dtype, std::initializer_list<std::int64_t>{n});
    v_.emplace_back(p.value.dtype, std::initializer_list<std::int64_t>{n});
    std::memset(m_.back().data(), 0, static_cast<std::size_t>(n) * dtype_size(p.value.dtype));
    std::memset(v_.back().data(), 0, static_cast<std::size_t>(n) * dtype_size(p.value.dtype));
  }
}

void AdamW::step(double lr) {
  ++t_;
  const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(t_));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter& p = params_[i];
    const double wd = decay_[i] ? config_.weight_decay : 0.0;
    if (p.value.dtype == DType::f32)
      adamw_update(static_cast<float*>(p.value.data), static_cast<const float*>(p.grad.data), m_[i].ptr<float>(),
                   v_[i].ptr<float>(), p.value.numel(), lr, wd, config_.beta1, config_.beta2, config_.eps, bc1, bc2);
    else
      adamw_update(static_cast<double*>(p.value.data), static_cast<const double*>(p.grad.data), m_[i].ptr<double>(),
                   v_[i].ptr<double>(), p.value.numel(), lr, wd, config_.beta1, config_.beta2, config_.eps, bc1, bc2);
  }
  mark_weights_changed();  // kept bf16 weight copies are stale now (attn/nn/weight_cache.hpp)
}

std::vector<Parameter> AdamW::state() const {
  std::vector<Parameter> s;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    TensorView m = params_[i].value, v = params_[i].value;
    m.data = m_[i].data();
    v.data = v_[i].data();
    s.push_back({"exp_avg." + params_[i].name, m, {}});
    s.push_back({"exp_avg_sq." + params_[i].name, v, {}});
  }
  return s;
}

namespace {

// Σ g² of one gradient in fp64, and g *= s: typed loops over a known length, so they vectorise
// (this ran as a per-element dtype test and numel() product, ~2 % of a training step).
template <class T>
double sum_squares(const T* g, std::int64_t n) {
  double sq = 0;
#pragma omp simd reduction(+ : sq)
  for (std::int64_t i = 0; i < n; ++i) sq += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  return sq;
}

template <class T>
void scale(T* g, std::int64_t n, T s) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) g[i] *= s;
}

}  // namespace

double clip_grad_norm(const Module& module, double max_norm) {
  ATTN_CHECK(max_norm > 0, value, "max_norm", "max_norm = ", max_norm, ", expected > 0");
  const std::vector<Parameter> ps = module.parameters();
  double sq = 0;
  for (const Parameter& p : ps) {
    const std::int64_t n = p.grad.numel();
    sq += p.grad.dtype == DType::f32 ? sum_squares(static_cast<const float*>(p.grad.data), n)
                                     : sum_squares(static_cast<const double*>(p.grad.data), n);
  }
  const double norm = std::sqrt(sq);
  if (norm > max_norm) {
    const double s = max_norm / (norm + 1e-6);
    for (const Parameter& p : ps) {
      const std::int64_t n = p.grad.numel();
      if (p.grad.dtype == DType::f32)
        scale(static_cast<float*>(p.grad.data), n, static_cast<float>(s));
      else
        scale(static_cast<double*>(p.grad.data), n, s);
    }
  }
  return norm;
}

double LrSchedule::at(std::int64_t step) const {
  if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (step >= total_steps) return min_lr;
  const double span = static_cast<double>(std::max<std::int64_t>(total_steps - warmup_steps, 1));
  const double progress = static_cast<double>(step - warmup_steps) / span;
  return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace attn::nn
