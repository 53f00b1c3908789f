// The cpu forward against the fp64 reference on a seeded covering sample (every ISA the machine
// supports, f32/bf16/f16, every mask kind, GQA/MQA, odd sizes, BSHD views, NaN guard memory), the
// tolerance rule of docs/architecture.md §9, bitwise determinism across thread counts, probs and lse.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "attn/error.hpp"

#include "common/test_util.hpp"
#include "cpu/isa.hpp"
#include "cpu/naive_lowp.hpp"
#include "cpu/sdpa_case.hpp"

namespace attn::test {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kSampleDivisor = 4;  // sanitizer builds run a quarter of the sample (same seeds)
#else
constexpr int kSampleDivisor = 1;
#endif

double floor_for(DType dt) { return dt == DType::f32 ? 2e-5 : dt == DType::f16 ? 1e-3 : 4e-3; }

/// Runs one set-up on the forced cpu backend and checks out and lse against the fp64 reference.
void check_setup(const CaseSetup& s, DType dtype, DType out_dtype) {
  const Qkv& x = s.x;
  // Truth: the reference on the same (dtype-rounded) values, in f64.
  SdpaParams ref_params = s.params;
  ref_params.backend = Backend::reference;
  Outputs truth = forward(x, ref_params, false, DType::f64);
  // Naive same-precision run, for the tolerance.
  GuardedTensor naive = make_tensor4(DType::f64, x.B, x.Hq, x.Nq, x.Dv, x.layout);
  naive_lowp_forward(naive.view, x.q, x.k, x.v, s.params);
  const double naive_err = max_abs_diff(naive.view, truth.out.view);
  SdpaParams cpu_params = s.params;
  cpu_params.backend = Backend::cpu;
  Outputs fast = make_outputs(x, false, out_dtype);
  sdpa_forward(fast.views(), x.q, x.k, x.v, cpu_params);
  const double err = max_abs_diff(fast.out.view, truth.out.view);
  const double tol = 2.0 * naive_err + floor_for(out_dtype == DType::f32 ? DType::f32 : dtype);
  EXPECT_LE(err, tol) << "max abs error " << err << " (naive " << naive_err << "), NMSE " << nmse(fast.out.view, truth.out.view);
  // lse: same −inf rows, close elsewhere.
  double lse_err = 0.0;
  for_each_element(truth.lse.view, [&](const auto& idx, std::int64_t off) {
    const double t = load_f64(truth.lse.view, off), f = at(fast.lse.view, idx[0], idx[1], idx[2]);
    if (std::isinf(t) || std::isinf(f)) lse_err = std::max(lse_err, t == f ? 0.0 : kInf);
    else lse_err = std::max(lse_err, std::abs(t - f) / (1.0 + std::abs(t)));
  });
  EXPECT_LE(lse_err, 1e-4) << "lse relative error";
  EXPECT_TRUE(fast.out.guards_intact() && fast.lse.guards_intact()) << "a write landed outside out/lse";
}

/// Runs one case of the covering sample (check_setup).
void check_case(const SdpaCase& c, DType out_dtype) {
  SCOPED_TRACE(c.name());
  check_setup(make_case(c), c.dtype, out_dtype);
}

class CpuFwdSample : public ::testing::TestWithParam<IsaDtype> {};

TEST_P(CpuFwdSample, MatchesReference) {
  const auto& [isa, dtype] = GetParam();
  IsaScope scope(isa);
  const int count = (dtype == DType::f32 ? 220 : 120) / kSampleDivisor;
  int n = 0;
  for (const SdpaCase& c : covering_sample(dtype, count, 20261124 + static_cast<int>(dtype), 6e7)) {
    check_case(c, n++ % 3 == 0 ? DType::f32 : dtype);
    if (::testing::Test::HasFailure()) break;  // one printed failure is enough to debug
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, CpuFwdSample, ::testing::ValuesIn(isa_dtype_params(/*forward=*/true)), isa_dtype_name);

TEST(CpuFwd, ForcedBackendRefusesF64WithReason) {
  Qkv x = make_qkv(1, 2, 2, 5, 6, 8, 8, DType::f64, Layout::bhsd, 3);
  Outputs o = make_outputs(x);
  SdpaParams params;
  params.backend = Backend::cpu;
  try {
    sdpa_forward(o.views(), x.q, x.k, x.v, params);
    FAIL() << "expected attn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f64"), std::string::npos) << e.what();
  }
  params.backend = Backend::automatic;  // auto falls back to the reference
  EXPECT_NO_THROW(sdpa_forward(o.views(), x.q, x.k, x.v, params));
  const auto verdicts = explain(o.views(), x.q, x.k, x.v, params);
  bool cpu_refused = false;
  for (const auto& v : verdicts) cpu_refused |= v.backend == Backend::cpu && !v.can_run;
  EXPECT_TRUE(cpu_refused) << to_string(verdicts);
}

