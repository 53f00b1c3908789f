// The cpu backward against the fp64 reference backward on a seeded covering sample (every ISA the
// machine supports, f32/bf16/f16, every mask kind, GQA/MQA, odd sizes, BSHD views, NaN guard
// memory and NaN padding), with the tolerance rule of docs/architecture.md §9 (≤ 3× the error of a naive
// same-precision backward + a floor); bitwise determinism across thread counts and repeats; the
// named refusal for dbias.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attn/error.hpp"

#include "common/test_util.hpp"
#include "cpu/isa.hpp"
#include "cpu/naive_lowp_bwd.hpp"
#include "cpu/sdpa_case.hpp"

namespace attn::test {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kSampleDivisor = 4;  // sanitizer builds run a quarter of the sample (same seeds)
#else
constexpr int kSampleDivisor = 1;
#endif

// Floor of the tolerance, relative to the largest gradient of the reference.
double floor_for(DType dt) { return dt == DType::f32 ? 2e-5 : dt == DType::f16 ? 2e-3 : 8e-3; }

/// Gradients in guard memory shaped like q, k, v (and the bias, when given), in `dtype`.
Grads make_grads_as(const Qkv& x, DType dtype, const TensorView& bias = {}) {
  Grads g;
  g.dq = make_tensor4(dtype, x.B, x.Hq, x.Nq, x.D, x.layout);
  g.dk = make_tensor4(dtype, x.B, x.Hkv, x.Nk, x.D, x.layout);
  g.dv = make_tensor4(dtype, x.B, x.Hkv, x.Nk, x.Dv, x.layout);
  if (bias.defined()) {
    g.dbias = clone(bias, Layout::bhsd, dtype);
    fill_value(g.dbias.view, kNaN);  // every element must be written
  }
  return g;
}

/// The forward's out (in q's dtype) and lse from the reference, and a random dout (NaN on padded rows).
struct BwdInputs {
  Outputs fwd;
  GuardedTensor dout;
};

BwdInputs make_bwd_inputs(const CaseSetup& s, std::uint64_t seed, Backend fwd_backend = Backend::reference) {
  BwdInputs in;
  SdpaParams ref = s.params;
  ref.backend = fwd_backend;
  in.fwd = forward(s.x, ref, false, s.x.dtype);
  in.dout = make_tensor4(s.x.dtype, s.x.B, s.x.Hq, s.x.Nq, s.x.Dv, s.x.layout);
  fill_normal(in.dout.view, seed);
  if (!s.params.mask.q_lengths.empty()) nan_beyond_lengths(in.dout.view, s.params.mask.q_lengths);
  return in;
}

void run_backward(const Grads& g, const BwdInputs& in, const Qkv& x, SdpaParams params, Backend backend,
                  const TensorView& dlse = {}) {
  params.backend = backend;
  sdpa_backward(g.views(), in.dout.view, x.q, x.k, x.v, in.fwd.out.view, in.fwd.lse.view, params, dlse);
}

/// Runs one case on the forced cpu backend and checks dq, dk, dv against the fp64 reference.
void check_case(const SdpaCase& c, DType grad_dtype) {
  SCOPED_TRACE(c.name());
  const CaseSetup s = make_case(c);
  const Qkv& x = s.x;
  const BwdInputs in = make_bwd_inputs(s, c.seed + 555);
  const TensorView& bias = s.params.mask.bias;  // when the case has one, dbias is asked for too
  const Grads truth = make_grads(x, bias);      // f64
  run_backward(truth, in, x, s.params, Backend::reference);
  const Grads naive = make_grads(x);
  naive_lowp_backward(naive.dq.view, naive.dk.view, naive.dv.view, in.dout.view, x.q, x.k, x.v, in.fwd.out.view,
                      s.params);
  const Grads fast = make_grads_as(x, grad_dtype, bias);
  run_backward(fast, in, x, s.params, Backend::cpu);
  if (bias.defined()) {
    // dbias sums dS over its broadcast axes: up to B·Hq·Nq·Nk terms. No naive dbias exists, so the
    // bound is the floor alone, grown with the number of summed terms.
    const double terms = static_cast<double>(truth.dq.view.numel() / c.D * c.Nk) / static_cast<double>(bias.numel());
    const double floor = floor_for(grad_dtype == DType::f32 ? DType::f32 : c.dtype) *
                         (1.0 + max_abs(truth.dbias.view)) * std::sqrt(1.0 + terms);
    EXPECT_LE(max_abs_diff(fast.dbias.view, truth.dbias.view), 3.0 * floor)
        << "dbias, largest " << max_abs(truth.dbias.view) << ", NMSE " << nmse(fast.dbias.view, truth.dbias.view);
    EXPECT_TRUE(fast.dbias.guards_intact()) << "a write landed outside dbias";
  }
  const char* names[] = {"dq", "dk", "dv"};
  const GuardedTensor* t[] = {&truth.dq, &truth.dk, &truth.dv};
  const GuardedTensor* n[] = {&naive.dq, &naive.dk, &naive.dv};
  const GuardedTensor* f[] = {&fast.dq, &fast.dk, &fast.dv};
  for (int a = 0; a < 3; ++a) {
    const double naive_err = max_abs_diff(n[a]->view, t[a]->view);
    const double err = max_abs_diff(f[a]->view, t[a]->view);
    // The floor grows like the random walk of rounding errors over the summed rows (Nk for dq,
    // G·Nq for dk and dv), where a naive run can be exact by luck (e.g. Nk = 1: dS = 0).
    const double terms = a == 0 ? static_cast<double>(c.Nk) : static_cast<double>(c.Nq * (c.Hq / c.Hkv));
    const double floor = floor_for(grad_dtype == DType::f32 ? DType::f32 : c.dtype) * (1.0 + max_abs(t[a]->view)) *
                         std::sqrt(1.0 + terms / 64.0);
    const double tol = 3.0 * naive_err + floor;
    EXPECT_LE(err, tol) << names[a] << ": max abs error " << err << " (naive " << naive_err << ", largest "
                        << max_abs(t[a]->view) << "), NMSE " << nmse(f[a]->view, t[a]->view);
    EXPECT_TRUE(f[a]->guards_intact()) << "a write landed outside " << names[a];
  }
}

class CpuBwdSample : public ::testing::TestWithParam<IsaDtype> {};

TEST_P(CpuBwdSample, MatchesReference) {
  const auto& [isa, dtype] = GetParam();
  IsaScope scope(isa);
  const int count = (dtype == DType::f32 ? 40 : 24) / kSampleDivisor;
  int n = 0;
  for (const SdpaCase& c : covering_sample(dtype, count, 20261125 + static_cast<int>(dtype), 1e7)) {
    check_case(c, n++ % 3 == 0 ? DType::f32 : dtype);
    if (::testing::Test::HasFailure()) break;  // one printed failure is enough to debug
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, CpuBwdSample, ::testing::ValuesIn(isa_dtype_params(/*forward=*/false)), isa_dtype_name);

/// A gradient of lse (dlse) on top of dout: the cpu backward against the reference's, on every
/// compiled ISA, over a covering sample (all mask kinds) with a random dlse in f32.
TEST(CpuBwd, DlseMatchesReference) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (const SdpaCase& c : covering_sample(DType::f32, 12 / kSampleDivisor, 20261126, 1e7)) {
      SCOPED_TRACE(isa + " " + c.name());
      const CaseSetup s = make_case(c);
      const BwdInputs in = make_bwd_inputs(s, c.seed + 9);
      GuardedTensor dlse = make_tensor(DType::f32, {s.x.B, s.x.Hq, s.x.Nq});
      fill_normal(dlse.view, c.seed + 10);
      const Grads truth = make_grads(s.x), fast = make_grads_as(s.x, DType::f32);
      run_backward(truth, in, s.x, s.params, Backend::reference, dlse.view);
      run_backward(fast, in, s.x, s.params, Backend::cpu, dlse.view);
      const GuardedTensor* t[] = {&truth.dq, &truth.dk, &truth.dv};
      const GuardedTensor* f[] = {&fast.dq, &fast.dk, &fast.dv};
      for (int a = 0; a < 3; ++a) {
        const double terms = a == 0 ? static_cast<double>(c.Nk) : static_cast<double>(c.Nq * (c.Hq / c.Hkv));
        const double tol = 3.0 * floor_for(DType::f32) * (1.0 + max_abs(t[a]->view)) * std::sqrt(1.0 + terms / 64.0);
        EXPECT_LE(max_abs_diff(f[a]->view, t[a]->view), tol) << "gradient " << a;
        EXPECT_TRUE(f[a]->guards_intact());
      }
    }
  }
}

