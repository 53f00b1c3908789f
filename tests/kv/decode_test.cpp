// decode() against the fp64 reference sdpa_forward (bottom-right causal, k_lengths) on the same
// keys: contiguous and paged caches, ragged lengths, MHA/GQA/MQA, window, ALiBi, softcap, f32/bf16
// caches, every compiled ISA; paged == contiguous bitwise; thread-count determinism; NaN beyond
// the lengths; the i8 cache's error bound; cross-attention caches.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <omp.h>
#include <string>

#include "attn/error.hpp"

#include "cpu/isa.hpp"
#include "kv/kv_test_util.hpp"

namespace attn::test {
namespace {

// fp32 tolerance: decode accumulates in fp32 (q rounded to fp32, exp ≤ 2 ulp); outputs are O(1)
// averages of N(0, 1) values, so the fp32 error stays within a few 1e-6; 3e-5 leaves headroom.
constexpr double kTolF32 = 3e-5;

struct Case {
  std::int64_t B, Hq, Hkv, Nq, D, Dv;
  std::vector<std::int64_t> lens;
  DecodeParams dp;
  std::string name;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  auto add = [&](Case x) { c.push_back(std::move(x)); };
  add({3, 4, 4, 1, 32, 32, {37, 1, 64}, {}, "mha_nq1"});
  add({3, 8, 2, 1, 64, 64, {100, 17, 0}, {}, "gqa_nq1_empty_row"});
  add({2, 6, 1, 3, 19, 13, {50, 2}, {}, "mqa_nq3_odd_dims_short_row"});
  add({2, 4, 2, 4, 128, 128, {700, 1200}, {}, "gqa_nq4_several_chunks"});
  DecodeParams win;
  win.window_left = 20;
  add({2, 4, 2, 2, 40, 24, {90, 33}, win, "window"});
  DecodeParams mods;
  mods.alibi_slopes = {0.5, 0.25, 0.125, 0.0625};
  mods.softcap = 5.0;
  mods.scale = 0.3;
  add({2, 4, 2, 2, 32, 32, {61, 120}, mods, "alibi_softcap_scale"});
  DecodeParams cross;
  cross.causal = false;
  add({2, 4, 4, 3, 16, 16, {30, 45}, cross, "non_causal"});
  return c;
}

struct Built {
  Qkv x;
  KvCache cache;
};

Built build(const Case& c, DType dtype, KvLayout layout, std::int64_t page = 16, std::uint64_t seed = 7) {
  const std::int64_t Nk = std::max<std::int64_t>(1, *std::max_element(c.lens.begin(), c.lens.end()));
  Qkv x = make_qkv(c.B, c.Hq, c.Hkv, c.Nq, Nk, c.D, c.Dv, DType::f64, Layout::bshd, seed);
  round_to(x.k, dtype);
  round_to(x.v, dtype);
  KvCacheConfig cfg{c.B, c.Hkv, c.D, c.Dv, Nk + 5, dtype, layout, page};
  KvCache cache(cfg);
  fill_cache(cache, x.k, x.v, c.lens);
  nan_beyond_lengths(x.k, c.lens);
  nan_beyond_lengths(x.v, c.lens);
  return {std::move(x), std::move(cache)};
}

class DecodeVsReference : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { cpu::set_isa_override(GetParam()); }
  void TearDown() override { cpu::set_isa_override(""); }
};

TEST_P(DecodeVsReference, AllCasesLayoutsDtypes) {
  for (const Case& c : cases())
    for (DType dtype : {DType::f32, DType::bf16}) {
      DecodeOut first;
      for (KvLayout layout : {KvLayout::contiguous, KvLayout::paged}) {
        SCOPED_TRACE(c.name + " " + dtype_name(dtype) + " " + kv_layout_name(layout));
        Built bt = build(c, dtype, layout);
        Outputs ref = forward(bt.x, reference_params(c.dp, c.lens));
        DecodeOut got = run_decode(bt.x.q, bt.cache, c.dp);
        EXPECT_LE(max_abs_diff(got.out, ref.out), kTolF32) << "nmse " << nmse(got.out, ref.out);
        EXPECT_LE(lse_diff(got.lse, ref.lse), kTolF32);
        EXPECT_TRUE(got.out.guards_intact() && got.lse.guards_intact());
        if (layout == KvLayout::contiguous) first = std::move(got);
        else EXPECT_TRUE(got.same_bits(first)) << "paged and contiguous results differ";
      }
    }
}

std::vector<std::string> isas() {
  std::vector<std::string> r;
  for (const std::string& n : cpu::compiled_isas())
    if (cpu::isa_supported(n)) r.push_back(n);
  return r;
}
INSTANTIATE_TEST_SUITE_P(Isa, DecodeVsReference, ::testing::ValuesIn(isas()),
                         [](const auto& param_info) { return param_info.param; });

// Long caches (several chunks per row): the same bits for 1, 2, 3 and 7 threads, and for
// contiguous and paged storage with different page sizes.
TEST(Decode, BitwiseAcrossThreadsAndLayouts) {
  const Case c{2, 8, 2, 2, 128, 128, {5000, 3333}, {}, "long"};
  for (DType dtype : {DType::f32, DType::bf16, DType::i8}) {
    SCOPED_TRACE(dtype_name(dtype));
    Built contiguous = build(c, dtype, KvLayout::contiguous);
    Built paged16 = build(c, dtype, KvLayout::paged, 16);
    Built paged256 = build(c, dtype, KvLayout::paged, 256);
    DecodeParams dp;
    dp.num_threads = 1;
    const DecodeOut base = run_decode(contiguous.x.q, contiguous.cache, dp);
    for (int threads : {1, 2, 3, 7}) {
      dp.num_threads = threads;
      EXPECT_TRUE(run_decode(contiguous.x.q, contiguous.cache, dp).same_bits(base)) << threads << " threads";
      EXPECT_TRUE(run_decode(paged16.x.q, paged16.cache, dp).same_bits(base)) << threads << " threads, pages of 16";
      EXPECT_TRUE(run_decode(paged256.x.q, paged256.cache, dp).same_bits(base)) << threads << " threads, pages of 256";
    }
  }
}

// Memory beyond each row's length filled with NaN (appended, then trimmed away) changes nothing.
TEST(Decode, NanBeyondLengthsIsNeverRead) {
  const Case c{3, 4, 2, 2, 32, 32, {45, 16, 70}, {}, "nan"};
  for (DType dtype : {DType::f32, DType::bf16, DType::i8})
    for (KvLayout layout : {KvLayout::contiguous, KvLayout::paged}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + kv_layout_name(layout));
      Built bt = build(c, dtype, layout);
      const DecodeOut before = run_decode(bt.x.q, bt.cache, {});
      GuardedTensor nan_k = make_tensor4(DType::f32, 3, 2, 5, 32), nan_v = make_tensor4(DType::f32, 3, 2, 5, 32);
      bt.cache.append(nan_k, nan_v);
      for (std::int64_t b = 0; b < 3; ++b) bt.cache.trim(b, c.lens[b]);
      EXPECT_TRUE(run_decode(bt.x.q, bt.cache, {}).same_bits(before));
    }
}

