// nn::FeedForward forward and backward (include/attn/nn/feed_forward.hpp has the math): two (or,
// gated, two) GEMMs through Linear on OpenBLAS and one elementwise pass per row between them, the
// vector passes of activation_rows.hpp.

#include "attn/nn/feed_forward.hpp"

#include <cmath>

#include "attn/error.hpp"
#include "nn/activation_rows.hpp"
#include "nn/gemm.hpp"
#include "nn/init.hpp"
#include "nn/params.hpp"

namespace attn::nn {
namespace {

constexpr std::int64_t kParallelElems = 1 << 15;

template <class T>
Tensor make_block(const FfnConfig& c) {
  ATTN_CHECK(c.dim >= 1, value, "dim", "dim = ", c.dim, ", expected ≥ 1");
  ATTN_CHECK(c.hidden >= 1, value, "hidden", "hidden = ", c.hidden, ", expected ≥ 1");
  const std::int64_t E = c.dim, F1 = (c.activation == Activation::swiglu ? 2 : 1) * c.hidden;
  detail::ParamBlock<T> pb({F1 * E, E * c.hidden, c.bias ? F1 : 0, c.bias ? E : 0});
  detail::fill_uniform(pb.value[0], F1 * E, 1.0 / std::sqrt(static_cast<double>(E)), c.seed);
  detail::fill_uniform(pb.value[1], E * c.hidden, 1.0 / std::sqrt(static_cast<double>(c.hidden)), c.seed + 1);
  return std::move(pb.storage);
}

// Pointers into the block of make_block: value v or gradient g of part i.
template <class T>
T* part(const Tensor& s, const FfnConfig& c, int i, bool grad) {
  const std::int64_t E = c.dim, F1 = (c.activation == Activation::swiglu ? 2 : 1) * c.hidden;
  const std::int64_t n[4] = {F1 * E, E * c.hidden, c.bias ? F1 : 0, c.bias ? E : 0};
  if (n[i] == 0) return nullptr;
  std::int64_t off = grad ? n[0] + n[1] + n[2] + n[3] : 0;
  for (int j = 0; j < i; ++j) off += n[j];
  return s.ptr<T>() + off;
}

}  // namespace

template <class T>
FeedForward<T>::FeedForward(const FfnConfig& config)
    : config_(config),
      storage_(make_block<T>(config)),
      fc1_(config.dim, (config.activation == Activation::swiglu ? 2 : 1) * config.hidden,
           part<T>(storage_, config, 0, false), part<T>(storage_, config, 0, true), part<T>(storage_, config, 2, false),
           part<T>(storage_, config, 2, true)),
      fc2_(config.hidden, config.dim, part<T>(storage_, config, 1, false), part<T>(storage_, config, 1, true),
           part<T>(storage_, config, 3, false), part<T>(storage_, config, 3, true)) {}

template <class T>
void FeedForward<T>::forward(const T* x, std::int64_t M, T* y) {
  const std::int64_t F = config_.hidden, F1 = fc1_.out_features();
  const DType dt = detail::dtype_of<T>();
  if (M_ != M) {
    a_ = Tensor(dt, {std::max<std::int64_t>(M * F1, 1)});
    h_ = Tensor(dt, {std::max<std::int64_t>(M * F, 1)});
    M_ = M;
  }
  T *a = a_.ptr<T>(), *h = h_.ptr<T>();
  fc1_.forward(x, M, config_.dim, a, F1);
  const bool gated = this->gated();
  const Activation act = config_.activation;
#pragma omp parallel for schedule(static) if (M * F >= kParallelElems)
  for (std::int64_t m = 0; m < M; ++m) {
    if (gated)
      detail::swiglu_forward(a + m * F1, a + m * F1 + F, h + m * F, F);
    else
      detail::activation_forward(act, a + m * F1, h + m * F, F);
  }
  fc2_.forward(h, M, F, y, config_.dim);
}

template <class T>
void FeedForward<T>::backward(const T* x, const T* dy, std::int64_t M, T* dx, bool accumulate) {
  ATTN_CHECK(M_ == M, shape, "M", "backward over ", M, " rows, but the last forward had ", M_);
  const std::int64_t F = config_.hidden, F1 = fc1_.out_features(), E = config_.dim;
  const DType dt = detail::dtype_of<T>();
  const bool gated = this->gated();
  // Scratch reused across steps (no fresh pages per step); without a gate da overwrites dh in place.
  auto ensure = [&](Tensor& t, std::int64_t n) {
    if (!t.data() || t.numel() != n) t = Tensor(dt, {n});
  };
  ensure(dh_, std::max<std::int64_t>(M * F, 1));
  if (gated) ensure(da_, std::max<std::int64_t>(M * F1, 1));
  fc2_.backward(h_.ptr<T>(), F, dy, E, M, dh_.ptr<T>(), F);
  const T *a = a_.ptr<T>(), *dhp = dh_.ptr<T>();
  T* dap = gated ? da_.ptr<T>() : dh_.ptr<T>();
  const Activation act = config_.activation;
#pragma omp parallel for schedule(static) if (M * F >= kParallelElems)
  for (std::int64_t m = 0; m < M; ++m) {
    const T *am = a + m * F1, *dhm = dhp + m * F;
    T* dam = dap + m * F1;
    if (gated)
      detail::swiglu_backward(am, am + F, dhm, dam, dam + F, F);
    else
      detail::activation_backward(act, am, dhm, dam, F);
  }
  fc1_.backward(x, E, dap, F1, M, dx, E, accumulate);
}

template <class T>
std::vector<Parameter> FeedForward<T>::parameters() const {
  const DType dt = detail::dtype_of<T>();
  const std::int64_t E = config_.dim, F = config_.hidden;
  std::vector<Parameter> p;
  auto add = [&](const char* name, T* v, T* g, std::int64_t rows, std::int64_t cols) {
    if (cols)
      p.push_back({name, TensorView(v, dt, {rows, cols}), TensorView(g, dt, {rows, cols})});
    else
      p.push_back({name, TensorView(v, dt, {rows}), TensorView(g, dt, {rows})});
  };
  if (gated()) {
    add("gate_proj.weight", fc1_.weight(), fc1_.weight_grad(), F, E);
    if (config_.bias) add("gate_proj.bias", fc1_.bias(), fc1_.bias_grad(), F, 0);
    add("up_proj.weight", fc1_.weight() + F * E, fc1_.weight_grad() + F * E, F, E);
    if (config_.bias) add("up_proj.bias", fc1_.bias() + F, fc1_.bias_grad() + F, F, 0);
    add("down_proj.weight", fc2_.weight(), fc2_.weight_grad(), E, F);
    if (config_.bias) add("down_proj.bias", fc2_.bias(), fc2_.bias_grad(), E, 0);
  } else {
    add("linear1.weight", fc1_.weight(), fc1_.weight_grad(), F, E);
    if (config_.bias) add("linear1.bias", fc1_.bias(), fc1_.bias_grad(), F, 0);
    add("linear2.weight", fc2_.weight(), fc2_.weight_grad(), E, F);
    if (config_.bias) add("linear2.bias", fc2_.bias(), fc2_.bias_grad(), E, 0);
  }
  return p;
}

template class FeedForward<float>;
template class FeedForward<double>;

}  // namespace attn::nn