TEST(CpuFwd, ExplainNamesInnerStride) {
  Qkv x = make_qkv(1, 2, 2, 5, 6, 8, 8, DType::f32, Layout::bhsd, 4);
  TensorView k_strided = x.k.view;
  k_strided.shape[3] = 4;
  k_strided.strides[3] = 2;  // every other element
  TensorView q_small = x.q.view;
  q_small.shape[3] = 4;
  Outputs o = make_outputs(x);
  const auto verdicts = explain(o.views(), q_small, k_strided, x.v, SdpaParams{});
  const std::string text = to_string(verdicts);
  EXPECT_NE(text.find("inner stride of k is 2"), std::string::npos) << text;
}

/// A float bias of every broadcast shape (stride 0 over B and H; [N, N], [1, H, N, N], a column
/// stride ≠ 1, an f64 bias on f32 inputs, −inf entries and a fully hidden row), alone and with
/// ALiBi, a bool mask and causal, on every ISA: the vector form of the additive terms
/// (FwdKernel::additive_pass) against the reference, odd Nq ≠ Nk, D off the vector width, GQA
/// groups whose rows straddle vectors (G = 3).
TEST(CpuFwd, BiasBroadcastsMatchReference) {
  struct Shape {
    std::int64_t B, Hq, Hkv, Nq, Nk, D;
    std::vector<std::int64_t> bias;  // with -1 for "as the problem": B, Hq, Nq, Nk in place
    bool transposed = false;         // the bias read through a column stride Nq (a transposed view)
    DType bias_dtype = DType::f32;   // f32 means "q's dtype"
    bool extras = false;             // ALiBi + bool mask + causal on top
  };
  const std::vector<Shape> shapes{
      {1, 2, 2, 7, 63, 24, {-3, -4}},
      {2, 6, 2, 65, 127, 40, {1, -2, -3, -4}},
      {2, 3, 1, 63, 65, 24, {-1, 1, -3, -4}, false, DType::f32, true},
      {2, 4, 4, 127, 7, 24, {-1, -2, -3, -4}},
      {3, 2, 1, 1, 65, 16, {-1, 1, 1, -4}},
      {1, 4, 2, 65, 63, 40, {-4}, false, DType::f32, true},
      {2, 2, 2, 63, 127, 24, {-3, -4}, true},
      {1, 6, 3, 127, 65, 24, {1, -2, -3, -4}, false, DType::f64, true},
  };
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (DType dt : {DType::f32, DType::bf16}) {
      if (isa == "amx_emu" && dt != DType::bf16) continue;  // the scalar kernels, but for bf16
      for (std::size_t si = 0; si < shapes.size(); ++si) {
        const Shape& sh = shapes[si];
        SCOPED_TRACE(isa + " " + dtype_name(dt) + " shape #" + std::to_string(si));
        CaseSetup s;
        s.x = make_qkv(sh.B, sh.Hq, sh.Hkv, sh.Nq, sh.Nk, sh.D, sh.D + 8, dt, si % 2 ? Layout::bshd : Layout::bhsd, 30 + si);
        const std::int64_t full[4] = {sh.B, sh.Hq, sh.Nq, sh.Nk};
        std::vector<std::int64_t> shape;
        for (std::size_t a = 0; a < sh.bias.size(); ++a) shape.push_back(sh.bias[a] < 0 ? full[-sh.bias[a] - 1] : sh.bias[a]);
        const DType bdt = sh.bias_dtype == DType::f32 ? dt : sh.bias_dtype;
        GuardedTensor bias;
        if (sh.transposed) {  // [Nq, Nk] read from an [Nk, Nq] tensor: column stride Nq
          bias = make_tensor(bdt, {shape[1], shape[0]});
          bias.view.shape = {shape[0], shape[1]};
          bias.view.strides = {1, shape[0]};
        } else {
          bias = make_row_major(bdt, shape.data(), static_cast<int>(shape.size()));
        }
        fill_normal(bias.view, 40 + si, 0.0, 2.0);
        std::mt19937_64 rng(50 + si);
        std::bernoulli_distribution hide(0.1);
        for_each_element(bias.view, [&](const auto& idx, std::int64_t off) {
          const bool last_row = bias.view.rank >= 2 && idx[bias.view.rank - 2] == bias.view.shape[bias.view.rank - 2] - 1;
          if (hide(rng) || (si % 3 == 0 && last_row)) store_f64(bias.view, off, -kInf);  // the last query row: all hidden
        });
        MaskSpec& m = s.params.mask;
        m.bias = bias.view;
        m.alignment = si % 2 ? Alignment::top_left : Alignment::bottom_right;
        GuardedTensor keep;
        if (sh.extras) {
          for (std::int64_t h = 0; h < sh.Hq; ++h) m.alibi_slopes.push_back(0.05 * static_cast<double>(h + 1));
          keep = make_tensor(DType::boolean, {sh.B, 1, sh.Nq, sh.Nk});
          std::bernoulli_distribution k(0.8);
          for_each_element(keep.view, [&](const auto&, std::int64_t off) { store_f64(keep.view, off, k(rng)); });
          m.bool_mask = keep.view;
          m.causal = true;
        }
        check_setup(s, dt, si % 2 ? DType::f32 : dt);
      }
    }
  }
}

