// AdamW, gradient clipping and the warmup + cosine schedule (include/attn/nn/optim.hpp).

#include "attn/nn/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "attn/error.hpp"
#include "attn/nn/weight_cache.hpp"

namespace attn::nn {
namespace {

// Parameters and gradients are cut into chunks of at most kChunk elements, the unit of work of
// the parallel passes below (one OpenMP loop over all chunks of all tensors: no serial small
// tensors, one barrier per pass). Elementwise updates do not depend on the cut; the norm's
// partial sums are per chunk and add in chunk order, so no result depends on the thread count.
constexpr std::int64_t kChunk = 1 << 14;
constexpr std::int64_t kParallelElems = 1 << 15;  // below: one thread (the loop is ~µs)

struct Piece {
  const Parameter* p;
  std::int64_t begin, end;
};

std::vector<Piece> pieces(const std::vector<Parameter>& ps, std::int64_t& total) {
  std::vector<Piece> c;
  total = 0;
  for (const Parameter& p : ps) {
    const std::int64_t n = p.grad.numel();
    total += n;
    for (std::int64_t b = 0; b < n; b += kChunk) c.push_back({&p, b, std::min(n, b + kChunk)});
  }
  return c;
}

// m, v and θ of elements [0, n): the formula of include/attn/nn/optim.hpp, with g·gs for g.
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, std::int64_t n, T gs, double lr, double wd, double b1, double b2,
                  double eps, double bc1, double bc2) {
  const T decay = static_cast<T>(1.0 - lr * wd), tb1 = static_cast<T>(b1), tb2 = static_cast<T>(b2);
  const T step = static_cast<T>(lr / bc1), tbc2 = static_cast<T>(1.0 / std::sqrt(bc2)), teps = static_cast<T>(eps);
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const T gi = g[i] * gs;
    m[i] = tb1 * m[i] + (T(1) - tb1) * gi;
    v[i] = tb2 * v[i] + (T(1) - tb2) * gi * gi;
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
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter& p = params_[i];
    ATTN_CHECK(p.value.dtype == DType::f32 || p.value.dtype == DType::f64, dtype, "module", "parameter ", p.name,
               " has dtype ", dtype_name(p.value.dtype), ", expected f32 or f64");
    decay_.push_back(config_.decays ? config_.decays(p) : p.value.rank >= 2);
    const std::int64_t n = p.value.numel();
    m_.emplace_back(p.value.dtype, std::initializer_list<std::int64_t>{n});
    v_.emplace_back(p.value.dtype, std::initializer_list<std::int64_t>{n});
    std::memset(m_.back().data(), 0, static_cast<std::size_t>(n) * dtype_size(p.value.dtype));
    std::memset(v_.back().data(), 0, static_cast<std::size_t>(n) * dtype_size(p.value.dtype));
    for (std::int64_t b = 0; b < n; b += kChunk) chunks_.push_back({i, b, std::min(n, b + kChunk)});
  }
}

void AdamW::step(double lr, double grad_scale) {
  ATTN_CHECK(std::isfinite(grad_scale) && grad_scale >= 0, value, "grad_scale", "grad_scale = ", grad_scale,
             ", expected finite and ≥ 0");
  ++t_;
  const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(t_));
  std::int64_t total = 0;
  for (const Parameter& p : params_) total += p.value.numel();
  const auto n_chunks = static_cast<std::int64_t>(chunks_.size());
#pragma omp parallel for schedule(static) if (total >= kParallelElems)
  for (std::int64_t c = 0; c < n_chunks; ++c) {
    const Chunk& k = chunks_[static_cast<std::size_t>(c)];
    const Parameter& p = params_[k.param];
    const double wd = decay_[k.param] ? config_.weight_decay : 0.0;
    const std::int64_t b = k.begin, n = k.end - k.begin;
    if (p.value.dtype == DType::f32)
      adamw_update(static_cast<float*>(p.value.data) + b, static_cast<const float*>(p.grad.data) + b,
                   m_[k.param].ptr<float>() + b, v_[k.param].ptr<float>() + b, n, static_cast<float>(grad_scale), lr,
                   wd, config_.beta1, config_.beta2, config_.eps, bc1, bc2);
    else
      adamw_update(static_cast<double*>(p.value.data) + b, static_cast<const double*>(p.grad.data) + b,
                   m_[k.param].ptr<double>() + b, v_[k.param].ptr<double>() + b, n, grad_scale, lr, wd,
                   config_.beta1, config_.beta2, config_.eps, bc1, bc2);
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

// Σ g² of one chunk in fp64, and g *= s: typed loops over a known length, so they vectorise.
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

double grad_norm(const Module& module) {
  const std::vector<Parameter> ps = module.parameters();
  std::int64_t total = 0;
  const std::vector<Piece> c = pieces(ps, total);
  std::vector<double> partial(c.size());
  const auto n_chunks = static_cast<std::int64_t>(c.size());
#pragma omp parallel for schedule(static) if (total >= kParallelElems)
  for (std::int64_t i = 0; i < n_chunks; ++i) {
    const Piece& k = c[static_cast<std::size_t>(i)];
    const std::int64_t n = k.end - k.begin;
    partial[static_cast<std::size_t>(i)] =
        k.p->grad.dtype == DType::f32 ? sum_squares(static_cast<const float*>(k.p->grad.data) + k.begin, n)
                                      : sum_squares(static_cast<const double*>(k.p->grad.data) + k.begin, n);
  }
  double sq = 0;
  for (const double x : partial) sq += x;  // chunk order: independent of the thread count
  return std::sqrt(sq);
}

double clip_scale(double norm, double max_norm) {
  ATTN_CHECK(max_norm > 0, value, "max_norm", "max_norm = ", max_norm, ", expected > 0");
  return norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double clip_grad_norm(const Module& module, double max_norm) {
  ATTN_CHECK(max_norm > 0, value, "max_norm", "max_norm = ", max_norm, ", expected > 0");
  const double norm = grad_norm(module);
  const double s = clip_scale(norm, max_norm);
  if (s != 1.0) {
    const std::vector<Parameter> ps = module.parameters();
    std::int64_t total = 0;
    const std::vector<Piece> c = pieces(ps, total);
    const auto n_chunks = static_cast<std::int64_t>(c.size());
#pragma omp parallel for schedule(static) if (total >= kParallelElems)
    for (std::int64_t i = 0; i < n_chunks; ++i) {
      const Piece& k = c[static_cast<std::size_t>(i)];
      const std::int64_t n = k.end - k.begin;
      if (k.p->grad.dtype == DType::f32)
        scale(static_cast<float*>(k.p->grad.data) + k.begin, n, static_cast<float>(s));
      else
        scale(static_cast<double*>(k.p->grad.data) + k.begin, n, s);
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