// i8 cache vs the fp32 computation. Per element, symmetric rounding gives |k − k̃| ≤ sk_j/2 and
// |v − ṽ| ≤ sv_j/2 (sk_j, sv_j the per-token scales). Scores: |s̃_j − s_j| = scale·|q·(k̃_j − k_j)|
// ≤ ε := scale·‖q‖₁·max_j sk_j / 2. Softmax: every p̃_j/p_j ∈ [e^(−2ε), e^(2ε)], so
// Σ_j |p̃_j − p_j| ≤ e^(2ε) − 1. Output: õ − o = Σ_j (p̃_j − p_j)·ṽ_j + Σ_j p_j·(ṽ_j − v_j), so
// |õ_d − o_d| ≤ (e^(2ε) − 1)·max_j |ṽ_jd| + max_j sv_j / 2  (+ the fp32 floor kTolF32).
TEST(Decode, Int8ErrorWithinQuantisationBound) {
  const Case c{2, 8, 2, 1, 64, 64, {300, 129}, {}, "i8"};
  Built f32 = build(c, DType::f32, KvLayout::contiguous);
  Built i8 = build(c, DType::i8, KvLayout::paged);
  const DecodeOut exact = run_decode(f32.x.q, f32.cache, {}), quant = run_decode(i8.x.q, i8.cache, {});
  const double scale = 1.0 / std::sqrt(64.0);
  double worst_ratio = 0.0;
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.Hq; ++h) {
      const std::int64_t kvh = h / (c.Hq / c.Hkv);
      double q1 = 0.0, sk = 0.0, sv = 0.0;
      for (std::int64_t d = 0; d < c.D; ++d) q1 += std::abs(at(f32.x.q, b, h, 0, d));
      std::vector<double> vmax(static_cast<std::size_t>(c.Dv), 0.0);
      for (std::int64_t j = 0; j < c.lens[b]; ++j) {
        sk = std::max(sk, static_cast<double>(i8.cache.scale(0, b, kvh, j)));
        sv = std::max(sv, static_cast<double>(i8.cache.scale(1, b, kvh, j)));
        for (std::int64_t d = 0; d < c.Dv; ++d)
          vmax[d] = std::max(vmax[d], std::abs(static_cast<double>(i8.cache.element(1, b, kvh, j, d))));
      }
      const double eps = scale * q1 * sk / 2.0;
      for (std::int64_t d = 0; d < c.Dv; ++d) {
        const double bound = std::expm1(2.0 * eps) * vmax[d] + sv / 2.0 + kTolF32;
        const double err = std::abs(at(quant.out, b, h, 0, d) - at(exact.out, b, h, 0, d));
        ASSERT_LE(err, bound) << "b " << b << " h " << h << " d " << d;
        worst_ratio = std::max(worst_ratio, err / bound);
      }
    }
  std::printf("i8 cache: largest error / bound = %.3f\n", worst_ratio);
  // Tighter: the i8 path equals an fp32 cache holding the dequantised values, up to fp32 rounding.
  KvCache deq({c.B, c.Hkv, c.D, c.Dv, 400});
  GuardedTensor k = make_tensor4(DType::f32, c.B, c.Hkv, 300, c.D), v = make_tensor4(DType::f32, c.B, c.Hkv, 300, c.Dv);
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.Hkv; ++h)
      for (std::int64_t j = 0; j < c.lens[b]; ++j)
        for (std::int64_t d = 0; d < c.D; ++d) {
          set(k, i8.cache.element(0, b, h, j, d), b, h, j, d);
          set(v, i8.cache.element(1, b, h, j, d), b, h, j, d);
        }
  deq.append(k, v, {}, c.lens);
  EXPECT_LE(max_abs_diff(run_decode(f32.x.q, deq, {}).out, quant.out), kTolF32);
}

