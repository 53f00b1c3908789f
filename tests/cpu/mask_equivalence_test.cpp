// Every mask kind and score modifier of the cpu kernels against the fp64 reference given an
// equivalent problem built here, in the test, without src/variants: a block mask, a mask_mod or a
// window as the dense boolean mask they stand for, a bool mask as a 0/−inf bias, ALiBi as its
// dense bias, a bias and softcap as score_mod callbacks written here. The reference itself runs
// the shared variant list (variants/pipeline.hpp), so a variant missing from that list would pass
// the cpu-vs-reference tests of sdpa_fwd_test / sdpa_bwd_test; it fails these. Forward (out, lse)
// and backward (dq, dk, dv), every ISA the machine runs, f32, odd sizes, GQA, Nq != Nk.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.hpp"
#include "cpu/sdpa_case.hpp"

namespace attn::test {
namespace {

constexpr std::int64_t kB = 2, kHq = 4, kHkv = 2, kNq = 65, kNk = 127, kD = 24, kDv = 20;

/// One kind under test: the cpu call's params and the reference's equivalent params.
struct Equivalent {
  std::string name;
  SdpaParams kind, dense;
  GuardedTensor kind_tensor, dense_tensor;  // own what the params point to
};

/// A dense [B, Hq, Nq, Nk] tensor of `dt` with value(b, h, i, j).
GuardedTensor dense(DType dt, const std::function<double(std::int64_t, std::int64_t, std::int64_t, std::int64_t)>& value) {
  GuardedTensor t = make_tensor(dt, {kB, kHq, kNq, kNk});
  for_each_element(t.view, [&](const auto& idx, std::int64_t off) { store_f64(t.view, off, value(idx[0], idx[1], idx[2], idx[3])); });
  return t;
}

/// The window rule of docs/contract.md, written out here: off = Nk − Nq (bottom-right) or 0.
bool in_window(const MaskSpec& m, std::int64_t i, std::int64_t j) {
  const std::int64_t off = m.alignment == Alignment::bottom_right ? kNk - kNq : 0;
  const std::int64_t right = m.causal ? 0 : m.window_right;
  if (m.window_left >= 0 && j < i + off - m.window_left) return false;
  if (right >= 0 && j > i + off + right) return false;
  return true;
}

std::vector<Equivalent*> cases(std::vector<Equivalent>& all) {
  std::vector<Equivalent*> r;
  for (auto& e : all) r.push_back(&e);
  return r;
}

std::vector<Equivalent> make_equivalents() {
  std::vector<Equivalent> all;
  const double kNegInf = -std::numeric_limits<double>::infinity();
  std::mt19937_64 rng(11);
  {  // block mask -> dense bool mask
    Equivalent e;
    e.name = "block_mask";
    BlockMask bm;
    bm.q_block = 16;
    bm.k_block = 32;
    e.kind_tensor = make_tensor(DType::boolean, {kB, kHq, (kNq + 15) / 16, (kNk + 31) / 32});
    std::bernoulli_distribution keep(0.6);
    for_each_element(e.kind_tensor.view, [&](const auto&, std::int64_t off) { store_f64(e.kind_tensor.view, off, keep(rng)); });
    bm.keep = e.kind_tensor.view;
    e.kind.mask.block_mask = bm;
    const TensorView kt = e.kind_tensor.view;
    e.dense_tensor = dense(DType::boolean, [&](auto b, auto h, auto i, auto j) { return at(kt, b, h, i / 16, j / 32); });
    e.dense.mask.bool_mask = e.dense_tensor.view;
    all.push_back(std::move(e));
  }
  {  // bool mask -> 0 / −inf bias
    Equivalent e;
    e.name = "bool_mask";
    std::bernoulli_distribution keep(0.7);
    e.kind_tensor = dense(DType::boolean, [&](auto, auto, auto, auto) { return keep(rng) ? 1.0 : 0.0; });
    e.kind.mask.bool_mask = e.kind_tensor.view;
    const TensorView kt = e.kind_tensor.view;
    e.dense_tensor = dense(DType::f32, [&](auto b, auto h, auto i, auto j) { return at(kt, b, h, i, j) != 0.0 ? 0.0 : kNegInf; });
    e.dense.mask.bias = e.dense_tensor.view;
    all.push_back(std::move(e));
  }
  for (Alignment al : {Alignment::bottom_right, Alignment::top_left}) {  // ALiBi -> dense bias
    Equivalent e;
    e.name = al == Alignment::top_left ? "alibi_top_left" : "alibi_bottom_right";
    for (std::int64_t h = 0; h < kHq; ++h) e.kind.mask.alibi_slopes.push_back(0.05 * static_cast<double>(h + 1));
    e.kind.mask.alignment = al;
    const std::int64_t off = al == Alignment::bottom_right ? kNk - kNq : 0;
    const std::vector<double> slopes = e.kind.mask.alibi_slopes;
    e.dense_tensor = dense(DType::f32, [&](auto, auto h, auto i, auto j) {
      return -slopes[static_cast<std::size_t>(h)] * static_cast<double>(std::llabs(i + off - j));
    });
    e.dense.mask.bias = e.dense_tensor.view;
    all.push_back(std::move(e));
  }
  {  // bias -> score_mod adding it
    Equivalent e;
    e.name = "bias";
    e.kind_tensor = make_tensor(DType::f32, {kB, kHq, kNq, kNk});
    fill_normal(e.kind_tensor.view, 5);
    e.kind.mask.bias = e.kind_tensor.view;
    const TensorView bt = e.kind_tensor.view;
    e.dense.mask.score_mod.value = [bt](double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
      return s + at(bt, b, h, i, j);
    };
    e.dense.mask.score_mod.grad = [](double, std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return 1.0; };
    all.push_back(std::move(e));
  }
  {  // softcap -> score_mod c·tanh(s/c)
    Equivalent e;
    e.name = "softcap";
    const double c = 2.5;
    e.kind.mask.softcap = c;
    e.kind.scale = 0.8;  // scores beyond the cap
    e.dense.scale = 0.8;
    e.dense.mask.score_mod.value = [c](double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return c * std::tanh(s / c); };
    e.dense.mask.score_mod.grad = [c](double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) {
      const double t = std::tanh(s / c);
      return 1.0 - t * t;
    };
    all.push_back(std::move(e));
  }
  {  // mask_mod -> dense bool mask of the same predicate
    Equivalent e;
    e.name = "mask_mod";
    auto pred = [](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) { return (3 * i + j + b + 2 * h) % 4 != 0; };
    e.kind.mask.mask_mod = pred;
    e.dense_tensor = dense(DType::boolean, [&](auto b, auto h, auto i, auto j) { return pred(b, h, i, j) ? 1.0 : 0.0; });
    e.dense.mask.bool_mask = e.dense_tensor.view;
    all.push_back(std::move(e));
  }
  for (int w = 0; w < 2; ++w) {  // causal / sliding window -> dense bool mask
    Equivalent e;
    e.name = w == 0 ? "causal_top_left" : "window_bottom_right";
    MaskSpec& m = e.kind.mask;
    if (w == 0) {
      m.causal = true;
      m.alignment = Alignment::top_left;
    } else {
      m.window_left = 9;
      m.window_right = 4;
      m.alignment = Alignment::bottom_right;  // Nq != Nk: a windowed call states it (no default)
    }
    const MaskSpec mc = m;
    e.dense_tensor = dense(DType::boolean, [&](auto, auto, auto i, auto j) { return in_window(mc, i, j) ? 1.0 : 0.0; });
    e.dense.mask.bool_mask = e.dense_tensor.view;
    all.push_back(std::move(e));
  }
  return all;
}

/// Largest |a − b| relative to 1 + max|b|.
double rel_diff(const TensorView& a, const TensorView& b) { return max_abs_diff(a, b) / (1.0 + max_abs(b)); }

class MaskEquivalence : public ::testing::TestWithParam<std::string> {};

TEST_P(MaskEquivalence, CpuKindMatchesReferenceOnDenseEquivalent) {
  IsaScope isa(GetParam());
  const Qkv x = make_qkv(kB, kHq, kHkv, kNq, kNk, kD, kDv, DType::f32, Layout::bhsd, 3);
  GuardedTensor dout = make_tensor4(DType::f32, kB, kHq, kNq, kDv, Layout::bhsd);
  fill_normal(dout.view, 17);
  std::vector<Equivalent> all = make_equivalents();
  for (Equivalent* e : cases(all)) {
    SCOPED_TRACE(e->name);
    SdpaParams cpu = e->kind, ref = e->dense;
    cpu.backend = Backend::cpu;
    ref.backend = Backend::reference;
    const Outputs fast = forward(x, cpu, false, DType::f32);
    const Outputs truth = forward(x, ref, false, DType::f32);
    EXPECT_LE(max_abs_diff(fast.out.view, truth.out.view), 1e-4) << "out";
    double lse_err = 0.0;
    for_each_element(truth.lse.view, [&](const auto& idx, std::int64_t off) {
      const double t = load_f64(truth.lse.view, off), f = at(fast.lse.view, idx[0], idx[1], idx[2]);
      lse_err = std::max(lse_err, std::isinf(t) || std::isinf(f) ? (t == f ? 0.0 : kInf) : std::abs(t - f) / (1.0 + std::abs(t)));
    });
    EXPECT_LE(lse_err, 1e-5) << "lse";
    // Backward: each side from its own forward's out and lse.
    Grads g_fast = make_grads(x), g_ref = make_grads(x);
    sdpa_backward(g_fast.views(), dout.view, x.q, x.k, x.v, fast.out.view, fast.lse.view, cpu);
    sdpa_backward(g_ref.views(), dout.view, x.q, x.k, x.v, truth.out.view, truth.lse.view, ref);
    EXPECT_LE(rel_diff(g_fast.dq.view, g_ref.dq.view), 1e-4) << "dq";
    EXPECT_LE(rel_diff(g_fast.dk.view, g_ref.dk.view), 1e-4) << "dk";
    EXPECT_LE(rel_diff(g_fast.dv.view, g_ref.dv.view), 1e-4) << "dv";
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, MaskEquivalence, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<std::string>& isa_info) { return isa_info.param; });

}  // namespace
}  // namespace attn::test
