// Linear attention forward: the reference and the cpu path (every ISA, f32/bf16/f16 inputs, BHSD
// and BSHD strides) against the prefix-sum formulas written out in linear_case.hpp; non-causal and
// causal (both alignments, Nq != Nk), GQA/MQA, key padding and k_lengths, chunk boundaries.

#include <gtest/gtest.h>

#include <sstream>

#include "cpu/sdpa_case.hpp"
#include "linear/backends.hpp"
#include "linear/linear_case.hpp"

namespace attn::test {
namespace {

struct FwdCase {
  std::int64_t B, Hq, Hkv, Nq, Nk, D, Dv;
  FeatureMap map;
  bool causal;
  Alignment align;
  bool padding;    // key_padding_mask on some keys + k_lengths on row 0
  std::int64_t m;  // favor features
};

std::string name(const FwdCase& c) {
  std::ostringstream os;
  os << c.B << "x" << c.Hq << "/" << c.Hkv << " Nq=" << c.Nq << " Nk=" << c.Nk << " D=" << c.D << " Dv=" << c.Dv << " "
     << feature_map_name(c.map) << (c.causal ? (c.align == Alignment::top_left ? " causal_tl" : " causal_br") : "")
     << (c.padding ? " padded" : "") << " m=" << c.m;
  return os.str();
}

const FwdCase kCases[] = {
    {1, 1, 1, 1, 1, 1, 1, FeatureMap::elu, false, Alignment::bottom_right, false, 0},
    {1, 1, 1, 1, 1, 1, 1, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
    {2, 4, 2, 7, 7, 5, 3, FeatureMap::elu, true, Alignment::top_left, false, 0},
    {2, 4, 1, 63, 65, 17, 33, FeatureMap::elu, false, Alignment::bottom_right, true, 0},
    {1, 2, 2, 65, 65, 64, 64, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
    {1, 3, 1, 127, 127, 7, 9, FeatureMap::elu, true, Alignment::bottom_right, true, 0},
    {2, 2, 1, 40, 129, 16, 20, FeatureMap::elu, true, Alignment::bottom_right, true, 0},   // off = 89
    {1, 2, 1, 129, 40, 16, 20, FeatureMap::elu, true, Alignment::bottom_right, false, 0},  // off = −89
    {1, 2, 1, 129, 70, 16, 20, FeatureMap::elu, true, Alignment::top_left, false, 0},
    {1, 2, 1, 63, 65, 16, 24, FeatureMap::favor, false, Alignment::bottom_right, true, 37},
    {2, 4, 2, 130, 130, 32, 32, FeatureMap::favor, true, Alignment::bottom_right, true, 50},
    {1, 1, 1, 7, 7, 3, 5, FeatureMap::favor, true, Alignment::top_left, false, 1},
};

struct Inputs {
  Qkv x;
  Projection proj;
  GuardedTensor kpm;
  LinearAttentionParams params;
};

Inputs make_inputs(const FwdCase& c, DType dt, Layout layout, std::uint64_t seed) {
  Inputs in;
  in.x = make_qkv(c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.D, c.Dv, dt, layout, seed);
  // Smaller inputs keep FAVOR+'s exponentials in a sane range.
  if (c.map == FeatureMap::favor) {
    fill_normal(in.x.q.view, seed * 7 + 1, 0.0, 0.5);
    fill_normal(in.x.k.view, seed * 7 + 2, 0.0, 0.5);
  }
  in.params.feature_map = c.map;
  in.params.mask.causal = c.causal;
  in.params.mask.alignment = c.align;
  if (c.map == FeatureMap::favor) {
    in.proj = make_projection(c.m, c.D, seed + 100);
    in.params.projection = in.proj.t.view;
  }
  if (c.padding) {
    in.kpm = make_tensor(DType::boolean, {c.B, c.Nk});
    std::mt19937_64 rng(seed);
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t j = 0; j < c.Nk; ++j) set(in.kpm.view, (rng() % 4 == 0) ? 1.0 : 0.0, b, j);
    in.params.key_padding_mask = in.kpm.view;
    in.params.mask.k_lengths.assign(static_cast<std::size_t>(c.B), c.Nk);
    in.params.mask.k_lengths[0] = c.Nk - c.Nk / 3;
  }
  return in;
}

// Denominators against the oracle's.
double den_err(const TensorView& den, const LinearOracle& o, const Qkv& x) {
  double e = 0.0;
  for (std::int64_t b = 0; b < x.B; ++b)
    for (std::int64_t h = 0; h < x.Hq; ++h)
      for (std::int64_t i = 0; i < x.Nq; ++i) {
        const double ref = o.den[static_cast<std::size_t>((b * x.Hq + h) * x.Nq + i)];
        e = std::max(e, std::abs(at(den, b, h, i) - ref) / (1e-3 + std::abs(ref)));
      }
  return e;
}

TEST(LinearFwd, ReferenceMatchesFormulas) {
  for (const FwdCase& c : kCases) {
    SCOPED_TRACE(name(c));
    Inputs in = make_inputs(c, DType::f64, Layout::bhsd, 3);
    in.params.backend = Backend::reference;
    const LinearOracle o = linear_oracle(in.x, spec_of(in.x, in.params, &in.proj));
    GuardedTensor out = make_tensor4(DType::f64, c.B, c.Hq, c.Nq, c.Dv);
    GuardedTensor den = make_tensor(DType::f32, {c.B, c.Hq, c.Nq});
    linear_attention_forward({out.view, den.view}, in.x.q, in.x.k, in.x.v, in.params);
    EXPECT_LT(max_rel_err(out.view, o, in.x), 1e-12);
    EXPECT_LT(den_err(den.view, o, in.x), 1e-6);  // den is f32
    EXPECT_TRUE(out.guards_intact());
  }
}

TEST(LinearFwd, CpuMatchesFormulasEveryIsaDtypeLayout) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (DType dt : {DType::f32, DType::bf16, DType::f16})
      for (Layout layout : {Layout::bhsd, Layout::bshd})
        for (const FwdCase& c : kCases) {
          SCOPED_TRACE(isa + " " + dtype_name(dt) + " " + layout_name(layout) + " " + name(c));
          Inputs in = make_inputs(c, dt, layout, 5);
          const LinearOracle o = linear_oracle(in.x, spec_of(in.x, in.params, &in.proj));  // on the rounded inputs
          GuardedTensor out = make_tensor4(DType::f32, c.B, c.Hq, c.Nq, c.Dv, layout);
          GuardedTensor den = make_tensor(DType::f32, {c.B, c.Hq, c.Nq});
          linear_attention_forward({out.view, den.view}, in.x.q, in.x.k, in.x.v, in.params);
          EXPECT_LT(max_rel_err(out.view, o, in.x), 2e-5);
          EXPECT_LT(den_err(den.view, o, in.x), 2e-5);
          EXPECT_TRUE(out.guards_intact());
          EXPECT_TRUE(den.guards_intact());
        }
  }
}

// ATTN_ISA / set_isa_override pick the linear kernels too: the AVX-512 ones under every SDPA entry
// of an AVX-512 CPU (amx, avx512bf16, avx512), the AVX2 ones under avx2, else scalar.
TEST(LinearFwd, IsaOverrideSelectsTheLinearKernels) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    const std::string expected = (isa == "amx" || isa == "avx512bf16" || isa == "avx512") ? "avx512"
                                 : isa == "avx2"                                          ? "avx2"
                                                                                          : "scalar";
    EXPECT_EQ(linear::cpu_kernels_name(), expected) << isa;
  }
}