// Cross-attention: K/V projected once, decoded (non-causal) at several steps against the reference.
// A projection large enough (> 2 MFLOP) to be split across the OpenMP team (src/core/blas_gemm.hpp):
// the same values as by hand, and the same bits with 1 and 2 threads.
TEST(Decode, CrossAttentionProjectionSplitAcrossThreads) {
  const std::int64_t B = 1, Ns = 300, E = 64, Hkv = 2, D = 64;
  GuardedTensor x = make_tensor(DType::f32, {B, Ns, E}), wk = make_tensor(DType::f32, {Hkv * D, E}),
                wv = make_tensor(DType::f32, {Hkv * D, E});
  fill_normal(x, 11);
  fill_normal(wk, 12, 0.0, 0.2);
  fill_normal(wv, 13, 0.0, 0.2);
  const int saved = omp_get_max_threads();
  std::vector<KvCache> caches;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    caches.push_back(project_cross_kv(x, wk, wv, {}, {}, {Hkv, D, 0, DType::f32, KvLayout::contiguous, 16}, {Ns}));
  }
  omp_set_num_threads(saved);
  double worst = 0.0;
  for (std::int64_t n = 0; n < Ns; ++n)
    for (std::int64_t o = 0; o < Hkv * D; ++o) {
      double k = 0.0, v = 0.0;
      for (std::int64_t e = 0; e < E; ++e) {
        k += at(x, 0, n, e) * at(wk, o, e);
        v += at(x, 0, n, e) * at(wv, o, e);
      }
      for (int which : {0, 1})
        EXPECT_EQ(caches[0].element(which, 0, o / D, n, o % D), caches[1].element(which, 0, o / D, n, o % D));
      worst = std::max({worst, std::abs(k - caches[1].element(0, 0, o / D, n, o % D)),
                        std::abs(v - caches[1].element(1, 0, o / D, n, o % D))});
    }
  EXPECT_LE(worst, 1e-4);
}