/// Same bits for every thread count and on repeats, on shapes with many tasks per thread.
TEST(CpuFwd, BitwiseDeterministicAcrossThreadCounts) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (DType dt : {DType::f32, DType::bf16}) {
      for (bool causal : {false, true}) {
        Qkv x = make_qkv(2, 8, 2, 300, 333, 64, 48, dt, Layout::bshd, 77);
        SdpaParams params;
        params.backend = Backend::cpu;
        params.mask.causal = causal;
        params.mask.alignment = Alignment::bottom_right;  // Nq != Nk
        params.dropout_p = causal ? 0.2 : 0.0;
        params.dropout_seed = 99;
        GuardedTensor bias = make_tensor(dt, {300, 333});  // the additive pass (bias + ALiBi) when not causal
        fill_normal(bias.view, 5);
        if (!causal) {
          params.mask.bias = bias.view;
          params.mask.alibi_slopes.assign(8, 0.125);
        }
        std::vector<std::vector<char>> results;
        for (int threads : {1, 2, 3, 7, 2}) {
          params.num_threads = threads;
          Outputs o = make_outputs(x, false, DType::f32);
          sdpa_forward(o.views(), x.q, x.k, x.v, params);
          const auto* p = static_cast<const char*>(o.out.mem.storage());
          std::vector<char> bytes(p, p + o.out.mem.storage_elems() * 4);
          const auto* l = static_cast<const char*>(o.lse.mem.storage());
          bytes.insert(bytes.end(), l, l + o.lse.mem.storage_elems() * 4);
          results.push_back(std::move(bytes));
        }
        for (std::size_t r = 1; r < results.size(); ++r)
          EXPECT_TRUE(results[r] == results[0]) << isa << " " << dtype_name(dt) << " causal=" << causal << " run " << r;
      }
    }
  }
}