// Both causal forms of the cpu path (recurrent and chunked), every ISA, f32 BHSD and BSHD: odd
// lengths, widths off the vector width, GQA with G not dividing the recurrent block, offsets of
// both signs, key padding.
TEST(LinearFwd, CausalFormsMatchFormulasEveryIsa) {
  const FwdCase cases[] = {
      {1, 1, 1, 1, 1, 24, 40, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
      {1, 2, 2, 7, 7, 40, 24, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
      {1, 1, 1, 63, 63, 72, 72, FeatureMap::elu, true, Alignment::bottom_right, true, 0},
      {2, 2, 2, 65, 65, 64, 64, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
      {1, 4, 2, 127, 127, 24, 40, FeatureMap::elu, true, Alignment::bottom_right, true, 0},
      {1, 3, 1, 65, 65, 16, 72, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
      {1, 5, 1, 33, 33, 8, 8, FeatureMap::elu, true, Alignment::bottom_right, true, 0},
      {1, 1, 1, 1000, 1000, 64, 64, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
      {1, 1, 1, 40, 129, 24, 20, FeatureMap::elu, true, Alignment::bottom_right, true, 0},   // off = 89
      {1, 1, 1, 129, 40, 24, 20, FeatureMap::elu, true, Alignment::bottom_right, false, 0},  // off = −89
      {1, 2, 1, 129, 70, 16, 40, FeatureMap::elu, true, Alignment::top_left, false, 0},
      {1, 2, 2, 65, 65, 16, 24, FeatureMap::favor, true, Alignment::bottom_right, true, 37},
      {1, 4, 2, 70, 70, 24, 40, FeatureMap::favor, true, Alignment::bottom_right, false, 50},
  };
  for (const FwdCase& c : cases)
    for (Layout layout : {Layout::bhsd, Layout::bshd}) {
      Inputs in = make_inputs(c, DType::f32, layout, 23);
      const LinearOracle o = linear_oracle(in.x, spec_of(in.x, in.params, &in.proj));
      for (const std::string& isa : supported_isas())
        for (const char* form : kCausalForms) {
          SCOPED_TRACE(isa + " " + form + " " + layout_name(layout) + " " + name(c));
          IsaScope scope(isa);
          CausalFormScope form_scope(form);
          GuardedTensor out = make_tensor4(DType::f32, c.B, c.Hq, c.Nq, c.Dv, layout);
          GuardedTensor den = make_tensor(DType::f32, {c.B, c.Hq, c.Nq});
          linear_attention_forward({out.view, den.view}, in.x.q, in.x.k, in.x.v, in.params);
          EXPECT_LT(max_rel_err(out.view, o, in.x), 2e-5);
          EXPECT_LT(den_err(den.view, o, in.x), 2e-5);
          EXPECT_TRUE(out.guards_intact());
          EXPECT_TRUE(den.guards_intact());
        }
    }
}

TEST(LinearFwd, LowPrecisionOutputsRound) {
  const FwdCase c{1, 2, 1, 70, 70, 16, 16, FeatureMap::elu, true, Alignment::bottom_right, false, 0};
  for (DType dt : {DType::bf16, DType::f16}) {
    Inputs in = make_inputs(c, dt, Layout::bhsd, 9);
    const LinearOracle o = linear_oracle(in.x, spec_of(in.x, in.params));
    GuardedTensor out = make_tensor4(dt, c.B, c.Hq, c.Nq, c.Dv);
    linear_attention_forward({out.view, {}}, in.x.q, in.x.k, in.x.v, in.params);
    EXPECT_LT(max_rel_err(out.view, o, in.x), dt == DType::bf16 ? 8e-3 : 1e-3) << dtype_name(dt);
  }
}

TEST(LinearFwd, ChunkLengthDoesNotChangeTheResult) {
  const FwdCase c{1, 2, 1, 150, 150, 24, 40, FeatureMap::elu, true, Alignment::bottom_right, true, 0};
  Inputs in = make_inputs(c, DType::f32, Layout::bhsd, 11);
  const LinearOracle o = linear_oracle(in.x, spec_of(in.x, in.params));
  for (std::int64_t chunk : {1, 16, 17, 32, 64, 128, 256}) {
    in.params.chunk = chunk;
    GuardedTensor out = make_tensor4(DType::f32, c.B, c.Hq, c.Nq, c.Dv);
    linear_attention_forward({out.view, {}}, in.x.q, in.x.k, in.x.v, in.params);
    EXPECT_LT(max_rel_err(out.view, o, in.x), 2e-5) << "chunk " << chunk;
  }
}

TEST(LinearFwd, ThreadCountDoesNotChangeTheResult) {
  const FwdCase c{2, 4, 2, 100, 100, 16, 16, FeatureMap::elu, true, Alignment::bottom_right, false, 0};
  Inputs in = make_inputs(c, DType::f32, Layout::bhsd, 13);
  GuardedTensor a = make_tensor4(DType::f32, c.B, c.Hq, c.Nq, c.Dv),
                b = make_tensor4(DType::f32, c.B, c.Hq, c.Nq, c.Dv);
  in.params.num_threads = 1;
  linear_attention_forward({a.view, {}}, in.x.q, in.x.k, in.x.v, in.params);
  in.params.num_threads = 2;
  linear_attention_forward({b.view, {}}, in.x.q, in.x.k, in.x.v, in.params);
  EXPECT_EQ(max_abs_diff(a.view, b.view), 0.0);
}

// Padded keys drop out of the sums: the result equals attention over the kept keys only.
TEST(LinearFwd, KeyPaddingEqualsRemovingTheKeys) {
  const std::int64_t Nk = 50, keep_every = 3;
  for (FeatureMap map : {FeatureMap::elu, FeatureMap::favor}) {
    Qkv x = make_qkv(1, 2, 1, 9, Nk, 8, 6, DType::f32, Layout::bhsd, 17);
    fill_normal(x.k.view, 18, 0.0, 0.5);
    fill_normal(x.q.view, 19, 0.0, 0.5);
    GuardedTensor kpm = make_tensor(DType::boolean, {1, Nk});
    std::int64_t kept = 0;
    for (std::int64_t j = 0; j < Nk; ++j) {
      set(kpm.view, j % keep_every == 0 ? 0.0 : 1.0, 0, j);
      kept += j % keep_every == 0;
    }
    Qkv small = make_qkv(1, 2, 1, 9, kept, 8, 6, DType::f32, Layout::bhsd, 1);
    copy_view_rows(x, small, keep_every);
    Projection proj = make_projection(20, 8, 4);
    LinearAttentionParams params;
    params.feature_map = map;
    if (map == FeatureMap::favor) params.projection = proj.t.view;
    GuardedTensor a = make_tensor4(DType::f32, 1, 2, 9, 6), b = make_tensor4(DType::f32, 1, 2, 9, 6);
    linear_attention_forward({b.view, {}}, small.q, small.k, small.v, params);
    params.key_padding_mask = kpm.view;
    linear_attention_forward({a.view, {}}, x.q, x.k, x.v, params);
    EXPECT_LT(max_abs_diff(a.view, b.view), 1e-5) << feature_map_name(map);
  }
}

}  // namespace
}  // namespace attn::test
