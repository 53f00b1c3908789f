// MultiheadAttention with caches (src/nn/mha_cached.cpp): decoding step by step (after a prefill)
// equals the full causal forward; cached cross-attention equals recomputing K/V at every step.

#include <gtest/gtest.h>

#include "nn/mha_case.hpp"

namespace attn::test {
namespace {

// Tokens [t0, t0 + n) of a module-layout rank-3 view.
TensorView tokens(const TensorView& x, bool batch_first, std::int64_t t0, std::int64_t n) {
  TensorView s = x;
  const int axis = batch_first ? 1 : 0;
  s.data = x.at(t0 * x.strides[axis]);
  s.shape[axis] = n;
  return s;
}

struct CachedCase {
  std::int64_t Hkv;
  bool batch_first;
  Rope rope;
  KvLayout layout;
};

class MhaCached : public ::testing::TestWithParam<CachedCase> {};

TEST_P(MhaCached, DecodingEqualsCausalForward) {
  const CachedCase cc = GetParam();
  MhaCase c;
  c.E = 32;
  c.Hq = 4;
  c.Hkv = cc.Hkv;
  c.B = 2;
  c.Lq = c.Lk = 9;
  c.rope = cc.rope;
  c.layout = cc.batch_first ? SeqLayout::batch_first : SeqLayout::seq_first;
  nn::MultiheadAttention<float> m(c.config());
  randomize_biases(m, 3);
  const MhaInputs in = make_inputs(c, DType::f32, 4);
  nn::MhaOptions causal;
  causal.is_causal = true;
  const Seq full = from_module(m.forward(in.query, in.query, in.query, causal).out, c.layout);

  KvCache cache = m.make_cache(c.B, 16, DType::f32, cc.layout);
  std::int64_t t = 0;
  for (std::int64_t n : {3, 1, 1, 2, 1, 1}) {  // a prefill of 3, then steps
    const TensorView x = tokens(in.query, cc.batch_first, t, n);
    const Seq got = from_module(m.forward_cached(x, x, x, cache), c.layout);
    double err = 0;
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t l = 0; l < n; ++l)
        for (std::int64_t e = 0; e < c.E; ++e) err = std::max(err, std::abs(got.at(b, l, e) - full.at(b, t + l, e)));
    EXPECT_LE(err, 2e-5) << "tokens " << t << "..+" << n;
    t += n;
    EXPECT_EQ(cache.length(0), t);
  }
}

TEST(MhaCachedCross, EqualsRecomputingKvEachStep) {
  for (std::int64_t Hkv : {6, 3, 1})
    for (bool batch_first : {true, false}) {
      MhaCase c;
      c.E = 24;
      c.Hq = 6;
      c.Hkv = Hkv;
      c.B = 2;
      c.Lq = 4;
      c.Lk = 11;
      c.inputs = Inputs::cross_shared_kv;
      c.layout = batch_first ? SeqLayout::batch_first : SeqLayout::seq_first;
      nn::MultiheadAttention<float> m(c.config());
      randomize_biases(m, 5);
      const MhaInputs in = make_inputs(c, DType::f32, 6);
      const std::vector<std::int64_t> src_lengths = {11, 8};
      const KvCache mem = m.project_kv(in.key, src_lengths);
      EXPECT_TRUE(mem.read_only());
      nn::MhaOptions padded;
      padded.key_lengths = src_lengths;
      for (std::int64_t t = 0; t < c.Lq; ++t) {
        const TensorView q = tokens(in.query, batch_first, t, 1);
        const Seq got = from_module(m.forward_cross_cached(q, mem), c.layout);
        const Seq want = from_module(m.forward(q, in.key, in.key, padded).out, c.layout);
        EXPECT_LE(max_abs_diff(got, want), 2e-5) << c.name() << " step " << t;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, MhaCached,
                         ::testing::Values(CachedCase{4, true, Rope::half, KvLayout::contiguous},
                                           CachedCase{2, false, Rope::interleaved, KvLayout::paged},
                                           CachedCase{1, true, Rope::none, KvLayout::contiguous},
                                           CachedCase{2, false, Rope::none, KvLayout::contiguous}),
                         [](const auto& param_info) {
                           const CachedCase& c = param_info.param;
                           return "Hkv" + std::to_string(c.Hkv) + (c.batch_first ? "_BLE" : "_LBE") +
                                  (c.rope == Rope::none   ? ""
                                   : c.rope == Rope::half ? "_ropeHalf"
                                                          : "_ropeInter") +
                                  "_" + kv_layout_name(c.layout);
                         });

}  // namespace
}  // namespace attn::test
