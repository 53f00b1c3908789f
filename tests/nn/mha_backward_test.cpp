// MultiheadAttention backward (src/nn/mha_backward.cpp): every input, weight and bias gradient
// against fp64 central finite differences of L = Σ out ∘ R on the f64 module (reference SDPA),
// for MHA/GQA/MQA, self (fused QKV) and cross (separate and shared K/V), masks, RoPE in both
// conventions, dropout with a fixed seed; and the f32 module's gradients (cpu SDPA backward on the
// strided head views) against the f64 module's; the gradient through the returned attention
// weights (need_weights, averaged or per head, with and without dropout) the same way.

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "nn/mha_case.hpp"

namespace attn::test {
namespace {

std::vector<MhaCase> backward_cases() {
  std::vector<MhaCase> cs;
  auto add = [&](auto&& edit) {
    MhaCase c;
    c.E = 8;
    c.Hq = 2;
    c.Hkv = 2;
    c.B = 2;
    c.Lq = c.Lk = 4;
    edit(c);
    cs.push_back(c);
  };
  add([](MhaCase& c) { c.mask = MaskKind::causal; });
  add([](MhaCase& c) {
    c.Hq = 4;
    c.layout = SeqLayout::seq_first;
    c.mask = MaskKind::bool2d;
    c.rope = Rope::half;
  });
  add([](MhaCase& c) {
    c.Hq = 4;
    c.Hkv = 1;
    c.inputs = Inputs::cross;
    c.Lk = 5;
    c.kdim = 6;
    c.vdim = 5;
    c.mask = MaskKind::key_lengths;
    c.rope = Rope::interleaved;
  });
  add([](MhaCase& c) {
    c.Hq = 4;
    c.inputs = Inputs::cross_shared_kv;
    c.Lq = 3;
    c.Lk = 5;
    c.mask = MaskKind::float4d;
    c.dropout = 0.25;
  });
  add([](MhaCase& c) {
    c.B = 1;
    c.layout = SeqLayout::unbatched;
    c.inputs = Inputs::cross;
    c.Lq = 3;
    c.Lk = 5;
    c.mask = MaskKind::causal_bottom_right;
    c.rope = Rope::half;
    c.bias = false;
  });
  add([](MhaCase& c) {
    c.Hq = 4;
    c.Hkv = 2;
    c.dropout = 0.3;
    c.rope = Rope::interleaved;
    c.positions = {3, 1};
    c.strided = true;
  });
  return cs;
}

// Σ out ∘ R over the module output (R in module layout, same shape).
double loss(nn::MultiheadAttention<double>& m, const MhaInputs& in, const nn::MhaOptions& o, const TensorView& R) {
  const nn::MhaOutput r = m.forward(in.query, in.key, in.value, o);
  double s = 0;
  for_each_element(r.out.view(), [&](const auto& idx, std::int64_t off) {
    s += load_f64(r.out.view(), off) * load_f64(R, R.offset({idx[0], idx[1], idx[2], idx[3]}));
  });
  return s;
}

// Central difference of loss with respect to element `off` of view t.
template <class Loss>
double numeric(const TensorView& t, std::int64_t off, Loss&& f) {
  constexpr double kH = 1e-6;
  const double x = load_f64(t, off);
  store_f64(t, off, x + kH);
  const double lp = f();
  store_f64(t, off, x - kH);
  const double lm = f();
  store_f64(t, off, x);
  return (lp - lm) / (2 * kH);
}

// Max |analytic - numeric| / (1 + |numeric|) over every element of a view (an input or a parameter).
template <class Loss>
double worst(const TensorView& value, const TensorView& grad, Loss&& f) {
  double w = 0;
  for_each_element(value, [&](const auto& idx, std::int64_t off) {
    const double n = numeric(value, off, f);
    const double a = load_f64(grad, grad.offset({idx[0], idx[1], idx[2], idx[3]}));
    w = std::max(w, std::abs(a - n) / (1 + std::abs(n)));
  });
  return w;
}

class MhaBackward : public ::testing::TestWithParam<MhaCase> {};

TEST_P(MhaBackward, MatchesFiniteDifferences) {
  const MhaCase c = GetParam();
  nn::MultiheadAttention<double> m(c.config());
  randomize_biases(m, 5);
  const MhaInputs in = make_inputs(c, DType::f64, 3);
  const MhaMasks mk = make_masks(c, 9);
  const nn::MhaOutput out = m.forward(in.query, in.key, in.value, mk.options);
  GuardedTensor R = clone(out.out.view());
  fill_normal(R.view, 17);
  m.zero_grad();
  const nn::MhaGrads g = m.backward(R.view);
  auto f = [&] { return loss(m, in, mk.options, R.view); };
  constexpr double kTol = 2e-6;  // lse is stored in f32 (docs/contract.md); the rest is fp64
  switch (c.inputs) {
    case Inputs::self:
      EXPECT_FALSE(g.dkey.view().defined());
      EXPECT_LE(worst(in.query, g.dquery, f), kTol) << "dquery (whole input gradient)";
      break;
    case Inputs::cross_shared_kv:
      EXPECT_FALSE(g.dvalue.view().defined());
      EXPECT_LE(worst(in.query, g.dquery, f), kTol) << "dquery";
      EXPECT_LE(worst(in.key, g.dkey, f), kTol) << "dkey (key and value)";
      break;
    case Inputs::cross:
      EXPECT_LE(worst(in.query, g.dquery, f), kTol) << "dquery";
      EXPECT_LE(worst(in.key, g.dkey, f), kTol) << "dkey";
      EXPECT_LE(worst(in.value, g.dvalue, f), kTol) << "dvalue";
      break;
  }
  for (const nn::Parameter& p : m.parameters()) EXPECT_LE(worst(p.value, p.grad, f), kTol) << p.name;
}

TEST_P(MhaBackward, F32MatchesF64) {
  const MhaCase c = GetParam();
  nn::MultiheadAttention<double> m64(c.config());
  nn::MultiheadAttention<float> m32(c.config());
  randomize_biases(m32, 5);
  const std::vector<nn::Parameter> p32 = m32.parameters(), p64 = m64.parameters();
  for (std::size_t i = 0; i < p32.size(); ++i)
    for_each_element(p32[i].value,
                     [&](const auto&, std::int64_t off) { store_f64(p64[i].value, off, load_f64(p32[i].value, off)); });
  const MhaInputs in32 = make_inputs(c, DType::f32, 3), in64 = make_inputs(c, DType::f64, 3);
  const MhaMasks mk = make_masks(c, 9);
  const nn::MhaOutput o32 = m32.forward(in32.query, in32.key, in32.value, mk.options);
  const nn::MhaOutput o64 = m64.forward(in64.query, in64.key, in64.value, mk.options);
  EXPECT_LE(max_abs_diff(o32.out.view(), o64.out.view()), 1e-5);
  GuardedTensor R32 = clone(o32.out.view(), Layout::bhsd, DType::f32);
  fill_normal(R32.view, 17);
  const GuardedTensor R64 = clone(R32.view);
  m32.zero_grad();
  m64.zero_grad();
  const nn::MhaGrads g32 = m32.backward(R32.view), g64 = m64.backward(R64.view);
  EXPECT_LE(max_abs_diff(g32.dquery.view(), g64.dquery.view()), 1e-4);
  if (g64.dkey.view().defined()) {
    EXPECT_LE(max_abs_diff(g32.dkey.view(), g64.dkey.view()), 1e-4);
  }
  if (g64.dvalue.view().defined()) {
    EXPECT_LE(max_abs_diff(g32.dvalue.view(), g64.dvalue.view()), 1e-4);
  }
  for (std::size_t i = 0; i < p32.size(); ++i) EXPECT_LE(max_abs_diff(p32[i].grad, p64[i].grad), 1e-4) << p32[i].name;
}

INSTANTIATE_TEST_SUITE_P(Cases, MhaBackward, ::testing::ValuesIn(backward_cases()),
                         [](const auto& param_info) { return param_info.param.name(); });

TEST(MhaBackwardUse, BackwardWithoutForwardIsAnError) {
  nn::MhaConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  nn::MultiheadAttention<double> m(c);
  GuardedTensor d = make_tensor(DType::f64, {3, 1, 8});
  EXPECT_THROW(m.backward(d.view), Error);
}

TEST(MhaBackwardUse, GradientsAccumulateOverCalls) {
  nn::MhaConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  c.batch_first = true;
  nn::MultiheadAttention<double> m(c);
  GuardedTensor x = make_tensor(DType::f64, {2, 3, 8}), R = make_tensor(DType::f64, {2, 3, 8});
  fill_normal(x.view, 1);
  fill_normal(R.view, 2);
  m.zero_grad();
  m.forward(x.view, x.view, x.view);
  m.backward(R.view);
  const GuardedTensor once = clone(m.parameter("q_proj.weight").grad);
  m.forward(x.view, x.view, x.view);
  m.backward(R.view);
  const TensorView twice = m.parameter("q_proj.weight").grad;
  double err = 0;
  for_each_element(twice, [&](const auto&, std::int64_t off) {
    err = std::max(err, std::abs(load_f64(twice, off) - 2 * load_f64(once.view, off)));
  });
  EXPECT_LE(err, 1e-12);
  EXPECT_GT(max_abs(once.view), 0.0);
}


// need_weights: L = Σ out ∘ R + Σ weights ∘ Rw, so the weights' own gradient path is checked too.
struct WeightsCase {
  MhaCase c;
  bool average = true;
};

class MhaWeightsBackward : public ::testing::TestWithParam<WeightsCase> {};

std::vector<WeightsCase> weights_cases() {
  std::vector<WeightsCase> cs;
  const std::vector<MhaCase> base = backward_cases();
  // causal self-attention (averaged); GQA seq-first bool mask RoPE (per head); MQA cross with key
  // lengths (averaged); cross shared K/V with dropout (per head); unbatched bottom-right (averaged);
  // GQA dropout RoPE positions strided (per head).
  for (std::size_t i = 0; i < base.size(); ++i) cs.push_back({base[i], i % 2 == 0});
  return cs;
}

TEST_P(MhaWeightsBackward, MatchesFiniteDifferences) {
  const WeightsCase wc = GetParam();
  const MhaCase& c = wc.c;
  nn::MultiheadAttention<double> m(c.config());
  randomize_biases(m, 5);
  const MhaInputs in = make_inputs(c, DType::f64, 3);
  MhaMasks mk = make_masks(c, 9);
  mk.options.need_weights = true;
  mk.options.average_attn_weights = wc.average;
  const nn::MhaOutput out = m.forward(in.query, in.key, in.value, mk.options);
  GuardedTensor R = clone(out.out.view()), Rw = clone(out.weights.view());
  fill_normal(R.view, 17);
  fill_normal(Rw.view, 18);
  m.zero_grad();
  const nn::MhaGrads g = m.backward(R.view, Rw.view);
  auto f = [&] {
    const nn::MhaOutput r = m.forward(in.query, in.key, in.value, mk.options);
    double s = 0;
    for_each_element(r.out.view(), [&](const auto& idx, std::int64_t off) {
      s += load_f64(r.out.view(), off) * load_f64(R.view, R.view.offset({idx[0], idx[1], idx[2], idx[3]}));
    });
    for_each_element(r.weights.view(), [&](const auto& idx, std::int64_t off) {
      s += load_f64(r.weights.view(), off) * load_f64(Rw.view, Rw.view.offset({idx[0], idx[1], idx[2], idx[3]}));
    });
    return s;
  };
  constexpr double kTol = 2e-6;
  EXPECT_LE(worst(in.query, g.dquery, f), kTol) << "dquery";
  if (g.dkey.view().defined()) {
    EXPECT_LE(worst(in.key, g.dkey, f), kTol) << "dkey";
  }
  if (g.dvalue.view().defined()) {
    EXPECT_LE(worst(in.value, g.dvalue, f), kTol) << "dvalue";
  }
  for (const nn::Parameter& p : m.parameters()) EXPECT_LE(worst(p.value, p.grad, f), kTol) << p.name;
}

TEST_P(MhaWeightsBackward, F32MatchesF64AndTheWeightsPathIsNotZero) {
  const WeightsCase wc = GetParam();
  const MhaCase& c = wc.c;
  nn::MultiheadAttention<double> m64(c.config());
  nn::MultiheadAttention<float> m32(c.config());
  randomize_biases(m32, 5);
  const std::vector<nn::Parameter> p32 = m32.parameters(), p64 = m64.parameters();
  for (std::size_t i = 0; i < p32.size(); ++i)
    for_each_element(p32[i].value,
                     [&](const auto&, std::int64_t off) { store_f64(p64[i].value, off, load_f64(p32[i].value, off)); });
  const MhaInputs in32 = make_inputs(c, DType::f32, 3), in64 = make_inputs(c, DType::f64, 3);
  MhaMasks mk = make_masks(c, 9);
  mk.options.need_weights = true;
  mk.options.average_attn_weights = wc.average;
  const nn::MhaOutput o32 = m32.forward(in32.query, in32.key, in32.value, mk.options);
  m64.forward(in64.query, in64.key, in64.value, mk.options);
  GuardedTensor R32 = clone(o32.out.view(), Layout::bhsd, DType::f32), Rw32 = clone(o32.weights.view(), Layout::bhsd, DType::f32);
  fill_normal(R32.view, 17);
  fill_normal(Rw32.view, 18);
  const GuardedTensor R64 = clone(R32.view), Rw64 = clone(Rw32.view);
  m32.zero_grad();
  m64.zero_grad();
  const nn::MhaGrads g32 = m32.backward(R32.view, Rw32.view), g64 = m64.backward(R64.view, Rw64.view);
  EXPECT_LE(max_abs_diff(g32.dquery.view(), g64.dquery.view()), 1e-4);
  for (std::size_t i = 0; i < p32.size(); ++i) EXPECT_LE(max_abs_diff(p32[i].grad, p64[i].grad), 1e-4) << p32[i].name;
  // Without the weights' gradient, dquery must change: the path contributes.
  m64.forward(in64.query, in64.key, in64.value, mk.options);
  const nn::MhaGrads g0 = m64.backward(R64.view);
  EXPECT_GT(max_abs_diff(g0.dquery.view(), g64.dquery.view()), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Cases, MhaWeightsBackward, ::testing::ValuesIn(weights_cases()),
                         [](const auto& param_info) {
                           return param_info.param.c.name() + (param_info.param.average ? "_avg" : "_perHead");
                         });

TEST(MhaBackwardUse, WeightsGradientErrors) {
  nn::MhaConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  c.batch_first = true;
  nn::MultiheadAttention<double> m(c);
  GuardedTensor x = make_tensor(DType::f64, {2, 3, 8}), R = make_tensor(DType::f64, {2, 3, 8});
  fill_normal(x.view, 1);
  fill_normal(R.view, 2);
  GuardedTensor dw = make_tensor(DType::f64, {2, 3, 3}), dw_bad = make_tensor(DType::f64, {2, 2, 3, 3});
  fill_normal(dw.view, 3);
  m.forward(x.view, x.view, x.view);  // need_weights = false
  try {
    m.backward(R.view, dw.view);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "dweights");
    EXPECT_NE(std::string(e.what()).find("need_weights"), std::string::npos) << e.what();
  }
  nn::MhaOptions o;
  o.need_weights = true;  // averaged: [2, 3, 3]
  m.forward(x.view, x.view, x.view, o);
  try {
    m.backward(R.view, dw_bad.view);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "dweights");
    EXPECT_NE(std::string(e.what()).find("[2, 3, 3]"), std::string::npos) << e.what();
  }
}

// forward_into / backward_into (the encoder layers' path, buffers kept between calls) against
// forward / backward of a twin module: the same bits over steps of changing sizes, weight
// gradients included; accumulate adds; cross-attention, need_weights and an out over the input are refused.
TEST(MhaBackward, IntoBuffersKeptBetweenStepsMatchForwardAndBackward) {
  nn::MhaConfig c;
  c.embed_dim = 12;
  c.num_heads = 3;
  c.batch_first = true;
  c.seed = 4;
  nn::MultiheadAttention<float> a(c), b(c);
  const std::int64_t Ls[3] = {7, 7, 5};
  for (int step = 0; step < 3; ++step) {
    const std::int64_t L = Ls[step];
    GuardedTensor x = make_tensor(DType::f32, {2, L, 12}), R = make_tensor(DType::f32, {2, L, 12});
    fill_normal(x.view, 10 + step);
    fill_normal(R.view, 20 + step);
    nn::MhaOptions o;
    o.key_lengths = {L, L - 2};
    const nn::MhaOutput ra = a.forward(x.view, x.view, x.view, o);
    std::vector<float> out(static_cast<std::size_t>(2 * L * 12)), dx(out.size(), 1.f);
    b.forward_into(x.view, x.view, x.view, o, out.data());
    ASSERT_EQ(std::memcmp(ra.out.data(), out.data(), out.size() * sizeof(float)), 0) << "step " << step;
    const nn::MhaGrads ga = a.backward(R.view);
    const bool accumulate = step == 2;
    b.backward_into(R.view, dx.data(), accumulate);
    const float* want = ga.dquery.ptr<float>();
    for (std::size_t i = 0; i < dx.size(); ++i) {
      if (accumulate)
        ASSERT_NEAR(dx[i], 1.f + want[i], 1e-5f) << i;
      else
        ASSERT_EQ(dx[i], want[i]) << "step " << step << ", " << i;
    }
  }
  const std::vector<nn::Parameter> pa = a.parameters(), pb = b.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(std::memcmp(pa[i].grad.data, pb[i].grad.data, pa[i].grad.numel() * sizeof(float)), 0) << pa[i].name;

  GuardedTensor q = make_tensor(DType::f32, {2, 3, 12}), kv = make_tensor(DType::f32, {2, 4, 12});
  fill_normal(q.view, 1);
  fill_normal(kv.view, 2);
  std::vector<float> out(2 * 3 * 12);
  b.forward_into(q.view, kv.view, kv.view, {}, out.data());
  EXPECT_THROW(b.backward_into(q.view, out.data(), false), Error);  // not self-attention
  nn::MhaOptions w;
  w.need_weights = true;
  EXPECT_THROW(b.forward_into(q.view, q.view, q.view, w, out.data()), Error);
  EXPECT_THROW(b.forward_into(q.view, q.view, q.view, {}, nullptr), Error);
  try {  // in place over its own input: backward would read the overwritten rows
    b.forward_into(q.view, q.view, q.view, {}, static_cast<float*>(q.view.data));
    ADD_FAILURE() << "no error for out == query";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "out") << e.what();
  }
}

}  // namespace
}  // namespace attn::test
