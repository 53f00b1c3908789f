// Strided ∪ window ∪ global attention against dense attention given the equivalent [Nq, Nk] bool
// mask, built here from the rule of include/attn/sparse_attention.hpp (not through src/sparse or
// src/variants): the fp64 reference SDPA with that mask is the oracle, forward (out, lse) and
// backward (dq, dk, dv). f64 inputs (pieces on the reference) must agree to rounding, f32 (the cpu
// kernels) to fp32 accuracy, bf16 within a small multiple of the dense bf16 kernel's own error.
// Odd sizes, s ∈ {1, 3, 64}, w ∈ {0, 5}, g ∈ {0, 2}, causal and not, Nq != Nk both alignments,
// GQA/MQA, BSHD views. Also: the piece partition covers every visible pair exactly once, and bad
// parameters are named.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/sparse_attention.hpp"
#include "common/test_util.hpp"
#include "sparse/pieces.hpp"

namespace attn::test {
namespace {

struct Pattern {
  std::int64_t s = 1, w = 0, g = 0;
  bool causal = false;
  std::optional<Alignment> alignment;
  std::vector<std::int64_t> k_lengths;  // empty = Nk
};

std::string name(const Pattern& p, std::int64_t Nq, std::int64_t Nk) {
  return "Nq=" + std::to_string(Nq) + " Nk=" + std::to_string(Nk) + " s=" + std::to_string(p.s) +
         " w=" + std::to_string(p.w) + " g=" + std::to_string(p.g) + (p.causal ? " causal" : "") +
         (p.alignment == Alignment::bottom_right ? " bottom_right" : "");
}

// The rule, written out: query i at position i + off of batch row b sees key j.
bool visible(const Pattern& p, std::int64_t Nq, std::int64_t Nk, std::int64_t i, std::int64_t j, std::int64_t b = 0) {
  if (!p.k_lengths.empty() && j >= p.k_lengths[static_cast<std::size_t>(b)]) return false;
  const std::int64_t pi = i + (p.alignment == Alignment::bottom_right ? Nk - Nq : 0);
  if (p.causal && j > pi) return false;
  const std::int64_t d = pi - j;
  return d % p.s == 0 || std::llabs(d) <= p.w || j < p.g || (pi >= 0 && pi < p.g);
}

StridedAttentionParams params_of(const Pattern& p) {
  StridedAttentionParams sp;
  sp.stride = p.s;
  sp.window = p.w;
  sp.global_tokens = p.g;
  sp.causal = p.causal;
  sp.alignment = p.alignment;
  sp.k_lengths = p.k_lengths;
  return sp;
}

TEST(StridedPieces, CoverEveryVisiblePairExactlyOnce) {
  for (std::int64_t Nq : {1, 7, 20, 65})
    for (std::int64_t Nk : {1, 7, 20, 65})
      for (auto al : {Alignment::top_left, Alignment::bottom_right})
        for (std::int64_t s : {1, 2, 3, 5, 64})
          for (std::int64_t w : {0, 1, 4, 5, 9})
            for (std::int64_t g : {0, 1, 3})
              for (bool causal : {false, true}) {
                const Pattern p{s, w, g, causal, al, {}};
                const std::int64_t off = al == Alignment::bottom_right ? Nk - Nq : 0;
                std::vector<int> count(static_cast<std::size_t>(Nq * Nk), 0);
                for (const sparse::Piece& c : sparse::make_pieces(Nq, Nk, off, s, w, g, causal)) {
                  ASSERT_GE(c.window_left, -1);
                  ASSERT_GE(c.window_right, -1);
                  for (std::int64_t a = 0; a < c.nq; ++a)
                    for (std::int64_t b = 0; b < c.nk; ++b) {
                      if (c.window_left >= 0 && a - b > c.window_left) continue;
                      if (c.window_right >= 0 && b - a > c.window_right) continue;
                      const std::int64_t i = c.i0 + a * c.step, j = c.j0 + b * c.step;
                      ASSERT_TRUE(i >= 0 && i < Nq && j >= 0 && j < Nk) << name(p, Nq, Nk);
                      ++count[static_cast<std::size_t>(i * Nk + j)];
                    }
                }
                for (std::int64_t i = 0; i < Nq; ++i)
                  for (std::int64_t j = 0; j < Nk; ++j)
                    ASSERT_EQ(count[static_cast<std::size_t>(i * Nk + j)], visible(p, Nq, Nk, i, j) ? 1 : 0)
                        << name(p, Nq, Nk) << " i=" << i << " j=" << j;
              }
}

// Largest |a − b| relative to 1 + max|b|.
double rel_diff(const TensorView& a, const TensorView& b) { return max_abs_diff(a, b) / (1.0 + max_abs(b)); }

// Largest |a − b| / (1 + |b|) over two lse views; −inf must match exactly.
double lse_diff(const TensorView& a, const TensorView& b) {
  double m = 0.0;
  for_each_element(b, [&](const auto& idx, std::int64_t off) {
    const double t = load_f64(b, off), f = at(a, idx[0], idx[1], idx[2]);
    m = std::max(m, std::isinf(t) || std::isinf(f) ? (t == f ? 0.0 : kInf) : std::abs(t - f) / (1.0 + std::abs(t)));
  });
  return m;
}

struct Errors {
  double out = 0, lse = 0, dq = 0, dk = 0, dv = 0;
};

// Dense SDPA of x (any dtype) with the pattern's bool mask; backend reference or cpu.
struct Dense {
  Outputs o;
  Grads g;
};
Dense dense(const Qkv& x, const Pattern& p, const TensorView& dout, Backend backend, DType out_dtype) {
  GuardedTensor mask = make_tensor(DType::boolean, {x.B, 1, x.Nq, x.Nk});
  for (std::int64_t b = 0; b < x.B; ++b)
    for (std::int64_t i = 0; i < x.Nq; ++i)
      for (std::int64_t j = 0; j < x.Nk; ++j) set(mask.view, visible(p, x.Nq, x.Nk, i, j, b) ? 1.0 : 0.0, b, 0, i, j);
  SdpaParams sp;
  sp.mask.bool_mask = mask.view;
  sp.backend = backend;
  Dense d{forward(x, sp, false, out_dtype), make_grads(x)};
  sdpa_backward(d.g.views(), dout, x.q, x.k, x.v, d.o.out.view, d.o.lse.view, sp);
  return d;
}

Errors errors(const Outputs& o, const Grads& g, const Dense& truth) {
  return {rel_diff(o.out.view, truth.o.out.view), lse_diff(o.lse.view, truth.o.lse.view),
          rel_diff(g.dq.view, truth.g.dq.view), rel_diff(g.dk.view, truth.g.dk.view),
          rel_diff(g.dv.view, truth.g.dv.view)};
}

struct Shape {
  std::int64_t B = 2, Hq = 4, Hkv = 2, Nq = 0, Nk = 0, D = 16, Dv = 12;
};

// Runs strided attention on x in `dt` and returns its errors against the fp64 dense oracle (and, for
// low precision, the dense cpu kernel's own errors in `dense_err`).
Errors run_case(const Shape& sh, const Pattern& p, DType dt, Layout layout, Errors* dense_err = nullptr,
                std::uint64_t seed = 1) {
  const Qkv x = make_qkv(sh.B, sh.Hq, sh.Hkv, sh.Nq, sh.Nk, sh.D, sh.Dv, dt, layout, seed);
  Qkv x64;  // the same values in f64
  x64.q = clone(x.q.view);
  x64.k = clone(x.k.view);
  x64.v = clone(x.v.view);
  x64.B = x.B;
  x64.Hq = x.Hq;
  x64.Hkv = x.Hkv;
  x64.Nq = x.Nq;
  x64.Nk = x.Nk;
  x64.D = x.D;
  x64.Dv = x.Dv;
  GuardedTensor dout = make_tensor4(DType::f64, sh.B, sh.Hq, sh.Nq, sh.Dv);
  fill_normal(dout.view, seed + 100);
  const GuardedTensor dout_x = clone(dout.view, layout, dt);
  const DType out_dt = dt == DType::f64 ? DType::f64 : DType::f32;
  const Dense truth = dense(x64, p, dout.view, Backend::reference, DType::f64);

  const StridedAttentionParams sp = params_of(p);
  Outputs o = make_outputs(x, false, out_dt);
  strided_attention_forward(o.views(), x.q, x.k, x.v, sp);
  Grads g = make_grads(x);
  strided_attention_backward(g.views(), dout_x.view, x.q, x.k, x.v, o.out.view, o.lse.view, sp);
  EXPECT_TRUE(o.out.guards_intact() && o.lse.guards_intact() && g.dq.guards_intact() && g.dk.guards_intact() &&
              g.dv.guards_intact());
  if (dense_err) {
    const Dense cpu = dense(x, p, dout_x.view, Backend::cpu, out_dt);
    *dense_err = errors(cpu.o, cpu.g, truth);
  }
  return errors(o, g, truth);
}

void expect_within(const Errors& e, double tol, const std::string& what) {
  EXPECT_LE(e.out, tol) << what << " out";
  EXPECT_LE(e.lse, tol) << what << " lse";
  EXPECT_LE(e.dq, tol) << what << " dq";
  EXPECT_LE(e.dk, tol) << what << " dk";
  EXPECT_LE(e.dv, tol) << what << " dv";
}

// Every s, w, g, causal on odd self-attention lengths (Nq = Nk), f64 and f32.
void sweep_self(DType dt, double tol) {
  for (std::int64_t N : {1, 7, 63, 65, 127})
    for (std::int64_t s : {1, 3, 64})
      for (std::int64_t w : {0, 5})
        for (std::int64_t g : {0, 2})
          for (bool causal : {false, true}) {
            const Pattern p{s, w, g, causal, std::nullopt, {}};
            Shape sh;
            sh.B = 1;
            sh.Nq = sh.Nk = N;
            expect_within(run_case(sh, p, dt, N % 2 ? Layout::bhsd : Layout::bshd), tol, name(p, N, N));
          }
}

TEST(StridedAttention, F64MatchesDenseMaskedReference) { sweep_self(DType::f64, 1e-12); }
TEST(StridedAttention, F32MatchesDenseMaskedReference) { sweep_self(DType::f32, 2e-5); }

// Nq != Nk under both alignments (queries past the keys, keys past the queries), GQA and MQA.
TEST(StridedAttention, CrossLengthsAndAlignments) {
  const std::pair<std::int64_t, std::int64_t> lengths[] = {{7, 65}, {65, 7}, {63, 127}};
  for (auto [Nq, Nk] : lengths)
    for (auto al : {Alignment::top_left, Alignment::bottom_right})
      for (bool causal : {false, true})
        for (std::int64_t g : {0, 2})
          for (DType dt : {DType::f64, DType::f32}) {
            const Pattern p{3, 5, g, causal, al, {}};
            Shape sh;
            sh.Nq = Nq;
            sh.Nk = Nk;
            sh.Hkv = g == 0 ? 2 : 1;  // GQA and MQA
            expect_within(run_case(sh, p, dt, Layout::bshd), dt == DType::f64 ? 1e-12 : 2e-5,
                          name(p, Nq, Nk) + (dt == DType::f64 ? " f64" : " f32"));
          }
}

// Key padding (k_lengths, 0 included: a fully hidden row gives out 0, lse −inf), both dtypes.
TEST(StridedAttention, KeyLengths) {
  for (bool causal : {false, true})
    for (DType dt : {DType::f64, DType::f32}) {
      Pattern p{3, 5, 2, causal, Alignment::top_left, {65, 0, 40}};
      Shape sh;
      sh.B = 3;
      sh.Nq = 63;
      sh.Nk = 65;
      expect_within(run_case(sh, p, dt, Layout::bhsd), dt == DType::f64 ? 1e-12 : 2e-5, name(p, 63, 65) + " k_lengths");
    }
}

// bf16 inputs: the same pieces on the bf16 kernels; the error against fp64 stays within a small
// multiple of the dense bf16 kernel's error on the same inputs.
TEST(StridedAttention, Bf16WithinDenseKernelError) {
  for (std::int64_t s : {3, 64})
    for (bool causal : {false, true}) {
      const Pattern p{s, 5, 2, causal, std::nullopt, {}};
      Shape sh;
      sh.Nq = sh.Nk = 127;
      sh.D = 32;
      sh.Dv = 32;
      Errors dense_err;
      const Errors e = run_case(sh, p, DType::bf16, Layout::bshd, &dense_err);
      const std::string what = name(p, 127, 127) + " bf16";
      EXPECT_LE(e.out, 3 * dense_err.out + 2e-3) << what << " out (dense " << dense_err.out << ")";
      EXPECT_LE(e.lse, 3 * dense_err.lse + 2e-3) << what << " lse (dense " << dense_err.lse << ")";
      EXPECT_LE(e.dq, 3 * dense_err.dq + 2e-3) << what << " dq (dense " << dense_err.dq << ")";
      EXPECT_LE(e.dk, 3 * dense_err.dk + 2e-3) << what << " dk (dense " << dense_err.dk << ")";
      EXPECT_LE(e.dv, 3 * dense_err.dv + 2e-3) << what << " dv (dense " << dense_err.dv << ")";
    }
}

// The result does not depend on the thread count (the suite runs with OMP_NUM_THREADS=1: tiny calls
// on a busy machine spend most of their time waking threads).
TEST(StridedAttention, ThreadCountDoesNotChangeTheResult) {
  const Qkv x = make_qkv(2, 4, 2, 127, 127, 16, 12, DType::f32, Layout::bshd, 9);
  GuardedTensor dout = make_tensor4(DType::f32, 2, 4, 127, 12);
  fill_normal(dout.view, 10);
  StridedAttentionParams sp = params_of({3, 5, 2, true, std::nullopt, {}});
  std::vector<Outputs> outs;
  std::vector<Grads> grads;
  for (int threads : {1, 2, 3}) {
    sp.num_threads = threads;
    outs.push_back(make_outputs(x, false, DType::f32));
    strided_attention_forward(outs.back().views(), x.q, x.k, x.v, sp);
    grads.push_back(make_grads(x));
    strided_attention_backward(grads.back().views(), dout.view, x.q, x.k, x.v, outs.back().out.view,
                               outs.back().lse.view, sp);
  }
  for (std::size_t t = 1; t < outs.size(); ++t) {
    EXPECT_EQ(max_abs_diff(outs[t].out.view, outs[0].out.view), 0.0);
    EXPECT_EQ(max_abs_diff(outs[t].lse.view, outs[0].lse.view), 0.0);
    EXPECT_EQ(max_abs_diff(grads[t].dq.view, grads[0].dq.view), 0.0);
    EXPECT_EQ(max_abs_diff(grads[t].dk.view, grads[0].dk.view), 0.0);
    EXPECT_EQ(max_abs_diff(grads[t].dv.view, grads[0].dv.view), 0.0);
  }
}

// Runs fn, expects an attn::Error whose argument is `arg` and whose message contains `part`.
void expect_error(const std::function<void()>& fn, const std::string& arg, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming " << arg;
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), arg) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(StridedAttention, BadParametersAreNamed) {
  const Qkv x = make_qkv(1, 2, 1, 5, 6, 4, 3, DType::f32);
  const Qkv y = make_qkv(1, 2, 1, 6, 6, 4, 3, DType::f32);
  Outputs o = make_outputs(x, false, DType::f32), oy = make_outputs(y, false, DType::f32);
  auto call = [&](const Qkv& in, Outputs& out, auto edit) {
    return [&in, &out, edit] {
      StridedAttentionParams sp;
      sp.stride = 2;
      sp.alignment = Alignment::top_left;
      edit(sp);
      strided_attention_forward(out.views(), in.q, in.k, in.v, sp);
    };
  };
  expect_error(call(x, o, [](StridedAttentionParams& sp) { sp.stride = 0; }), "params.stride", "= 0, expected s >= 1");
  expect_error(call(x, o, [](StridedAttentionParams& sp) { sp.stride = -3; }), "params.stride", "= -3");
  expect_error(call(x, o, [](StridedAttentionParams& sp) { sp.window = -1; }), "params.window", "expected w >= 0");
  expect_error(call(x, o, [](StridedAttentionParams& sp) { sp.global_tokens = -2; }), "params.global_tokens",
               "expected g >= 0");
  expect_error(call(x, o, [](StridedAttentionParams& sp) { sp.alignment.reset(); }), "params.alignment",
               "Nq = 5 != Nk = 6");
  expect_error(call(x, o, [](StridedAttentionParams& sp) { sp.k_lengths = {7}; }), "params.k_lengths",
               "= 7, expected a length in [0, Nk = 6]");
  expect_error(call(x, o,
                    [](StridedAttentionParams& sp) {
                      sp.k_lengths = {1, 2};
                    }),
               "params.k_lengths", "expected B = 1");
  expect_error(call(x, o,
                    [](StridedAttentionParams& sp) {
                      sp.k_lengths = {3};
                      sp.alignment = Alignment::bottom_right;
                    }),
               "params.k_lengths", "expected top_left");
  // Shapes are SDPA's checks, naming the tensor.
  Outputs bad = make_outputs(y, false, DType::f32);
  expect_error(
      [&] {
        strided_attention_forward(bad.views(), x.q, x.k, x.v, params_of({2, 0, 0, false, Alignment::top_left, {}}));
      },
      "out", "expected 5");
  Outputs with_probs = make_outputs(y, true, DType::f32);
  expect_error(
      [&] {
        strided_attention_forward(with_probs.views(), y.q, y.k, y.v, params_of({2, 0, 0, false, {}, {}}));
      },
      "outputs.probs", "never forms");
  // The same checks guard the backward.
  strided_attention_forward(oy.views(), y.q, y.k, y.v, params_of({2, 1, 0, false, {}, {}}));
  Grads g = make_grads(y);
  expect_error(
      [&] {
        strided_attention_backward(g.views(), oy.out.view, y.q, y.k, y.v, oy.out.view, oy.lse.view,
                                   params_of({0, 1, 0, false, {}, {}}));
      },
      "params.stride", "expected s >= 1");
}

}  // namespace
}  // namespace attn::test