TEST(Decode, CrossAttentionCache) {
  const std::int64_t B = 2, Ns = 23, E = 24, Hkv = 2, D = 8, Hq = 4;
  GuardedTensor x = make_tensor(DType::f32, {B, Ns, E}), wk = make_tensor(DType::f32, {Hkv * D, E}),
                wv = make_tensor(DType::f32, {Hkv * D, E}), bk = make_tensor(DType::f32, {Hkv * D});
  fill_normal(x, 1);
  fill_normal(wk, 2, 0.0, 0.2);
  fill_normal(wv, 3, 0.0, 0.2);
  fill_normal(bk, 4);
  const std::vector<std::int64_t> src = {23, 11};
  for (KvLayout layout : {KvLayout::contiguous, KvLayout::paged}) {
    const KvCache cache = project_cross_kv(x, wk, wv, bk, {}, {Hkv, D, 0, DType::f32, layout, 16}, src);
    EXPECT_TRUE(cache.read_only());
    // the projection, checked by hand
    double worst = 0.0;
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t n = 0; n < src[b]; ++n)
        for (std::int64_t o = 0; o < Hkv * D; ++o) {
          double k = at(bk, o), v = 0.0;
          for (std::int64_t e = 0; e < E; ++e) {
            k += at(x, b, n, e) * at(wk, o, e);
            v += at(x, b, n, e) * at(wv, o, e);
          }
          worst = std::max({worst, std::abs(k - cache.element(0, b, o / D, n, o % D)),
                            std::abs(v - cache.element(1, b, o / D, n, o % D))});
        }
    EXPECT_LE(worst, 1e-4);
    // the reference on the cached K/V
    Qkv ref_in = make_qkv(B, Hq, Hkv, 1, Ns, D, D, DType::f64, Layout::bhsd, 9);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t h = 0; h < Hkv; ++h)
        for (std::int64_t n = 0; n < src[b]; ++n)
          for (std::int64_t d = 0; d < D; ++d) {
            set(ref_in.k, cache.element(0, b, h, n, d), b, h, n, d);
            set(ref_in.v, cache.element(1, b, h, n, d), b, h, n, d);
          }
    nan_beyond_lengths(ref_in.k, src);
    nan_beyond_lengths(ref_in.v, src);
    DecodeParams dp;
    dp.causal = false;
    for (int step = 0; step < 3; ++step) {  // new queries each decoder step, same cache
      fill_normal(ref_in.q, 100 + static_cast<std::uint64_t>(step));
      Outputs ref = forward(ref_in, reference_params(dp, src));
      EXPECT_LE(max_abs_diff(run_decode(ref_in.q, cache, dp).out, ref.out), kTolF32);
    }
    KvCache& writable = const_cast<KvCache&>(cache);
    try {
      writable.append(make_tensor4(DType::f32, B, Hkv, 1, D), make_tensor4(DType::f32, B, Hkv, 1, D));
      ADD_FAILURE() << "append on a read-only cache did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "cache");
    }
  }
}

TEST(Decode, BadInputsNameTheArgument) {
  KvCache cache({2, 2, 16, 8, 32});
  GuardedTensor k = make_tensor4(DType::f32, 2, 2, 4, 16), v = make_tensor4(DType::f32, 2, 2, 4, 8);
  fill_normal(k, 1);
  fill_normal(v, 2);
  cache.append(k, v);
  GuardedTensor q = make_tensor4(DType::f32, 2, 6, 1, 16), out = make_tensor4(DType::f32, 2, 6, 1, 8);
  fill_normal(q, 3);
  decode(out, q, cache);
  GuardedTensor q5 = make_tensor4(DType::f32, 2, 5, 1, 16), out5 = make_tensor4(DType::f32, 2, 5, 1, 8);
  expect_error([&] { decode(out5, q5, cache); }, "q.shape[1]", "multiple");
  GuardedTensor qd = make_tensor4(DType::f32, 2, 6, 1, 12);
  expect_error([&] { decode(out, qd, cache); }, "q.shape[3]", "head_dim 16");
  GuardedTensor qb = make_tensor4(DType::f32, 3, 6, 1, 16);
  expect_error([&] { decode(out, qb, cache); }, "q.shape[0]", "batch 2");
  GuardedTensor bad_out = make_tensor4(DType::f32, 2, 6, 1, 16);
  expect_error([&] { decode(bad_out, q, cache); }, "out", "expected [2, 6, 1, 8]");
  DecodeParams dp;
  dp.alibi_slopes = {1.0};
  expect_error([&] { decode(out, q, cache, dp); }, "params.alibi_slopes", "Hq = 6");
  GuardedTensor lse = make_tensor(DType::f64, {2, 6, 1});
  expect_error([&] { decode({out.view, lse.view}, q, cache); }, "lse", "f32");
}

}  // namespace
}  // namespace attn::test