/// Same bits for every thread count and on repeats; B·Hkv = 1 splits the KV blocks into several
/// dQ chunks, B·Hkv = 4 does not.
TEST(CpuBwd, BitwiseDeterministicAcrossThreadCounts) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (DType dt : {DType::f32, DType::bf16}) {
      for (bool causal : {false, true}) {
        for (std::int64_t B : {1, 2}) {
          const std::int64_t Hkv = B == 1 ? 1 : 2;
          CaseSetup s;
          s.x = make_qkv(B, 4, Hkv, 300, 333, 64, 48, dt, Layout::bshd, 77);
          SdpaParams& params = s.params;
          params.mask.causal = causal;
          params.mask.alignment = Alignment::bottom_right;  // Nq != Nk
          params.dropout_p = causal ? 0.2 : 0.0;
          params.dropout_seed = 99;
          const BwdInputs in = make_bwd_inputs(s, 5, Backend::cpu);
          const Qkv& x = s.x;
          std::vector<std::vector<char>> results;
          for (int threads : {1, 2, 3, 7, 2}) {
            params.num_threads = threads;
            Grads g = make_grads_as(x, DType::f32);
            run_backward(g, in, x, params, Backend::cpu);
            std::vector<char> bytes;
            for (const GuardedTensor* t : {&g.dq, &g.dk, &g.dv}) {
              const auto* p = static_cast<const char*>(t->mem.storage());
              bytes.insert(bytes.end(), p, p + t->mem.storage_elems() * 4);
            }
            results.push_back(std::move(bytes));
          }
          for (std::size_t r = 1; r < results.size(); ++r)
            EXPECT_TRUE(results[r] == results[0])
                << isa << " " << dtype_name(dt) << " causal=" << causal << " B=" << B << " run " << r;
        }
      }
    }
  }
}

