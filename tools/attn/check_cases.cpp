// Case list and problem construction for `attn check` (see check_cases.hpp).

#include "check_cases.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>

namespace attn_cli {
namespace {

using attn::DType;
using F = Feature;

// {B, Hq, Hkv, Nq, Nk, D, Dv, dtype, feature, bshd}
const std::vector<CheckCase>& fixed_cases() {
  static const std::vector<CheckCase> cases = {
      {1, 1, 1, 1, 1, 8, 8, DType::f32, F::none, false},
      {2, 4, 4, 16, 16, 32, 32, DType::f32, F::none, true},
      {2, 4, 2, 33, 47, 24, 24, DType::f32, F::causal, false},
      {1, 4, 1, 65, 65, 64, 64, DType::f32, F::window, false},
      {3, 2, 2, 17, 23, 16, 16, DType::f32, F::lengths, false},
      {2, 2, 1, 19, 19, 16, 8, DType::f32, F::bias, false},
      {2, 2, 2, 13, 29, 16, 16, DType::f32, F::bool_mask, true},
      {2, 2, 2, 24, 24, 16, 16, DType::f32, F::dropout, false},
      {1, 4, 2, 20, 20, 16, 16, DType::f32, F::alibi, false},
      {1, 2, 2, 16, 16, 16, 16, DType::f32, F::softcap, false},
      {3, 2, 1, 40, 40, 16, 16, DType::f32, F::varlen, false},
      {2, 4, 2, 33, 33, 64, 64, DType::bf16, F::causal, true},
      {1, 2, 2, 65, 70, 32, 32, DType::bf16, F::none, false},
      {2, 2, 2, 20, 20, 16, 16, DType::bf16, F::dropout, false},
      {2, 4, 4, 1, 64, 64, 64, DType::bf16, F::window, false},
      {2, 4, 1, 31, 31, 64, 64, DType::f16, F::causal, false},
      {1, 2, 2, 16, 40, 32, 32, DType::f16, F::lengths, true},
      {2, 2, 2, 17, 17, 16, 16, DType::f16, F::bias, false},
  };
  return cases;
}

template <class T>
const T& pick(std::mt19937_64& rng, const std::vector<T>& from) {
  return from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(rng)];
}

CheckCase random_case(std::mt19937_64& rng) {
  static const std::vector<std::pair<std::int64_t, std::int64_t>> heads = {{1, 1}, {2, 2}, {4, 2},
                                                                           {4, 1}, {3, 3}, {6, 2}};
  static const std::vector<std::int64_t> sizes = {1, 7, 16, 33, 63, 65};
  static const std::vector<std::int64_t> dims = {8, 16, 24, 40, 64};
  static const std::vector<DType> dtypes = {DType::f32, DType::bf16, DType::f16};
  static const std::vector<Feature> features = {F::none,      F::causal,  F::window, F::lengths, F::bias,
                                                F::bool_mask, F::dropout, F::alibi,  F::softcap, F::varlen};
  CheckCase c;
  c.B = pick(rng, std::vector<std::int64_t>{1, 2, 3});
  std::tie(c.Hq, c.Hkv) = pick(rng, heads);
  c.Nq = pick(rng, sizes);
  c.Nk = pick(rng, sizes);
  c.D = pick(rng, dims);
  c.Dv = std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? pick(rng, dims) : c.D;
  c.dtype = pick(rng, dtypes);
  c.feature = pick(rng, features);
  c.bshd = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  return c;
}

// A [B, H, N, D] logical view of a tensor allocated as [B, H, N, D] or [B, N, H, D].
attn::Tensor alloc4(DType dtype, std::int64_t B, std::int64_t H, std::int64_t N, std::int64_t D, bool bshd,
                    attn::TensorView& logical) {
  attn::Tensor t =
      bshd ? attn::Tensor::with_guard(dtype, {B, N, H, D}, 0) : attn::Tensor::with_guard(dtype, {B, H, N, D}, 0);
  logical = bshd ? t.view().permute({0, 2, 1, 3}) : t.view();
  return t;
}

void fill_normal(const attn::Tensor& t, std::mt19937_64& rng, double sigma) {
  std::normal_distribution<double> normal(0.0, sigma);
  for (std::int64_t e = 0; e < t.numel(); ++e) attn::store_f64(t.view(), e, normal(rng));
}

// Splits `total` into `parts` non-negative lengths and returns their prefix sums.
std::vector<std::int64_t> random_cu_seqlens(std::mt19937_64& rng, std::int64_t total, std::int64_t parts) {
  std::vector<std::int64_t> cuts{0, total};
  for (std::int64_t s = 1; s < parts; ++s) cuts.push_back(std::uniform_int_distribution<std::int64_t>(0, total)(rng));
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

}  // namespace

const char* feature_name(Feature f) {
  switch (f) {
    case F::none: return "none";
    case F::causal: return "causal";
    case F::window: return "window";
    case F::lengths: return "lengths";
    case F::bias: return "bias";
    case F::bool_mask: return "bool";
    case F::dropout: return "dropout";
    case F::alibi: return "alibi";
    case F::softcap: return "softcap";
    case F::varlen: return "varlen";
  }
  return "?";
}

std::string CheckCase::name() const {
  std::ostringstream os;
  os << attn::dtype_name(dtype) << " B" << B << " H" << Hq << "/" << Hkv << " N" << Nq << "x" << Nk << " D" << D << "/"
     << Dv << " " << feature_name(feature) << (bshd ? " bshd" : "");
  return os.str();
}

int fixed_case_count() { return static_cast<int>(fixed_cases().size()); }

std::vector<CheckCase> make_cases(int count, std::uint64_t seed) {
  const auto& fixed = fixed_cases();
  std::vector<CheckCase> cases(fixed.begin(), fixed.begin() + std::min<std::size_t>(count, fixed.size()));
  std::mt19937_64 rng(seed);
  while (static_cast<int>(cases.size()) < count) cases.push_back(random_case(rng));
  return cases;
}

std::unique_ptr<CheckProblem> build_problem(const CheckCase& c, std::uint64_t seed) {
  auto p = std::make_unique<CheckProblem>();
  std::mt19937_64 rng(seed);
  // Under varlen the B sequences are packed along N of one tensor batch row.
  const std::int64_t tb = c.feature == F::varlen ? 1 : c.B;
  p->q = alloc4(c.dtype, tb, c.Hq, c.Nq, c.D, c.bshd, p->qv);
  p->k = alloc4(c.dtype, tb, c.Hkv, c.Nk, c.D, c.bshd, p->kv);
  p->v = alloc4(c.dtype, tb, c.Hkv, c.Nk, c.Dv, c.bshd, p->vv);
  for (const attn::Tensor* t : {&p->q, &p->k, &p->v}) fill_normal(*t, rng, 1.0);

  attn::MaskSpec& m = p->params.mask;
  // Causal, window, ALiBi and the lengths cases have Lq != Lk somewhere: the alignment must be stated.
  m.alignment = attn::Alignment::bottom_right;
  switch (c.feature) {
    case F::none: break;
    case F::causal: m.causal = true; break;
    case F::window:
      m.window_left = 5;
      m.window_right = 2;
      break;
    case F::lengths:
      for (std::int64_t b = 0; b < c.B; ++b) {
        m.q_lengths.push_back(std::uniform_int_distribution<std::int64_t>(0, c.Nq)(rng));
        m.k_lengths.push_back(std::uniform_int_distribution<std::int64_t>(0, c.Nk)(rng));
      }
      m.causal = true;
      break;
    case F::bias:
      p->bias = attn::Tensor(c.dtype, {c.B, 1, c.Nq, c.Nk});
      fill_normal(p->bias, rng, 0.5);
      m.bias = p->bias;
      break;
    case F::bool_mask: {
      p->bool_mask = attn::Tensor(DType::boolean, {c.B, 1, c.Nq, c.Nk});
      std::bernoulli_distribution keep(0.7);
      for (std::int64_t e = 0; e < p->bool_mask.numel(); ++e) p->bool_mask.ptr<std::uint8_t>()[e] = keep(rng) ? 1 : 0;
      m.bool_mask = p->bool_mask;
      break;
    }
    case F::dropout:
      p->params.dropout_p = 0.25;
      p->params.dropout_seed = seed ^ 0x5eedu;
      p->params.dropout_offset = 7;
      break;
    case F::alibi:
      for (std::int64_t h = 0; h < c.Hq; ++h)
        m.alibi_slopes.push_back(std::exp2(-8.0 * static_cast<double>(h + 1) / c.Hq));
      m.causal = true;
      break;
    case F::softcap:
      m.softcap = 2.0;
      p->params.scale = 1.0;
      break;
    case F::varlen:
      m.cu_seqlens_q = random_cu_seqlens(rng, c.Nq, c.B);
      m.cu_seqlens_k = random_cu_seqlens(rng, c.Nk, c.B);
      m.causal = true;
      break;
  }
  return p;
}

CheckGrads make_grads(const CheckCase& c, const CheckProblem& p) {
  CheckGrads g;
  const std::int64_t tb = c.feature == F::varlen ? 1 : c.B;
  g.dq = alloc4(DType::f32, tb, c.Hq, c.Nq, c.D, c.bshd, g.views.dq);
  g.dk = alloc4(DType::f32, tb, c.Hkv, c.Nk, c.D, c.bshd, g.views.dk);
  g.dv = alloc4(DType::f32, tb, c.Hkv, c.Nk, c.Dv, c.bshd, g.views.dv);
  if (p.bias.numel() > 0) {
    const attn::TensorView& b = p.bias.view();
    g.dbias = attn::Tensor::with_guard(DType::f32, {b.shape[0], b.shape[1], b.shape[2], b.shape[3]}, 0);
    g.views.dbias = g.dbias.view();
  }
  return g;
}

CheckOutputs make_dout(const CheckCase& c, std::uint64_t seed) {
  CheckOutputs d = make_outputs(c);
  std::mt19937_64 rng(seed);
  fill_normal(d.out, rng, 1.0);
  return d;
}

CheckOutputs make_outputs(const CheckCase& c) {
  CheckOutputs o;
  const std::int64_t tb = c.feature == F::varlen ? 1 : c.B;
  o.out = alloc4(c.dtype, tb, c.Hq, c.Nq, c.Dv, c.bshd, o.outv);
  o.lse = attn::Tensor::with_guard(DType::f32, {tb, c.Hq, c.Nq}, 0);
  return o;
}

}  // namespace attn_cli