/// Scores that climb across the key tiles (a trend with small steps and jumps past the tile path's
/// lazy-max slack, docs/amx.md) and a small noise: every ISA against the reference, causal and not,
/// so that kept and moved maxima, rescales and P well above 1 all occur.
TEST(CpuFwd, ClimbingScoresMatchReference) {
  const std::int64_t Nq = 70, Nk = 1000, D = 64;
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (DType dt : {DType::f32, DType::bf16}) {
      Qkv x = make_qkv(1, 2, 1, Nq, Nk, D, D, dt, Layout::bhsd, 21);
      std::mt19937_64 rng(3);
      std::normal_distribution<double> noise(0.0, 0.05);
      for (std::int64_t h = 0; h < 2; ++h)
        for (std::int64_t i = 0; i < Nq; ++i)
          for (std::int64_t d = 0; d < D; ++d) set(x.q.view, 1.0 + 0.2 * noise(rng), 0, h, i, d);
      for (std::int64_t j = 0; j < Nk; ++j) {
        // scaled score ≈ 8·k (q ≈ 1, scale = 1/8): a climb of 0.02 per key, a jump of 12 every 300 keys
        const double t = 0.02 * static_cast<double>(j) + 12.0 * static_cast<double>(j / 300) + 2.0 * std::sin(j / 17.0);
        for (std::int64_t d = 0; d < D; ++d) set(x.k.view, 8.0 * t / static_cast<double>(D) + noise(rng), 0, 0, j, d);
      }
      for (bool causal : {false, true}) {
        SdpaParams params;
        params.mask.causal = causal;
        params.mask.alignment = Alignment::bottom_right;  // Nq != Nk: a causal call states it
        SdpaParams ref = params, fast = params;
        ref.backend = Backend::reference;
        fast.backend = Backend::cpu;
        Outputs a = forward(x, ref, false, DType::f64), b = forward(x, fast, false, DType::f32);
        EXPECT_LE(max_abs_diff(b.out.view, a.out.view), dt == DType::f32 ? 2e-5 : 2e-2)
            << isa << " " << dtype_name(dt) << " causal=" << causal;
        double lse_err = 0.0;
        for (std::int64_t h = 0; h < 2; ++h)
          for (std::int64_t i = 0; i < Nq; ++i) {
            const double t = at(a.lse.view, 0, h, i), f = at(b.lse.view, 0, h, i);
            lse_err = std::max(lse_err, std::abs(t - f) / (1.0 + std::abs(t)));
          }
        EXPECT_LE(lse_err, 1e-4) << isa << " " << dtype_name(dt) << " causal=" << causal;
      }
    }
  }
}

/// probs (pre and post dropout) against the reference's; bf16 inputs too (the pair and tile
/// paths recompute S in their own products; probs are fp32, P is not rounded there).
TEST(CpuFwd, ProbsMatchReference) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (DType dt : {DType::f32, DType::bf16}) {
      for (ProbsKind kind : {ProbsKind::pre_dropout, ProbsKind::post_dropout}) {
        for (MaskKind mk : {MaskKind::causal_padding_window, MaskKind::dropout, MaskKind::varlen, MaskKind::bias}) {
          SdpaCase c{3, 4, 2, 37, 70, 24, 20, dt, mk, Layout::bshd, 5};
          CaseSetup s = make_case(c);
          s.params.probs_kind = kind;
          SdpaParams ref = s.params, fast = s.params;
          ref.backend = Backend::reference;
          fast.backend = Backend::cpu;
          Outputs a = forward(s.x, ref, true), b = forward(s.x, fast, true);
          EXPECT_LE(max_abs_diff(b.probs.view, a.probs.view), dt == DType::f32 ? 2e-6 : 1e-5)
              << isa << " " << dtype_name(dt) << " " << mask_name(mk);
          EXPECT_TRUE(b.probs.guards_intact());
        }
      }
    }
  }
}

}  // namespace
}  // namespace attn::test
