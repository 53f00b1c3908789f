// Tests of the reference forward (src/reference/sdpa_ref_fwd.cpp): small cases checked by hand, then
// properties on random inputs with odd sizes and NaN in every piece of memory that no visible key
// or query row covers.

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "attn/error.hpp"
#include "attn/sdpa.hpp"
#include "common/test_util.hpp"

namespace attn::test {
namespace {

SdpaParams ref_params() {
  SdpaParams p;
  p.backend = Backend::reference;
  return p;
}

constexpr std::int64_t kOddSizes[] = {1, 7, 63, 65, 127};

// ---------------------------------------------------------------------------------------------
// Hand-checked cases.

TEST(RefHand, IdenticalKeysGiveMeanOfV) {
  Qkv x = make_qkv(1, 2, 1, 3, 5, 4, 3, DType::f64, Layout::bhsd, 11);
  for (std::int64_t j = 1; j < x.Nk; ++j)
    for (std::int64_t d = 0; d < x.D; ++d) set(x.k, at(x.k, 0, 0, 0, d), 0, 0, j, d);
  const Outputs o = forward(x, ref_params());
  for (std::int64_t h = 0; h < x.Hq; ++h)
    for (std::int64_t i = 0; i < x.Nq; ++i)
      for (std::int64_t d = 0; d < x.Dv; ++d) {
        double mean = 0.0;
        for (std::int64_t j = 0; j < x.Nk; ++j) mean += at(x.v, 0, 0, j, d) / static_cast<double>(x.Nk);
        EXPECT_NEAR(at(o.out, 0, h, i, d), mean, 1e-14);
      }
}

TEST(RefHand, OneHotScoreRowSelectsThatKey) {
  // q_i = e0, k_2 = e0, other keys 0, scale 100: s = [0, 0, 100, 0, 0], P_2 = 1/(1 + 4e-100·...) ≈ 1.
  Qkv x = make_qkv(1, 1, 1, 2, 5, 3, 4, DType::f64, Layout::bhsd, 12);
  fill_value(x.q, 0.0);
  fill_value(x.k, 0.0);
  set(x.q, 1.0, 0, 0, 0, 0);
  set(x.q, 1.0, 0, 0, 1, 0);
  set(x.k, 1.0, 0, 0, 2, 0);
  SdpaParams params = ref_params();
  params.scale = 100.0;
  const Outputs o = forward(x, params);
  for (std::int64_t i = 0; i < x.Nq; ++i) {
    for (std::int64_t d = 0; d < x.Dv; ++d) EXPECT_NEAR(at(o.out, 0, 0, i, d), at(x.v, 0, 0, 2, d), 1e-30);
    EXPECT_NEAR(at(o.lse, 0, 0, i), 100.0, 1e-5);
  }
}

TEST(RefHand, TwoByTwoWorkedExample) {
  // q = k = I (2x2), V = [[1, 2], [3, 4]], scale = 1:
  //   S = [[1, 0], [0, 1]]
  //   row 0: P = [e/(e+1), 1/(e+1)] = [0.7310585786300049, 0.2689414213699951]
  //          o = 0.7310585786·[1, 2] + 0.2689414214·[3, 4] = [1.5378828427399902, 2.5378828427399904]
  //   row 1: P = [0.2689414213699951, 0.7310585786300049]
  //          o = [2.46211715726001, 3.4621171572600096]
  //   lse = log(e + 1) = 1.3132616875182228 for both rows.
  Qkv x = make_qkv(1, 1, 1, 2, 2, 2, 2, DType::f64, Layout::bhsd, 13);
  const double eye[2][2] = {{1, 0}, {0, 1}}, v[2][2] = {{1, 2}, {3, 4}};
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      set(x.q, eye[r][c], 0, 0, r, c);
      set(x.k, eye[r][c], 0, 0, r, c);
      set(x.v, v[r][c], 0, 0, r, c);
    }
  SdpaParams params = ref_params();
  params.scale = 1.0;
  const Outputs o = forward(x, params, /*with_probs=*/true);
  const double want[2][2] = {{1.5378828427399902, 2.5378828427399904}, {2.46211715726001, 3.4621171572600096}};
  for (int i = 0; i < 2; ++i) {
    for (int d = 0; d < 2; ++d) EXPECT_NEAR(at(o.out, 0, 0, i, d), want[i][d], 1e-15);
    EXPECT_FLOAT_EQ(static_cast<float>(at(o.lse, 0, 0, i)), 1.3132616875182228f);
    EXPECT_NEAR(at(o.probs, 0, 0, i, i), 0.7310585786300049, 1e-15);
    EXPECT_NEAR(at(o.probs, 0, 0, i, 1 - i), 0.2689414213699951, 1e-15);
  }
}

// ---------------------------------------------------------------------------------------------
// Properties on random inputs.

// Probabilities sum to one, lse is the log-sum-exp of the scores, out matches a naive loop; lengths
// leave NaN in the padding of q, k and v.
TEST(RefProps, ProbsSumToOneLseMatchesNaive) {
  int n = 0;
  for (std::int64_t Nq : kOddSizes) {
    const std::int64_t Nk = kOddSizes[(n++ + 2) % 5];
    for (std::uint64_t seed : {1u, 2u}) {
      SCOPED_TRACE(testing::Message() << "Nq=" << Nq << " Nk=" << Nk << " seed=" << seed);
      Qkv x = make_qkv(2, 2, 1, Nq, Nk, 5, 3, DType::f64, seed == 1 ? Layout::bhsd : Layout::bshd, seed + 100 * n);
      const std::vector<std::int64_t> Lq{Nq, Nq / 2}, Lk{Nk, (Nk + 1) / 3};
      nan_beyond_lengths(x.q, Lq);
      nan_beyond_lengths(x.k, Lk);
      nan_beyond_lengths(x.v, Lk);
      SdpaParams params = ref_params();
      params.mask.q_lengths = Lq;
      params.mask.k_lengths = Lk;
      params.probs_kind = ProbsKind::pre_dropout;
      const Outputs o = forward(x, params, /*with_probs=*/true);
      const double scale = 1.0 / std::sqrt(5.0);
      const NaiveResult ref =
          naive_attention(x, [&](std::int64_t b, std::int64_t, std::int64_t i, std::int64_t j, double dot) {
            return (i < Lq[b] && j < Lk[b]) ? scale * dot : -kInf;
          });
      EXPECT_LE(max_abs_diff(o.out, ref, x), 1e-12);
      for (std::int64_t b = 0; b < x.B; ++b)
        for (std::int64_t h = 0; h < x.Hq; ++h)
          for (std::int64_t i = 0; i < Nq; ++i) {
            double sum = 0.0;
            for (std::int64_t j = 0; j < Nk; ++j) {
              sum += at(o.probs, b, h, i, j);
              if (j >= Lk[b]) {
                EXPECT_EQ(at(o.probs, b, h, i, j), 0.0);
              }
            }
            const bool live = i < Lq[b] && Lk[b] > 0;
            EXPECT_NEAR(sum, live ? 1.0 : 0.0, 1e-12);
            const double lse = at(o.lse, b, h, i), want = ref.lse_at(x, b, h, i);
            if (live) {
              EXPECT_NEAR(lse, want, 1e-6 * std::max(1.0, std::abs(want)));
            } else {
              EXPECT_EQ(lse, -kInf);
            }
          }
      EXPECT_FALSE(has_nan(o.out));
      EXPECT_TRUE(o.out.guards_intact() && o.lse.guards_intact() && o.probs.guards_intact());
    }
  }
}

// Row i of a causal forward does not depend on keys after its visible range: they may even be NaN.
TEST(RefProps, CausalRowIgnoresLaterKeys) {
  struct Shape {
    std::int64_t Nq, Nk;
    Alignment align;
  };
  for (const Shape& s :
       {Shape{7, 12, Alignment::bottom_right}, Shape{65, 63, Alignment::top_left}, Shape{7, 12, Alignment::top_left}}) {
    SCOPED_TRACE(testing::Message() << "Nq=" << s.Nq << " Nk=" << s.Nk);
    const Qkv x = make_qkv(1, 2, 1, s.Nq, s.Nk, 4, 3, DType::f64, Layout::bhsd, 21);
    SdpaParams params = ref_params();
    params.mask.causal = true;
    params.mask.alignment = s.align;
    const Outputs base = forward(x, params);
    const std::int64_t off = s.align == Alignment::bottom_right ? s.Nk - s.Nq : 0;
    for (std::int64_t i : {std::int64_t{0}, s.Nq / 2, s.Nq - 1}) {
      Qkv y = copy_qkv(x, Layout::bhsd);
      for (std::int64_t j = std::max<std::int64_t>(0, i + off + 1); j < s.Nk; ++j) {
        for (std::int64_t d = 0; d < x.D; ++d) set(y.k, kNaN, 0, 0, j, d);
        for (std::int64_t d = 0; d < x.Dv; ++d) set(y.v, kNaN, 0, 0, j, d);
      }
      const Outputs o = forward(y, params);
      for (std::int64_t h = 0; h < x.Hq; ++h)
        for (std::int64_t d = 0; d < x.Dv; ++d)
          EXPECT_EQ(at(o.out, 0, h, i, d), at(base.out, 0, h, i, d)) << "row " << i;
    }
  }
}

// A boolean key-padding mask, the equivalent -inf bias and k_lengths give the same result.
TEST(RefProps, BoolMaskBiasAndLengthsAgree) {
  for (std::uint64_t seed : {31u, 32u}) {
    Qkv x = make_qkv(3, 2, 2, 7, 65, 6, 5, DType::f64, Layout::bshd, seed);
    const std::vector<std::int64_t> Lk{65, 20, 0};
    nan_beyond_lengths(x.k, Lk);
    nan_beyond_lengths(x.v, Lk);
    GuardedTensor mask = make_tensor(DType::boolean, {3, 1, 1, 65});
    GuardedTensor bias = make_tensor(DType::f32, {3, 1, 1, 65});
    for (std::int64_t b = 0; b < 3; ++b)
      for (std::int64_t j = 0; j < 65; ++j) {
        *static_cast<std::uint8_t*>(mask.view.at(mask.view.offset({b, 0, 0, j}))) = j < Lk[b] ? 1 : 0;
        set(bias, j < Lk[b] ? 0.0 : -kInf, b, 0, 0, j);
      }
    SdpaParams by_len = ref_params(), by_mask = ref_params(), by_bias = ref_params();
    by_len.mask.k_lengths = Lk;
    by_mask.mask.bool_mask = mask;
    by_bias.mask.bias = bias;
    const Outputs a = forward(x, by_len), b = forward(x, by_mask), c = forward(x, by_bias);
    EXPECT_EQ(max_abs_diff(a.out, b.out), 0.0);
    EXPECT_EQ(max_abs_diff(a.out, c.out), 0.0);
    EXPECT_EQ(max_abs_diff(a.lse, b.lse), 0.0);
    EXPECT_EQ(max_abs_diff(a.lse, c.lse), 0.0);
    EXPECT_FALSE(has_nan(a.out));
  }
}

// GQA/MQA equal MHA with the K/V heads repeated (copied in the test).
TEST(RefProps, GqaEqualsRepeatedMha) {
  for (std::int64_t Hkv : {1, 2, 3}) {
    SCOPED_TRACE(testing::Message() << "Hkv=" << Hkv);
    const Qkv x = make_qkv(2, 6, Hkv, 7, 63, 5, 4, DType::f64, Layout::bhsd, 40 + static_cast<std::uint64_t>(Hkv));
    Qkv mha = make_qkv(2, 6, 6, 7, 63, 5, 4, DType::f64, Layout::bshd, 1);
    for_each_element(mha.q.view, [&](const auto& idx, std::int64_t off) {
      store_f64(mha.q.view, off, at(x.q, idx[0], idx[1], idx[2], idx[3]));
    });
    const std::int64_t G = 6 / Hkv;
    for_each_element(mha.k.view, [&](const auto& idx, std::int64_t off) {
      store_f64(mha.k.view, off, at(x.k, idx[0], idx[1] / G, idx[2], idx[3]));
    });
    for_each_element(mha.v.view, [&](const auto& idx, std::int64_t off) {
      store_f64(mha.v.view, off, at(x.v, idx[0], idx[1] / G, idx[2], idx[3]));
    });
    SdpaParams params = ref_params();
    params.mask.causal = true;
    params.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
    EXPECT_EQ(max_abs_diff(forward(x, params).out, forward(mha, params).out), 0.0);
  }
}

// BHSD and BSHD strides (inputs and outputs) give the same result.
TEST(RefProps, BhsdAndBshdAgree) {
  const Qkv x = make_qkv(2, 3, 1, 65, 7, 9, 5, DType::f64, Layout::bhsd, 51);
  const Qkv y = copy_qkv(x, Layout::bshd);
  SdpaParams params = ref_params();
  params.mask.window_left = 5;
  params.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
  params.mask.alibi_slopes = {0.5, 0.25, 0.125};
  params.dropout_p = 0.2;
  params.dropout_seed = 7;
  const Outputs a = forward(x, params, true), b = forward(y, params, true);
  EXPECT_EQ(max_abs_diff(a.out, b.out), 0.0);
  EXPECT_EQ(max_abs_diff(a.lse, b.lse), 0.0);
  EXPECT_EQ(max_abs_diff(a.probs, b.probs), 0.0);
}

// Visibility of §5 computed in the test: lengths, alignment offset, window.
NaiveScore window_score(std::int64_t Nq, std::int64_t Nk, Alignment align, std::int64_t left, std::int64_t right,
                        double scale) {
  return [=](std::int64_t, std::int64_t, std::int64_t i, std::int64_t j, double dot) {
    const std::int64_t diag = i + (align == Alignment::bottom_right ? Nk - Nq : 0);
    const bool vis = (left < 0 || j >= diag - left) && (right < 0 || j <= diag + right);
    return vis ? scale * dot : -kInf;
  };
}

TEST(RefProps, AlignmentsDifferOnlyWhenNqDiffersFromNk) {
  for (auto [Nq, Nk] : {std::pair<std::int64_t, std::int64_t>{7, 12}, {12, 7}, {9, 9}}) {
    SCOPED_TRACE(testing::Message() << "Nq=" << Nq << " Nk=" << Nk);
    const Qkv x = make_qkv(1, 2, 2, Nq, Nk, 4, 4, DType::f64, Layout::bhsd, 61);
    SdpaParams tl = ref_params(), br = ref_params();
    tl.mask.causal = br.mask.causal = true;
    tl.mask.alignment = Alignment::top_left;
    br.mask.alignment = Alignment::bottom_right;
    const Outputs a = forward(x, tl), b = forward(x, br);
    const double scale = 0.5;  // 1/sqrt(D)
    EXPECT_LE(max_abs_diff(a.out, naive_attention(x, window_score(Nq, Nk, Alignment::top_left, -1, 0, scale)), x),
              1e-12);
    EXPECT_LE(max_abs_diff(b.out, naive_attention(x, window_score(Nq, Nk, Alignment::bottom_right, -1, 0, scale)), x),
              1e-12);
    if (Nq == Nk) {
      EXPECT_EQ(max_abs_diff(a.out, b.out), 0.0);
    } else {
      EXPECT_GT(max_abs_diff(a.out, b.out), 1e-3);
    }
  }
}

TEST(RefProps, SlidingWindowMatchesNaive) {
  struct W {
    std::int64_t Nq, Nk, left, right;
    Alignment align;
  };
  for (const W& w : {W{7, 12, 3, 1, Alignment::bottom_right}, W{7, 12, 3, 1, Alignment::top_left},
                     W{63, 63, 5, 0, Alignment::bottom_right}, W{65, 1, 0, 0, Alignment::top_left},
                     W{12, 7, -1, 2, Alignment::bottom_right}}) {
    SCOPED_TRACE(testing::Message() << "Nq=" << w.Nq << " Nk=" << w.Nk << " window=(" << w.left << "," << w.right
                                    << ")");
    const Qkv x = make_qkv(2, 2, 1, w.Nq, w.Nk, 9, 3, DType::f64, Layout::bshd, 71);
    SdpaParams params = ref_params();
    params.mask.window_left = w.left;
    params.mask.window_right = w.right;
    params.mask.alignment = w.align;
    const Outputs o = forward(x, params);
    const NaiveResult ref = naive_attention(x, window_score(w.Nq, w.Nk, w.align, w.left, w.right, 1.0 / 3.0));
    EXPECT_LE(max_abs_diff(o.out, ref, x), 1e-12);
    for (std::int64_t i = 0; i < w.Nq; ++i)
      if (ref.lse_at(x, 0, 0, i) == -kInf) {
        EXPECT_EQ(at(o.lse, 0, 0, i), -kInf);
      }
    EXPECT_FALSE(has_nan(o.out));
  }
}

// Packed varlen equals running each sequence as its own call (views into the same memory).
TEST(RefProps, VarlenEqualsSeparateSequences) {
  const std::vector<std::int64_t> cu_q{0, 3, 3, 10, 15}, cu_k{0, 4, 10, 17, 18};
  const Qkv x = make_qkv(1, 2, 1, 15, 18, 5, 3, DType::f64, Layout::bshd, 81);
  SdpaParams params = ref_params();
  params.mask.causal = true;
  params.mask.alignment = Alignment::bottom_right;  // Lq != Lk somewhere
  params.mask.window_left = 4;
  params.mask.softcap = 2.0;
  params.mask.alibi_slopes = {0.3, 0.1};
  SdpaParams packed = params;
  packed.mask.cu_seqlens_q = cu_q;
  packed.mask.cu_seqlens_k = cu_k;
  const Outputs all = forward(x, packed);
  for (std::size_t s = 0; s + 1 < cu_q.size(); ++s) {
    SCOPED_TRACE(testing::Message() << "sequence " << s);
    const std::int64_t lq = cu_q[s + 1] - cu_q[s], lk = cu_k[s + 1] - cu_k[s];
    Outputs one = make_outputs(x);
    const SdpaOutputs o1{slice_rows(one.out, 0, lq), slice_rows(one.lse, 0, lq), {}};
    sdpa_forward(o1, slice_rows(x.q, cu_q[s], lq), slice_rows(x.k, cu_k[s], lk), slice_rows(x.v, cu_k[s], lk), params);
    EXPECT_EQ(max_abs_diff(o1.out, slice_rows(all.out, cu_q[s], lq)), 0.0);
    EXPECT_EQ(max_abs_diff(o1.lse, slice_rows(all.lse, cu_q[s], lq)), 0.0);
  }
  EXPECT_FALSE(has_nan(all.out));
}

// A block mask equals the dense bool mask with the same bits; block bits may broadcast over B, H.
TEST(RefProps, BlockMaskEqualsDenseBoolMask) {
  constexpr std::int64_t B = 2, Hq = 2, Nq = 13, Nk = 17, qb = 3, kb = 4;
  for (bool broadcast : {false, true}) {
    const Qkv x = make_qkv(B, Hq, 1, Nq, Nk, 4, 3, DType::f64, Layout::bhsd, 91);
    const std::int64_t kb0 = broadcast ? 1 : B, kh0 = broadcast ? 1 : Hq;
    GuardedTensor bits = make_tensor(DType::boolean, {kb0, kh0, 5, 5});
    std::mt19937_64 rng(92);
    for_each_element(bits.view, [&](const auto&, std::int64_t off) {
      *static_cast<std::uint8_t*>(bits.view.at(off)) = (rng() % 10) < 6 ? 1 : 0;
    });
    GuardedTensor dense = make_tensor(DType::boolean, {B, Hq, Nq, Nk});
    for_each_element(dense.view, [&](const auto& idx, std::int64_t off) {
      const std::int64_t boff =
          bits.view.offset({broadcast ? 0 : idx[0], broadcast ? 0 : idx[1], idx[2] / qb, idx[3] / kb});
      *static_cast<std::uint8_t*>(dense.view.at(off)) = *static_cast<const std::uint8_t*>(bits.view.at(boff));
    });
    SdpaParams a = ref_params(), b = ref_params();
    a.mask.block_mask = BlockMask{qb, kb, bits};
    b.mask.bool_mask = dense;
    const Outputs oa = forward(x, a), ob = forward(x, b);
    EXPECT_EQ(max_abs_diff(oa.out, ob.out), 0.0);
    EXPECT_EQ(max_abs_diff(oa.lse, ob.lse), 0.0);
    EXPECT_FALSE(has_nan(oa.out));
  }
}

TEST(RefProps, MaskModEqualsDenseBoolMask) {
  constexpr std::int64_t B = 2, Hq = 3, Nq = 7, Nk = 65;
  const Qkv x = make_qkv(B, Hq, 3, Nq, Nk, 4, 3, DType::f64, Layout::bshd, 101);
  const auto rule = [](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    return (i * 7 + j * 3 + h + b) % 5 != 0;
  };
  GuardedTensor dense = make_tensor(DType::i8, {B, Hq, Nq, Nk});
  for_each_element(dense.view, [&](const auto& idx, std::int64_t off) {
    *static_cast<std::int8_t*>(dense.view.at(off)) = rule(idx[0], idx[1], idx[2], idx[3]) ? 1 : 0;
  });
  SdpaParams a = ref_params(), b = ref_params();
  a.mask.mask_mod = rule;
  b.mask.bool_mask = dense;
  EXPECT_EQ(max_abs_diff(forward(x, a).out, forward(x, b).out), 0.0);
}

// ALiBi, softcap and score_mod against a direct loop over the pipeline of §5.
TEST(RefProps, AlibiSoftcapScoreModMatchHandLoop) {
  constexpr std::int64_t Nq = 7, Nk = 12;
  const Qkv x = make_qkv(2, 3, 1, Nq, Nk, 4, 3, DType::f64, Layout::bhsd, 111);
  const std::vector<double> slopes{0.5, 0.125, 0.03};
  const double c = 1.5, scale = 0.9;
  const auto sm = [](double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    return s * 1.3 + 0.1 * std::sin(s) + 0.01 * static_cast<double>(b + h + i - j);
  };
  for (int variant = 0; variant < 4; ++variant) {  // alibi, softcap, score_mod, all three
    SCOPED_TRACE(testing::Message() << "variant " << variant);
    const bool alibi = variant == 0 || variant == 3, cap = variant == 1 || variant == 3, mod = variant >= 2;
    SdpaParams params = ref_params();
    params.scale = scale;
    params.mask.alignment = Alignment::bottom_right;
    if (alibi) params.mask.alibi_slopes = slopes;
    if (cap) params.mask.softcap = c;
    if (mod) params.mask.score_mod.value = sm;
    const Outputs o = forward(x, params);
    const NaiveResult ref =
        naive_attention(x, [&](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j, double dot) {
          double s = scale * dot;
          if (cap) s = c * std::tanh(s / c);
          if (alibi) s -= slopes[static_cast<std::size_t>(h)] * std::abs(static_cast<double>(i + (Nk - Nq) - j));
          if (mod) s = sm(s, b, h, i, j);
          return s;
        });
    EXPECT_LE(max_abs_diff(o.out, ref, x), 1e-12);
    for (std::int64_t i = 0; i < Nq; ++i) EXPECT_NEAR(at(o.lse, 1, 2, i), ref.lse_at(x, 1, 2, i), 1e-5);
  }
}

// A -inf bias hides the key for good: a later score_mod must not turn -inf into a number (or NaN).
TEST(RefProps, MinusInfBiasNotUndoneByScoreMod) {
  Qkv x = make_qkv(1, 1, 1, 4, 6, 3, 2, DType::f64, Layout::bhsd, 121);
  GuardedTensor bias = make_tensor(DType::f64, {4, 6});
  GuardedTensor mask = make_tensor(DType::boolean, {4, 6});
  for_each_element(bias.view, [&](const auto& idx, std::int64_t off) {
    const bool keep = (idx[0] + idx[1]) % 3 != 0;
    store_f64(bias.view, off, keep ? 0.0 : -kInf);
    *static_cast<std::uint8_t*>(mask.view.at(off)) = keep ? 1 : 0;
  });
  SdpaParams a = ref_params(), b = ref_params();
  a.mask.bias = bias;
  b.mask.bool_mask = mask;
  a.mask.score_mod.value = b.mask.score_mod.value = [](double s, std::int64_t, std::int64_t, std::int64_t,
                                                       std::int64_t) { return s * 1.3 + 0.1 * std::sin(s); };
  const Outputs oa = forward(x, a), ob = forward(x, b);
  EXPECT_FALSE(has_nan(oa.out));
  EXPECT_EQ(max_abs_diff(oa.out, ob.out), 0.0);
}

TEST(RefProps, FullyMaskedRowsGiveZeroAndMinusInf) {
  constexpr std::int64_t B = 2, Nq = 5, Nk = 7;
  Qkv x = make_qkv(B, 2, 1, Nq, Nk, 3, 4, DType::f64, Layout::bhsd, 131);
  GuardedTensor mask = make_tensor(DType::boolean, {B, 1, Nq, Nk});
  for_each_element(mask.view, [&](const auto& idx, std::int64_t off) {
    *static_cast<std::uint8_t*>(mask.view.at(off)) = (idx[2] == 0 || idx[2] == 3) ? 0 : ((idx[3] + idx[2]) % 2);
  });
  SdpaParams params = ref_params();
  params.mask.bool_mask = mask;
  const Outputs o = forward(x, params, true);
  EXPECT_FALSE(has_nan(o.out));
  EXPECT_FALSE(has_nan(o.probs));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t i : {0, 3}) {
        EXPECT_EQ(at(o.lse, b, h, i), -kInf);
        for (std::int64_t d = 0; d < 4; ++d) EXPECT_EQ(at(o.out, b, h, i, d), 0.0);
        for (std::int64_t j = 0; j < Nk; ++j) EXPECT_EQ(at(o.probs, b, h, i, j), 0.0);
      }
}

