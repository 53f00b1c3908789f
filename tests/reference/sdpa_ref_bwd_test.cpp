// Tests of the reference backward (src/reference/sdpa_ref_bwd.cpp): fp64 central finite differences
// of the loss L = Σ dout∘out on tiny shapes, for every mask kind, score modifier, dropout and GQA.
// Padded memory (beyond lengths) holds NaN in q, k, v and dout; its gradients must be exactly 0.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <omp.h>

#include "attn/error.hpp"
#include "attn/sdpa.hpp"
#include "common/test_util.hpp"

namespace attn::test {
namespace {

constexpr double kStep = 1e-5;  // central-difference step: truncation ~h², rounding ~1e-16/h
// f64 inputs carry an f64 lse, so the analytic gradient is fp64-exact; the bound is the finite
// differences' own error (~1e-9: truncation ~h², rounding ~1e-16/h).
constexpr double kAtol = 1e-8, kRtol = 1e-7;

SdpaParams ref_params() {
  SdpaParams p;
  p.backend = Backend::reference;
  return p;
}

// lse of row (b, h, i) in fp64, computed here from q and k (independently of the forward).
// Only plain and causal calls: the dlse tests use nothing else.
double lse_f64(const Qkv& x, const SdpaParams& params, std::int64_t b, std::int64_t h, std::int64_t i) {
  const double scale = params.scale.value_or(1.0 / std::sqrt(static_cast<double>(x.D)));
  const std::int64_t off = params.mask.alignment == Alignment::bottom_right ? x.Nk - x.Nq : 0;
  const std::int64_t kvh = h / (x.Hq / x.Hkv), last = params.mask.causal ? std::min(x.Nk - 1, i + off) : x.Nk - 1;
  if (last < 0) return -kInf;
  std::vector<double> s;
  for (std::int64_t j = 0; j <= last; ++j) {
    double dot = 0.0;
    for (std::int64_t d = 0; d < x.D; ++d) dot += at(x.q, b, h, i, d) * at(x.k, b, kvh, j, d);
    s.push_back(dot * scale);
  }
  const double m = *std::max_element(s.begin(), s.end());
  double sum = 0.0;
  for (double v : s) sum += std::exp(v - m);
  return m + std::log(sum);
}

// L = Σ dout∘out (+ Σ dlse∘lse over rows with a finite lse, when dlse is given).
double loss(const Qkv& x, const SdpaParams& params, const TensorView& dout, const TensorView& dlse = {}) {
  const Outputs o = forward(x, params);
  double l = 0.0;
  for_each_element(dout, [&](const auto& idx, std::int64_t off) {
    const double g = load_f64(dout, off);
    if (!std::isnan(g)) l += g * at(o.out, idx[0], idx[1], idx[2], idx[3]);
  });
  if (dlse.defined())
    for (std::int64_t b = 0; b < x.B; ++b)
      for (std::int64_t h = 0; h < x.Hq; ++h)
        for (std::int64_t i = 0; i < x.Nq; ++i) {
          const double lse = lse_f64(x, params, b, h, i);
          if (std::isfinite(lse)) l += at(dlse, b, h, i) * lse;
        }
  return l;
}

// Compares one analytic gradient with central differences of the loss over every element of `t`.
// NaN or -inf elements (padding, hidden bias) must have a gradient of exactly 0.
void check_tensor(const char* name, const TensorView& t, const TensorView& grad, const Qkv& x, const SdpaParams& params,
                  const TensorView& dout, const TensorView& dlse = {}) {
  double worst = 0.0, largest = 0.0;
  for_each_element(t, [&](const auto& idx, std::int64_t off) {
    const double g = load_f64(grad, grad.offset({idx[0], idx[1], idx[2], idx[3]}));
    const double v0 = load_f64(t, off);
    if (std::isnan(v0) || v0 == -kInf) {
      EXPECT_EQ(g, 0.0) << name << " at padded/hidden element [" << idx[0] << "," << idx[1] << "," << idx[2] << ","
                        << idx[3] << "]";
      return;
    }
    store_f64(t, off, v0 + kStep);
    const double lp = loss(x, params, dout, dlse);
    store_f64(t, off, v0 - kStep);
    const double lm = loss(x, params, dout, dlse);
    store_f64(t, off, v0);
    const double fd = (lp - lm) / (2 * kStep);
    EXPECT_NEAR(g, fd, kAtol + kRtol * std::abs(fd))
        << name << "[" << idx[0] << "," << idx[1] << "," << idx[2] << "," << idx[3] << "]";
    worst = std::max(worst, std::abs(g - fd));
    largest = std::max(largest, std::abs(fd));
  });
  EXPECT_GT(largest, 1e-3) << name << ": every gradient is ~0, the check would be vacuous";
  testing::Test::RecordProperty(std::string("max_err_") + name, testing::PrintToString(worst));
}

// Runs forward + backward and checks dq, dk, dv (and dbias when `bias` is given and `with_dbias`).
void check_gradients(const Qkv& x, const SdpaParams& params, const GuardedTensor* bias = nullptr,
                     std::uint64_t seed = 5) {
  const Outputs o = forward(x, params);
  GuardedTensor dout = make_tensor4(DType::f64, x.B, x.Hq, x.Nq, x.Dv, x.layout);
  fill_normal(dout, seed);
  if (!params.mask.q_lengths.empty()) nan_beyond_lengths(dout, params.mask.q_lengths);
  const Grads g = make_grads(x, bias ? bias->view : TensorView{});
  sdpa_backward(g.views(), dout, x.q, x.k, x.v, o.out, o.lse, params);
  for (const GuardedTensor* t : {&g.dq, &g.dk, &g.dv}) {
    EXPECT_FALSE(has_nan(*t));
    EXPECT_TRUE(t->guards_intact());
  }
  SdpaParams fd_params = params;  // hundreds of tiny forwards: one thread avoids OpenMP start-up costs
  fd_params.num_threads = 1;
  check_tensor("dq", x.q, g.dq, x, fd_params, dout);
  check_tensor("dk", x.k, g.dk, x, fd_params, dout);
  check_tensor("dv", x.v, g.dv, x, fd_params, dout);
  if (bias) {
    EXPECT_FALSE(has_nan(g.dbias));
    EXPECT_TRUE(g.dbias.guards_intact());
    check_tensor("dbias", bias->view, g.dbias, x, fd_params, dout);
  }
}

Qkv small(std::int64_t Hq = 2, std::int64_t Hkv = 2, std::int64_t Nq = 4, std::int64_t Nk = 5,
          Layout layout = Layout::bhsd, std::uint64_t seed = 1) {
  return make_qkv(2, Hq, Hkv, Nq, Nk, 3, 2, DType::f64, layout, seed);
}

TEST(RefGrad, NoMask) { check_gradients(small(), ref_params()); }

TEST(RefGrad, CausalTopLeft) {
  SdpaParams p = ref_params();
  p.mask.causal = true;
  p.mask.alignment = Alignment::top_left;
  check_gradients(small(2, 2, 3, 6), p);
}

TEST(RefGrad, CausalBottomRightWithFullyMaskedRow) {
  SdpaParams p = ref_params();
  p.mask.causal = true;
  p.mask.alignment = Alignment::bottom_right;
  check_gradients(small(2, 2, 5, 4, Layout::bshd), p);  // off = -1: row 0 sees no key
}

TEST(RefGrad, SlidingWindow) {
  SdpaParams p = ref_params();
  p.mask.window_left = 1;
  p.mask.window_right = 1;
  p.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
  check_gradients(small(3, 1, 5, 6), p);
}

TEST(RefGrad, LengthsWithPaddedQueriesAndKeys) {
  Qkv x = small(2, 2, 5, 6);
  SdpaParams p = ref_params();
  p.mask.q_lengths = {3, 5};
  p.mask.k_lengths = {6, 2};
  nan_beyond_lengths(x.q, p.mask.q_lengths);
  nan_beyond_lengths(x.k, p.mask.k_lengths);
  nan_beyond_lengths(x.v, p.mask.k_lengths);
  check_gradients(x, p);
}

TEST(RefGrad, Varlen) {
  const Qkv x = make_qkv(1, 2, 1, 6, 7, 3, 2, DType::f64, Layout::bshd, 3);
  SdpaParams p = ref_params();
  p.mask.cu_seqlens_q = {0, 2, 2, 6};
  p.mask.cu_seqlens_k = {0, 4, 5, 7};
  p.mask.causal = true;
  p.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
  check_gradients(x, p);
}

TEST(RefGrad, BoolMask) {
  const Qkv x = small();
  GuardedTensor mask = make_tensor(DType::boolean, {2, 2, 4, 5});
  std::mt19937_64 rng(7);
  for_each_element(mask.view, [&](const auto& idx, std::int64_t off) {
    *static_cast<std::uint8_t*>(mask.view.at(off)) = idx[2] == 2 && idx[0] == 1 ? 0 : (rng() % 3 != 0);
  });
  SdpaParams p = ref_params();
  p.mask.bool_mask = mask;
  check_gradients(x, p);
}

// Bias shapes: full, [1, 1, Nq, Nk], [B, 1, 1, Nk], rank-2 [Nq, Nk]; a few -inf entries hide keys.
void check_bias(std::initializer_list<std::int64_t> shape, bool with_minus_inf) {
  const Qkv x = small(2, 2, 4, 5, Layout::bhsd, 9);
  GuardedTensor bias = make_tensor(DType::f64, shape);
  fill_normal(bias, 10);
  if (with_minus_inf) {
    int e = 0;
    for_each_element(bias.view, [&](const auto&, std::int64_t off) {
      if (e++ % 7 == 3) store_f64(bias.view, off, -kInf);
    });
  }
  SdpaParams p = ref_params();
  p.mask.bias = bias;
  check_gradients(x, p, &bias);
}

TEST(RefGrad, BiasFullWithDbias) { check_bias({2, 2, 4, 5}, true); }
TEST(RefGrad, BiasBroadcastOverBatchAndHeads) { check_bias({1, 1, 4, 5}, false); }
TEST(RefGrad, BiasBroadcastOverHeadsAndQueries) { check_bias({2, 1, 1, 5}, true); }
TEST(RefGrad, BiasRank2) { check_bias({4, 5}, false); }

TEST(RefGrad, BlockMask) {
  const Qkv x = small();
  GuardedTensor bits = make_tensor(DType::boolean, {2, 1, 2, 3});
  int e = 0;
  for_each_element(bits.view, [&](const auto&, std::int64_t off) {
    *static_cast<std::uint8_t*>(bits.view.at(off)) = (e++ % 4) != 1;
  });
  SdpaParams p = ref_params();
  p.mask.block_mask = BlockMask{2, 2, bits};
  check_gradients(x, p);
}

TEST(RefGrad, MaskMod) {
  SdpaParams p = ref_params();
  p.mask.mask_mod = [](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    return (i + 2 * j + b + h) % 3 != 0;
  };
  check_gradients(small(), p);
}

TEST(RefGrad, Alibi) {
  SdpaParams p = ref_params();
  p.mask.alibi_slopes = {0.5, 0.25};
  p.mask.alignment = Alignment::top_left;
  check_gradients(small(), p);
}

TEST(RefGrad, Softcap) {
  SdpaParams p = ref_params();
  p.scale = 1.0;
  p.mask.softcap = 1.5;
  check_gradients(small(), p);
}

TEST(RefGrad, ScoreModWithGrad) {
  SdpaParams p = ref_params();
  p.mask.score_mod.value = [](double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) {
    return s * 1.3 + 0.1 * std::sin(s);
  };
  p.mask.score_mod.grad = [](double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) {
    return 1.3 + 0.1 * std::cos(s);
  };
  check_gradients(small(), p);
}

TEST(RefGrad, Dropout) {
  SdpaParams p = ref_params();
  p.dropout_p = 0.3;
  p.dropout_seed = 0xfeedfacecafebeefull;
  p.dropout_offset = 11;
  check_gradients(small(2, 2, 5, 6), p);
}

TEST(RefGrad, Gqa) { check_gradients(small(4, 2, 4, 5), ref_params()); }

TEST(RefGrad, Mqa) {
  SdpaParams p = ref_params();
  p.mask.causal = true;
  p.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
  check_gradients(small(3, 1, 4, 5, Layout::bshd), p);
}

// The gradient of lse (dlse, e.g. from merging attention over split key ranges) on top of dout's.
void check_gradients_with_dlse(const Qkv& x, const SdpaParams& params) {
  const Outputs o = forward(x, params);
  GuardedTensor dout = make_tensor4(DType::f64, x.B, x.Hq, x.Nq, x.Dv, x.layout);
  fill_normal(dout, 31);
  GuardedTensor dlse = make_tensor(DType::f64, {x.B, x.Hq, x.Nq});
  fill_normal(dlse, 32);
  const Grads g = make_grads(x, TensorView{});
  sdpa_backward(g.views(), dout, x.q, x.k, x.v, o.out, o.lse, params, dlse);
  SdpaParams fd_params = params;
  fd_params.num_threads = 1;
  check_tensor("dq", x.q, g.dq, x, fd_params, dout, dlse);
  check_tensor("dk", x.k, g.dk, x, fd_params, dout, dlse);
  check_tensor("dv", x.v, g.dv, x, fd_params, dout, dlse);
  // dlse changes dq and dk: the same call without it must differ.
  const Grads g0 = make_grads(x, TensorView{});
  sdpa_backward(g0.views(), dout, x.q, x.k, x.v, o.out, o.lse, params);
  EXPECT_GT(max_abs_diff(g.dq, g0.dq), 1e-3);
}

TEST(RefGrad, DlseNoMask) { check_gradients_with_dlse(small(), ref_params()); }

TEST(RefGrad, DlseCausalBottomRightGqaWithFullyMaskedRow) {
  SdpaParams p = ref_params();
  p.mask.causal = true;
  p.mask.alignment = Alignment::bottom_right;
  check_gradients_with_dlse(small(4, 2, 5, 4, Layout::bshd), p);  // off = -1: row 0 sees no key
}

TEST(RefGrad, DlseWithDropout) {
  SdpaParams p = ref_params();
  p.dropout_p = 0.25;
  p.dropout_seed = 77;
  check_gradients_with_dlse(small(2, 2, 5, 6), p);
}

TEST(RefGrad, DlseShapeIsChecked) {
  const Qkv x = small();
  const Outputs o = forward(x, ref_params());
  GuardedTensor dout = make_tensor4(DType::f64, x.B, x.Hq, x.Nq, x.Dv, x.layout);
  fill_normal(dout, 3);
  GuardedTensor dlse = make_tensor(DType::f64, {x.B, x.Hq, x.Nq + 1});
  const Grads g = make_grads(x, TensorView{});
  try {
    sdpa_backward(g.views(), dout, x.q, x.k, x.v, o.out, o.lse, ref_params(), dlse);
    ADD_FAILURE() << "a dlse of the wrong shape was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "dlse") << e.what();
  }
}

// Softmax is invariant under adding a constant c to every score, so the gradients with a bias of
// c everywhere must equal those without it. In fp64 they must stay fp64-exact for |c| up to 1e4:
// that needs the fp64 lse of f64 inputs (an fp32 lse is off by ~|c|·6e-8, and P = exp(s − lse)
// carries that error into every gradient).
void check_shift_invariance(const SdpaParams& params) {
  const Qkv x = make_qkv(2, 2, 2, 6, 6, 8, 5, DType::f64, Layout::bhsd, 41);
  GuardedTensor dout = make_tensor4(DType::f64, x.B, x.Hq, x.Nq, x.Dv, x.layout);
  fill_normal(dout, 42);
  GuardedTensor dlse = make_tensor(DType::f64, {x.B, x.Hq, x.Nq});
  fill_normal(dlse, 43);
  const Outputs o0 = forward(x, params);
  const Grads g0 = make_grads(x, TensorView{});
  sdpa_backward(g0.views(), dout, x.q, x.k, x.v, o0.out, o0.lse, params, dlse);
  for (const double c : {-1e4, -1e3, 1.0, 1e3, 1e4}) {
    SCOPED_TRACE("c = " + std::to_string(c));
    GuardedTensor bias = make_tensor(DType::f64, {x.Nq, x.Nk});
    fill_value(bias, c);
    SdpaParams p = params;
    p.mask.bias = bias;
    const Outputs o = forward(x, p);
    const Grads g = make_grads(x, TensorView{});
    sdpa_backward(g.views(), dout, x.q, x.k, x.v, o.out, o.lse, p, dlse);
    EXPECT_LE(max_abs_diff(o.out, o0.out), 1e-11);  // s + c rounds to ulp(1e4) ≈ 1.8e-12
    for_each_element(o.lse.view, [&](const auto& idx, std::int64_t off) {
      const double want = at(o0.lse.view, idx[0], idx[1], idx[2]) + c;
      EXPECT_NEAR(load_f64(o.lse.view, off), want, 1e-10) << "lse at row " << idx[2];
    });
    EXPECT_LE(max_abs_diff(g.dq, g0.dq), 1e-10 * std::max(1.0, max_abs(g0.dq)));
    EXPECT_LE(max_abs_diff(g.dk, g0.dk), 1e-10 * std::max(1.0, max_abs(g0.dk)));
    EXPECT_LE(max_abs_diff(g.dv, g0.dv), 1e-10 * std::max(1.0, max_abs(g0.dv)));
  }
}

TEST(RefGrad, Fp64GradientsSurviveAConstantShiftOfTheScores) { check_shift_invariance(ref_params()); }

TEST(RefGrad, Fp64GradientsSurviveAConstantShiftOfTheScoresCausal) {
  SdpaParams p = ref_params();
  p.mask.causal = true;
  check_shift_invariance(p);
}

// Every feature at once, under GQA, lengths and BSHD strides.
TEST(RefGrad, EverythingCombined) {
  Qkv x = small(4, 2, 5, 6, Layout::bshd, 21);
  GuardedTensor bias = make_tensor(DType::f64, {2, 1, 5, 6});
  fill_normal(bias, 22, 0.0, 0.5);
  SdpaParams p = ref_params();
  p.mask.q_lengths = {5, 4};
  p.mask.k_lengths = {5, 6};
  nan_beyond_lengths(x.q, p.mask.q_lengths);
  nan_beyond_lengths(x.k, p.mask.k_lengths);
  nan_beyond_lengths(x.v, p.mask.k_lengths);
  p.mask.window_left = 3;
  p.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
  p.mask.alibi_slopes = {0.5, 0.25, 0.125, 0.0625};
  p.mask.softcap = 2.0;
  p.mask.bias = bias;
  p.mask.score_mod.value = [](double s, std::int64_t, std::int64_t h, std::int64_t, std::int64_t) {
    return s * (1.0 + 0.1 * static_cast<double>(h));
  };
  p.mask.score_mod.grad = [](double, std::int64_t, std::int64_t h, std::int64_t, std::int64_t) {
    return 1.0 + 0.1 * static_cast<double>(h);
  };
  p.dropout_p = 0.2;
  p.dropout_seed = 99;
  check_gradients(x, p, &bias);
}

TEST(RefGrad, ScoreModWithoutGradThrows) {
  const Qkv x = small();
  SdpaParams p = ref_params();
  p.mask.score_mod.value = [](double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return 2 * s; };
  const Outputs o = forward(x, p);
  const Grads g = make_grads(x);
  try {
    sdpa_backward(g.views(), o.out, x.q, x.k, x.v, o.out, o.lse, p);
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("score_mod"), std::string::npos) << e.what();
  }
}

// The gradients do not depend on the thread count (dK/dV, dbias reductions in a fixed order).
TEST(RefGrad, SameBitsAcrossThreadCounts) {
  const Qkv x = make_qkv(3, 4, 2, 33, 40, 8, 8, DType::f64, Layout::bhsd, 31);
  GuardedTensor bias = make_tensor(DType::f64, {1, 4, 33, 40});
  fill_normal(bias, 32);
  SdpaParams p = ref_params();
  p.mask.bias = bias;
  p.mask.causal = true;
  p.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
  p.dropout_p = 0.1;
  const Outputs o = forward(x, p);
  GuardedTensor dout = make_tensor4(DType::f64, 3, 4, 33, 8);
  fill_normal(dout, 33);
  const int saved = omp_get_max_threads();
  Grads ref_g = make_grads(x, bias);
  omp_set_num_threads(1);
  sdpa_backward(ref_g.views(), dout, x.q, x.k, x.v, o.out, o.lse, p);
  for (int threads : {2, 3, 7}) {
    omp_set_num_threads(threads);
    const Grads g = make_grads(x, bias);
    sdpa_backward(g.views(), dout, x.q, x.k, x.v, o.out, o.lse, p);
    EXPECT_EQ(max_abs_diff(g.dq, ref_g.dq), 0.0) << threads;
    EXPECT_EQ(max_abs_diff(g.dk, ref_g.dk), 0.0) << threads;
    EXPECT_EQ(max_abs_diff(g.dv, ref_g.dv), 0.0) << threads;
    EXPECT_EQ(max_abs_diff(g.dbias, ref_g.dbias), 0.0) << threads;
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace attn::test