/// dbias on the cpu backend for each broadcast shape of the bias, with softcap, dropout, GQA and a
/// score_mod (whose derivative enters dbias, while softcap's does not); against the reference,
/// and bitwise the same for threads {1, 2, 3}.
TEST(CpuBwd, DbiasMatchesReferenceForEveryBroadcastShape) {
  const std::int64_t B = 2, Hq = 4, Hkv = 2, Nq = 70, Nk = 133;
  const std::vector<std::vector<std::int64_t>> shapes{
      {B, Hq, Nq, Nk}, {1, 1, Nq, Nk}, {B, 1, 1, Nk}, {Hq, Nq, Nk}, {1, Nk}};
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (std::size_t si = 0; si < shapes.size(); ++si) {
      const auto& shape = shapes[si];
      SCOPED_TRACE(isa + " bias shape #" + std::to_string(si));
      CaseSetup s;
      s.x = make_qkv(B, Hq, Hkv, Nq, Nk, 40, 24, DType::f32, si % 2 ? Layout::bshd : Layout::bhsd, 40 + si);
      GuardedTensor bias = make_row_major(DType::f32, shape.data(), static_cast<int>(shape.size()));
      fill_normal(bias.view, 50 + si);
      SdpaParams& params = s.params;
      params.mask.bias = bias.view;
      params.mask.causal = si % 2 == 0;
      params.mask.alignment = Alignment::bottom_right;
      params.mask.softcap = si == 1 ? 5.0 : 0.0;
      params.dropout_p = si == 2 ? 0.2 : 0.0;
      params.dropout_seed = 3;
      if (si == 3) {
        params.mask.score_mod.value = [](double sc, std::int64_t, std::int64_t h, std::int64_t, std::int64_t) {
          return sc * (1.0 + 0.25 * static_cast<double>(h));
        };
        params.mask.score_mod.grad = [](double, std::int64_t, std::int64_t h, std::int64_t, std::int64_t) {
          return 1.0 + 0.25 * static_cast<double>(h);
        };
      }
      const BwdInputs in = make_bwd_inputs(s, 60 + si);
      const Grads truth = make_grads(s.x, bias.view);
      run_backward(truth, in, s.x, params, Backend::reference);
      std::vector<float> first;
      for (int threads : {1, 2, 3}) {
        params.num_threads = threads;
        const Grads fast = make_grads_as(s.x, DType::f32, bias.view);
        run_backward(fast, in, s.x, params, Backend::cpu);
        const double terms = static_cast<double>(B * Hq * Nq * Nk) / static_cast<double>(bias.view.numel());
        const double tol = 3.0 * floor_for(DType::f32) * (1.0 + max_abs(truth.dbias.view)) * std::sqrt(1.0 + terms);
        EXPECT_LE(max_abs_diff(fast.dbias.view, truth.dbias.view), tol) << "threads " << threads;
        EXPECT_GT(max_abs(truth.dbias.view), 1e-3);
        EXPECT_LE(max_abs_diff(fast.dq.view, truth.dq.view), 1e-4 * (1.0 + max_abs(truth.dq.view)));
        EXPECT_TRUE(fast.dbias.guards_intact());
        const auto* p = static_cast<const float*>(fast.dbias.mem.storage());
        std::vector<float> bits(p, p + fast.dbias.mem.storage_elems());
        if (first.empty())
          first = bits;
        else
          for (std::size_t e = 0; e < bits.size(); ++e)
            if (std::memcmp(&first[e], &bits[e], sizeof(float)) != 0) {
              ADD_FAILURE() << "threads " << threads << ": dbias element " << e << " is " << bits[e] << ", " << first[e]
                            << " with one thread";
              break;
            }
      }
    }
  }
}

