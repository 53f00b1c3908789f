// Linear attention backward: the reference's gradients against fp64 central finite differences of
// its forward (loss = Σ out ∘ R), then the cpu path's (every ISA, f32/bf16 inputs, strides) against
// the reference; padded and unseen keys get zero gradients.

#include <gtest/gtest.h>

#include <sstream>

#include "cpu/sdpa_case.hpp"
#include "linear/linear_case.hpp"

namespace attn::test {
namespace {

struct BwdCase {
  std::int64_t B, Hq, Hkv, Nq, Nk, D, Dv;
  FeatureMap map;
  bool causal;
  Alignment align;
  bool padding;
  std::int64_t m;
};

std::string name(const BwdCase& c) {
  std::ostringstream os;
  os << c.B << "x" << c.Hq << "/" << c.Hkv << " Nq=" << c.Nq << " Nk=" << c.Nk << " D=" << c.D << " Dv=" << c.Dv << " "
     << feature_map_name(c.map) << (c.causal ? (c.align == Alignment::top_left ? " causal_tl" : " causal_br") : "")
     << (c.padding ? " padded" : "");
  return os.str();
}

struct BwdSetup {
  Qkv x;
  Projection proj;
  GuardedTensor kpm, r;
  LinearAttentionParams params;
};

BwdSetup make_setup(const BwdCase& c, DType dt, Layout layout, std::uint64_t seed) {
  BwdSetup s;
  s.x = make_qkv(c.B, c.Hq, c.Hkv, c.Nq, c.Nk, c.D, c.Dv, dt, layout, seed);
  fill_normal(s.x.q.view, seed + 11, 0.0, 0.6);
  fill_normal(s.x.k.view, seed + 12, 0.0, 0.6);
  s.params.feature_map = c.map;
  s.params.mask.causal = c.causal;
  s.params.mask.alignment = c.align;
  if (c.map == FeatureMap::favor) {
    s.proj = make_projection(c.m, c.D, seed + 5);
    s.params.projection = s.proj.t.view;
  }
  if (c.padding) {
    s.kpm = make_tensor(DType::boolean, {c.B, c.Nk});
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t j = 0; j < c.Nk; ++j) set(s.kpm.view, (j * 7 + b) % 5 == 1 ? 1.0 : 0.0, b, j);
    s.params.key_padding_mask = s.kpm.view;
  }
  s.r = make_tensor4(DType::f64, c.B, c.Hq, c.Nq, c.Dv);
  fill_normal(s.r.view, seed + 99);
  return s;
}

double loss(const BwdSetup& s) {
  GuardedTensor out = make_tensor4(DType::f64, s.x.B, s.x.Hq, s.x.Nq, s.x.Dv);
  LinearAttentionParams p = s.params;
  p.backend = Backend::reference;
  linear_attention_forward({out.view, {}}, s.x.q, s.x.k, s.x.v, p);
  double l = 0.0;
  for_each_element(out.view, [&](const auto& i, std::int64_t off) {
    l += load_f64(out.view, off) * at(s.r.view, i[0], i[1], i[2], i[3]);
  });
  return l;
}

struct GradSet {
  GuardedTensor dq, dk, dv;
  LinearAttentionGrads views() const { return {dq.view, dk.view, dv.view}; }
};

GradSet run_backward(const BwdSetup& s, Backend backend, DType gdt = DType::f64) {
  const Qkv& x = s.x;
  LinearAttentionParams p = s.params;
  p.backend = backend;
  GuardedTensor out = make_tensor4(DType::f32, x.B, x.Hq, x.Nq, x.Dv, x.layout);
  GuardedTensor den = make_tensor(DType::f32, {x.B, x.Hq, x.Nq});
  linear_attention_forward({out.view, den.view}, x.q, x.k, x.v, p);
  GradSet g{make_tensor4(gdt, x.B, x.Hq, x.Nq, x.D, x.layout), make_tensor4(gdt, x.B, x.Hkv, x.Nk, x.D, x.layout),
            make_tensor4(gdt, x.B, x.Hkv, x.Nk, x.Dv, x.layout)};
  const GuardedTensor dout = clone(s.r.view, x.layout, x.dtype);
  linear_attention_backward(g.views(), dout.view, x.q, x.k, x.v, out.view, den.view, p);
  EXPECT_TRUE(g.dq.guards_intact() && g.dk.guards_intact() && g.dv.guards_intact());
  return g;
}

// Largest |analytic − central difference| / (1 + |fd|) over every element of q, k, v.
double fd_error(BwdSetup& s, const GradSet& g) {
  const double h = 1e-6;
  double worst = 0.0;
  auto check = [&](const TensorView& t, const TensorView& grad) {
    for_each_element(t, [&](const auto& i, std::int64_t off) {
      const double x0 = load_f64(t, off);
      store_f64(t, off, x0 + h);
      const double lp = loss(s);
      store_f64(t, off, x0 - h);
      const double lm = loss(s);
      store_f64(t, off, x0);
      const double fd = (lp - lm) / (2 * h);
      const double an = at(grad, i[0], i[1], i[2], i[3]);
      worst = std::max(worst, std::abs(an - fd) / (1.0 + std::abs(fd)));
    });
  };
  check(s.x.q.view, g.dq.view);
  check(s.x.k.view, g.dk.view);
  check(s.x.v.view, g.dv.view);
  return worst;
}

const BwdCase kFdCases[] = {
    {1, 1, 1, 1, 1, 1, 1, FeatureMap::elu, false, Alignment::bottom_right, false, 0},
    {1, 2, 1, 5, 7, 3, 4, FeatureMap::elu, false, Alignment::bottom_right, true, 0},
    {2, 2, 2, 6, 6, 4, 3, FeatureMap::elu, true, Alignment::bottom_right, true, 0},
    {1, 2, 1, 4, 7, 3, 2, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
    {1, 2, 1, 7, 4, 3, 2, FeatureMap::elu, true, Alignment::top_left, false, 0},
    {1, 2, 1, 5, 6, 4, 3, FeatureMap::favor, false, Alignment::bottom_right, true, 6},
    {1, 2, 2, 6, 6, 3, 2, FeatureMap::favor, true, Alignment::bottom_right, false, 5},
};

TEST(LinearBwd, ReferenceMatchesFiniteDifferences) {
  for (const BwdCase& c : kFdCases) {
    SCOPED_TRACE(name(c));
    BwdSetup s = make_setup(c, DType::f64, Layout::bhsd, 3);
    const GradSet g = run_backward(s, Backend::reference);
    EXPECT_LT(fd_error(s, g), 1e-6);
  }
}

const BwdCase kCpuCases[] = {
    {1, 1, 1, 1, 1, 1, 1, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
    {2, 4, 2, 7, 9, 5, 3, FeatureMap::elu, false, Alignment::bottom_right, true, 0},
    {1, 2, 1, 65, 65, 17, 33, FeatureMap::elu, true, Alignment::bottom_right, true, 0},
    {1, 3, 1, 130, 130, 64, 64, FeatureMap::elu, true, Alignment::bottom_right, false, 0},
    {1, 2, 1, 40, 129, 16, 20, FeatureMap::elu, true, Alignment::bottom_right, true, 0},   // off = 89
    {1, 2, 1, 129, 40, 16, 20, FeatureMap::elu, true, Alignment::bottom_right, false, 0},  // off = −89
    {1, 2, 1, 129, 70, 16, 20, FeatureMap::elu, true, Alignment::top_left, true, 0},       // unseen keys
    {1, 2, 1, 63, 70, 16, 24, FeatureMap::favor, false, Alignment::bottom_right, true, 37},
    {2, 2, 2, 100, 100, 16, 16, FeatureMap::favor, true, Alignment::bottom_right, true, 40},
};

// Largest |a − ref| / (1 + max|ref|).
double rel(const TensorView& a, const TensorView& ref) { return max_abs_diff(a, ref) / (1.0 + max_abs(ref)); }

TEST(LinearBwd, CpuMatchesReferenceEveryIsaDtypeLayout) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (DType dt : {DType::f32, DType::bf16})
      for (Layout layout : {Layout::bhsd, Layout::bshd})
        for (const BwdCase& c : kCpuCases) {
          SCOPED_TRACE(isa + " " + dtype_name(dt) + " " + layout_name(layout) + " " + name(c));
          BwdSetup s = make_setup(c, dt, layout, 7);
          const GradSet ref = run_backward(s, Backend::reference);
          const GradSet got = run_backward(s, Backend::cpu, dt == DType::f32 ? DType::f32 : DType::f64);
          EXPECT_LT(rel(got.dq.view, ref.dq.view), 3e-5);
          EXPECT_LT(rel(got.dk.view, ref.dk.view), 3e-5);
          EXPECT_LT(rel(got.dv.view, ref.dv.view), 3e-5);
        }
  }
}

TEST(LinearBwd, PaddedAndUnseenKeysGetZeroGradients) {
  const BwdCase c{1, 2, 1, 10, 30, 8, 8, FeatureMap::elu, true, Alignment::top_left, true, 0};  // keys 10.. unseen
  BwdSetup s = make_setup(c, DType::f32, Layout::bhsd, 9);
  for (Backend backend : {Backend::reference, Backend::cpu}) {
    const GradSet g = run_backward(s, backend);
    for (std::int64_t j = 0; j < c.Nk; ++j) {
      if (j < 10 && at(s.kpm.view, 0, j) == 0.0) continue;
      for (std::int64_t d = 0; d < 8; ++d) {
        EXPECT_EQ(at(g.dk.view, 0, 0, j, d), 0.0) << backend_name(backend) << " key " << j;
        EXPECT_EQ(at(g.dv.view, 0, 0, j, d), 0.0) << backend_name(backend) << " key " << j;
      }
    }
  }
}

}  // namespace
}  // namespace attn::test