TEST(RefProps, EmptySizes) {
  {  // B = 0 and Nq = 0: valid, nothing written.
    const Qkv x0 = make_qkv(0, 2, 1, 3, 4, 3, 2);
    EXPECT_NO_THROW(forward(x0, ref_params()));
    const Qkv x1 = make_qkv(2, 2, 1, 0, 4, 3, 2);
    EXPECT_NO_THROW(forward(x1, ref_params(), true));
  }
  {  // Nk = 0: every row fully masked.
    const Qkv x = make_qkv(2, 2, 1, 3, 0, 3, 2);
    const Outputs o = forward(x, ref_params(), true);
    EXPECT_EQ(max_abs(o.out), 0.0);
    for_each_element(o.lse.view, [&](const auto&, std::int64_t off) { EXPECT_EQ(load_f64(o.lse.view, off), -kInf); });
    EXPECT_TRUE(o.out.guards_intact());
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout.

TEST(RefDropout, KeepRateWithinBinomialBound) {
  const Qkv x = make_qkv(2, 2, 1, 127, 127, 4, 3, DType::f64, Layout::bhsd, 141);
  for (double p : {0.1, 0.5, 0.9}) {
    SdpaParams params = ref_params();
    params.dropout_p = p;
    params.dropout_seed = 0x9E3779B97F4A7C15ull;
    params.dropout_offset = 3;
    const Outputs o = forward(x, params, true);
    double kept = 0, n = 0;
    for_each_element(o.probs.view, [&](const auto&, std::int64_t off) {
      kept += load_f64(o.probs.view, off) != 0.0 ? 1 : 0;
      n += 1;
    });
    const double sigma = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(kept, n * (1 - p), 5 * sigma) << "p=" << p;
  }
}

TEST(RefDropout, ZeroProbabilityEqualsNoDropout) {
  const Qkv x = make_qkv(2, 2, 2, 7, 63, 5, 5, DType::f64, Layout::bshd, 151);
  SdpaParams a = ref_params(), b = ref_params();
  b.dropout_p = 0.0;
  b.dropout_seed = 1234;
  b.dropout_offset = 99;
  const Outputs oa = forward(x, a, true), ob = forward(x, b, true);
  EXPECT_EQ(max_abs_diff(oa.out, ob.out), 0.0);
  EXPECT_EQ(max_abs_diff(oa.probs, ob.probs), 0.0);
}

// post_dropout = keep·pre/(1-p); out = post·V; pre_dropout rows sum to 1.
TEST(RefDropout, PreAndPostDropoutProbs) {
  const Qkv x = make_qkv(1, 2, 1, 7, 65, 4, 3, DType::f64, Layout::bhsd, 161);
  SdpaParams params = ref_params();
  params.dropout_p = 0.3;
  params.dropout_seed = 77;
  params.probs_kind = ProbsKind::pre_dropout;
  const Outputs pre = forward(x, params, true);
  params.probs_kind = ProbsKind::post_dropout;
  const Outputs post = forward(x, params, true);
  EXPECT_EQ(max_abs_diff(pre.out, post.out), 0.0);
  std::int64_t dropped = 0;
  for (std::int64_t h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < 7; ++i) {
      double sum = 0.0;
      std::vector<double> o(3, 0.0);
      for (std::int64_t j = 0; j < 65; ++j) {
        const double pp = at(pre.probs, 0, h, i, j), pq = at(post.probs, 0, h, i, j);
        sum += pp;
        if (pq == 0.0) {
          ++dropped;
        } else {
          EXPECT_NEAR(pq, pp / 0.7, 1e-15);
        }
        for (std::int64_t d = 0; d < 3; ++d) o[d] += pq * at(x.v, 0, 0, j, d);
      }
      EXPECT_NEAR(sum, 1.0, 1e-12);
      for (std::int64_t d = 0; d < 3; ++d) EXPECT_NEAR(at(post.out, 0, h, i, d), o[d], 1e-12);
    }
  EXPECT_GT(dropped, 0);
}

}  // namespace
}  // namespace attn::test