/// With dbias asked for, the automatic choice is still the cpu backend.
TEST(CpuBwd, AutoPicksCpuWithDbias) {
  SdpaCase c{2, 2, 1, 9, 11, 8, 8, DType::f32, MaskKind::bias, Layout::bhsd, 3};
  const CaseSetup s = make_case(c);
  const BwdInputs in = make_bwd_inputs(s, 4);
  const Grads g = make_grads(s.x, s.params.mask.bias);
  const auto verdicts =
      explain(g.views(), in.dout.view, s.x.q, s.x.k, s.x.v, in.fwd.out.view, in.fwd.lse.view, s.params);
  bool cpu_ok = false;
  for (const auto& v : verdicts) cpu_ok |= v.backend == Backend::cpu && v.can_run;
  EXPECT_TRUE(cpu_ok) << to_string(verdicts);
}

/// Without dbias the automatic choice is the cpu backend.
TEST(CpuBwd, AutoPicksCpu) {
  Qkv x = make_qkv(1, 2, 2, 5, 6, 8, 8, DType::f32, Layout::bhsd, 4);
  SdpaParams params;
  const Outputs o = forward(x, params, false, DType::f32);
  const Grads g = make_grads_as(x, DType::f32);
  const auto verdicts = explain(g.views(), o.out.view, x.q, x.k, x.v, o.out.view, o.lse.view, params);
  ASSERT_FALSE(verdicts.empty());
  bool cpu_ok = false;
  for (const auto& v : verdicts) cpu_ok |= v.backend == Backend::cpu && v.can_run;
  EXPECT_TRUE(cpu_ok) << to_string(verdicts);
}

}  // namespace
}  // namespace attn::test
