// One test per row of the bad-input table (docs/architecture.md §9): each call must throw attn::Error whose
// argument() names the offending argument and whose message carries the facts the user needs.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>

#include "attn/error.hpp"
#include "attn/sdpa.hpp"
#include "attn/tensor.hpp"

namespace {

using attn::DType;
using attn::Tensor;
using attn::TensorView;

// Runs `call`, expects attn::Error for `argument` whose message contains every piece of `parts`.
void expect_error(const std::function<void()>& call, const std::string& argument,
                  std::initializer_list<std::string> parts) {
  try {
    call();
    ADD_FAILURE() << "no attn::Error thrown (expected one for " << argument << ")";
  } catch (const attn::Error& e) {
    EXPECT_EQ(e.argument(), argument) << e.what();
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(argument + ": ", 0), 0u) << "message does not start with the argument: " << what;
    // The format of include/attn/error.hpp: "<argument>: <seen>, expected <expected>[ (<why>)]", and
    // the seen part does not repeat the argument's name first.
    EXPECT_NE(what.find(", expected "), std::string::npos) << "no ', expected ' in: " << what;
    EXPECT_NE(what.rfind(argument + ": " + argument + " ", 0), 0u) << "the argument is repeated: " << what;
    for (const std::string& part : parts)
      EXPECT_NE(what.find(part), std::string::npos) << "missing '" << part << "' in: " << what;
  }
}

// A valid problem (contiguous tensors) that each test breaks in one place.
struct Problem {
  std::int64_t B = 2, Hq = 4, Hkv = 2, Nq = 3, Nk = 5, D = 8, Dv = 6;
  Tensor qt{DType::f32, {B, Hq, Nq, D}}, kt{DType::f32, {B, Hkv, Nk, D}}, vt{DType::f32, {B, Hkv, Nk, Dv}};
  Tensor outt{DType::f32, {B, Hq, Nq, Dv}}, lset{DType::f32, {B, Hq, Nq}}, probst{DType::f32, {B, Hq, Nq, Nk}};
  TensorView q = qt, k = kt, v = vt, out = outt, lse = lset, probs = probst;
  attn::SdpaParams params;

  void forward() const { attn::sdpa_forward({out, lse, probs}, q, k, v, params); }
  std::function<void()> fwd() const {
    return [this] { forward(); };
  }
};

// A valid backward problem on top of Problem.
struct BwdProblem : Problem {
  Tensor doutt{DType::f32, {B, Hq, Nq, Dv}}, dqt{DType::f32, {B, Hq, Nq, D}}, dkt{DType::f32, {B, Hkv, Nk, D}},
      dvt{DType::f32, {B, Hkv, Nk, Dv}};
  TensorView dout = doutt, dq = dqt, dk = dkt, dv = dvt, dbias, dlse;
  std::function<void()> bwd() const {
    return [this] { attn::sdpa_backward({dq, dk, dv, dbias}, dout, q, k, v, out, lse, params, dlse); };
  }
};

TensorView with_shape(TensorView t, std::initializer_list<std::int64_t> shape) {
  return TensorView(t.data, t.dtype, shape);
}

// ---- ranks and shapes of q, k, v, out, lse, probs

TEST(CoreValidate, QRankMismatch) {
  Problem p;
  p.q = with_shape(p.q, {p.B * p.Hq, p.Nq, p.D});
  expect_error(p.fwd(), "q", {"rank 3", "[8, 3, 8]", "expected rank 4 [B, Hq, Nq, D]"});
}

TEST(CoreValidate, KBatchMismatch) {
  Problem p;
  p.k = with_shape(p.k, {1, p.Hkv, p.Nk, p.D});
  expect_error(p.fwd(), "k", {"k.shape[0] = 1", "batch", "2"});
}

TEST(CoreValidate, VLengthMismatch) {
  Problem p;
  p.v = with_shape(p.v, {p.B, p.Hkv, p.Nk - 1, p.Dv});
  expect_error(p.fwd(), "v", {"v.shape[2] = 4", "key length Nk", "5"});
}

TEST(CoreValidate, VHeadsMismatch) {
  Problem p;
  p.v = with_shape(p.v, {p.B, 1, p.Nk, p.Dv});
  expect_error(p.fwd(), "v", {"v.shape[1] = 1", "kv heads Hkv"});
}

TEST(CoreValidate, OutShapeMismatch) {
  Problem p;
  p.out = with_shape(p.out, {p.B, p.Hq, p.Nq, p.D});
  expect_error(p.fwd(), "out", {"out.shape[3] = 8", "value head dim Dv", "6"});
}

TEST(CoreValidate, OutRankMismatch) {
  Problem p;
  p.out = with_shape(p.out, {p.B, p.Hq, p.Nq * p.Dv});
  expect_error(p.fwd(), "out", {"rank 3", "[B, Hq, Nq, Dv]"});
}

TEST(CoreValidate, LseShapeMismatch) {
  Problem p;
  p.lse = with_shape(p.lse, {p.B, p.Hq, p.Nq + 1});
  expect_error(p.fwd(), "lse", {"lse.shape[2] = 4", "query length Nq"});
}

TEST(CoreValidate, LseRankMismatch) {
  Problem p;
  p.lse = with_shape(p.lse, {p.B, p.Hq, p.Nq, 1});
  expect_error(p.fwd(), "lse", {"rank 4", "[B, Hq, Nq]"});
}

TEST(CoreValidate, ProbsShapeMismatch) {
  Problem p;
  p.probs = with_shape(p.probs, {p.B, p.Hq, p.Nq, p.Nk + 1});
  expect_error(p.fwd(), "probs", {"probs.shape[3]", "= 6", "expected 5", "[B, Hq, Nq, Nk]"});
}

TEST(CoreValidate, HeadDimsOfQAndKDiffer) {
  Problem p;
  p.q = with_shape(p.q, {p.B, p.Hq, p.Nq, 4});
  expect_error(p.fwd(), "k", {"k.shape[3] = 8", "q.shape[3]", "head dims of q and k must match", "expected 4"});
}

TEST(CoreValidate, HqNotDivisibleByHkv) {
  Problem p;
  p.Hq = 6;
  p.Hkv = 4;
  Tensor q(DType::f32, {p.B, 6, p.Nq, p.D}), k(DType::f32, {p.B, 4, p.Nk, p.D}), v(DType::f32, {p.B, 4, p.Nk, p.Dv});
  Tensor out(DType::f32, {p.B, 6, p.Nq, p.Dv});
  p.q = q, p.k = k, p.v = v, p.out = out, p.lse = {}, p.probs = {};
  expect_error(p.fwd(), "k", {"k.shape[1] = 4", "q.shape[1] = 6", "Hq must be a multiple of Hkv"});
}

TEST(CoreValidate, ZeroKvHeads) {
  Problem p;
  p.k = with_shape(p.k, {p.B, 0, p.Nk, p.D});
  p.v = with_shape(p.v, {p.B, 0, p.Nk, p.Dv});
  expect_error(p.fwd(), "k", {"k.shape[1] = 0", "Hkv >= 1"});
}

TEST(CoreValidate, EmptyHeadDim) {
  Problem p;
  p.q = with_shape(p.q, {p.B, p.Hq, p.Nq, 0});
  p.k = with_shape(p.k, {p.B, p.Hkv, p.Nk, 0});
  expect_error(p.fwd(), "q", {"q.shape[3] = 0", "head dim D >= 1"});
}

TEST(CoreValidate, EmptyValueHeadDim) {
  Problem p;
  p.v = with_shape(p.v, {p.B, p.Hkv, p.Nk, 0});
  p.out = with_shape(p.out, {p.B, p.Hq, p.Nq, 0});
  expect_error(p.fwd(), "v", {"v.shape[3] = 0", "Dv >= 1"});
}

TEST(CoreValidate, MissingQ) {
  Problem p;
  p.q = {};
  expect_error(p.fwd(), "q", {"required", "[B, Hq, Nq, D]"});
}

// ---- masks and biases

TEST(CoreValidate, BoolMaskNotBroadcastableShowsBothShapes) {
  Problem p;
  Tensor mask(DType::boolean, {p.Nq + 1, p.Nk});
  p.params.mask.bool_mask = mask;
  expect_error(p.fwd(), "params.mask.bool_mask", {"[4, 5]", "[B, Hq, Nq, Nk] = [2, 4, 3, 5]", "broadcast"});
}

TEST(CoreValidate, Rank3MaskSuggestsPerBatchForm) {
  Problem p;
  Tensor mask(DType::boolean, {p.B, p.Nq, p.Nk});  // the per-batch mistake: read as [Hq, Nq, Nk]
  p.params.mask.bool_mask = mask;
  expect_error(p.fwd(), "params.mask.bool_mask", {"[2, 3, 5]", "[Hq, Nq, Nk]", "[B, 1, Nq, Nk] = [2, 1, 3, 5]"});
}

TEST(CoreValidate, BiasNotBroadcastable) {
  Problem p;
  Tensor bias(DType::f32, {p.B, 3, p.Nq, p.Nk});
  p.params.mask.bias = bias;
  expect_error(p.fwd(), "params.mask.bias", {"[2, 3, 3, 5]", "[2, 4, 3, 5]"});
}

TEST(CoreValidate, BroadcastableMasksAreAccepted) {
  Problem p;
  Tensor m1(DType::boolean, {p.Nq, p.Nk}), m2(DType::i8, {p.B, 1, 1, p.Nk}), bias(DType::f32, {1, p.Hq, p.Nq, p.Nk});
  for (const Tensor* m : {&m1, &m2}) {
    p.params.mask.bool_mask = *m;
    p.params.mask.bias = bias;
    EXPECT_NO_THROW(attn::explain({p.out, p.lse, p.probs}, p.q, p.k, p.v, p.params));
  }
}

TEST(CoreValidate, BlockMaskShape) {
  Problem p;
  Tensor keep(DType::boolean, {1, 1, 2, 1});
  attn::BlockMask bm;
  bm.q_block = 2;
  bm.k_block = 2;  // ceil(5 / 2) = 3 key blocks expected
  bm.keep = keep;
  p.params.mask.block_mask = bm;
  expect_error(p.fwd(), "params.mask.block_mask.keep", {"keep.shape[3] = 1", "expected 3"});
}

TEST(CoreValidate, AlibiSlopesCount) {
  Problem p;
  p.params.mask.alibi_slopes = {0.5, 0.25};
  p.params.mask.alignment = attn::Alignment::bottom_right;
  expect_error(p.fwd(), "params.mask.alibi_slopes", {"has 2 slopes", "Hq = 4"});
}

TEST(CoreValidate, WindowLeftBelowMinusOne) {
  Problem p;
  p.params.mask.window_left = -2;
  expect_error(p.fwd(), "params.mask.window_left", {"-2", "-1 (unbounded) or >= 0"});
}

TEST(CoreValidate, WindowRightBelowMinusOne) {
  Problem p;
  p.params.mask.window_right = -5;
  expect_error(p.fwd(), "params.mask.window_right", {"-5"});
}

// ---- dtypes

TEST(CoreValidate, DtypeMismatchQK) {
  Problem p;
  Tensor k(DType::bf16, {p.B, p.Hkv, p.Nk, p.D});
  p.k = k;
  expect_error(p.fwd(), "k", {"dtype bf16", "expected f32 as q"});
}

TEST(CoreValidate, DtypeMismatchQV) {
  Problem p;
  Tensor v(DType::f16, {p.B, p.Hkv, p.Nk, p.Dv});
  p.v = v;
  expect_error(p.fwd(), "v", {"dtype f16", "expected f32 as q"});
}

TEST(CoreValidate, IntegerQ) {
  Problem p;
  Tensor q(DType::i32, {p.B, p.Hq, p.Nq, p.D});
  p.q = q;
  expect_error(p.fwd(), "q", {"dtype i32", "floating"});
}

TEST(CoreValidate, FloatBoolMask) {
  Problem p;
  Tensor mask(DType::f32, {p.Nq, p.Nk});
  p.params.mask.bool_mask = mask;
  expect_error(p.fwd(), "params.mask.bool_mask", {"dtype f32", "bool or i8", "params.mask.bias"});
}

TEST(CoreValidate, LseNotF32) {
  Problem p;
  Tensor lse(DType::f64, {p.B, p.Hq, p.Nq});
  p.lse = lse;
  expect_error(p.fwd(), "lse", {"dtype f64", "expected f32"});
}

// ---- scalar parameters

TEST(CoreValidate, LseF32ForF64Inputs) {
  Problem p;
  Tensor q(DType::f64, {p.B, p.Hq, p.Nq, p.D}), k(DType::f64, {p.B, p.Hkv, p.Nk, p.D}), v(DType::f64, {p.B, p.Hkv, p.Nk, p.Dv});
  p.q = q, p.k = k, p.v = v;
  expect_error(p.fwd(), "lse", {"dtype f32", "expected f64", "f64 inputs"});
}

TEST(CoreValidate, LseF64ForF64InputsIsAccepted) {
  Problem p;
  Tensor q(DType::f64, {p.B, p.Hq, p.Nq, p.D}), k(DType::f64, {p.B, p.Hkv, p.Nk, p.D}), v(DType::f64, {p.B, p.Hkv, p.Nk, p.Dv});
  Tensor lse(DType::f64, {p.B, p.Hq, p.Nq});
  p.q = q, p.k = k, p.v = v, p.lse = lse;
  EXPECT_NO_THROW(attn::explain({p.out, p.lse, p.probs}, p.q, p.k, p.v, p.params));
}

TEST(CoreValidate, BackwardLseF32ForF64Inputs) {
  BwdProblem p;
  Tensor q(DType::f64, {p.B, p.Hq, p.Nq, p.D}), k(DType::f64, {p.B, p.Hkv, p.Nk, p.D}), v(DType::f64, {p.B, p.Hkv, p.Nk, p.Dv});
  p.q = q, p.k = k, p.v = v;
  expect_error(p.bwd(), "lse", {"dtype f32", "expected f64"});
}

TEST(CoreValidate, BackwardDlseF32ForF64Inputs) {
  BwdProblem p;
  Tensor q(DType::f64, {p.B, p.Hq, p.Nq, p.D}), k(DType::f64, {p.B, p.Hkv, p.Nk, p.D}), v(DType::f64, {p.B, p.Hkv, p.Nk, p.Dv});
  Tensor lse(DType::f64, {p.B, p.Hq, p.Nq}), dlse(DType::f32, {p.B, p.Hq, p.Nq});
  p.q = q, p.k = k, p.v = v, p.lse = lse, p.dlse = dlse;
  expect_error(p.bwd(), "dlse", {"dtype f32", "expected f64"});
}

TEST(CoreValidate, BackwardDlseF64ForF32Inputs) {
  BwdProblem p;
  Tensor dlse(DType::f64, {p.B, p.Hq, p.Nq});
  p.dlse = dlse;
  expect_error(p.bwd(), "dlse", {"dtype f64", "expected f32"});
}

// ---- error kinds (what Python's exception type is chosen from)

attn::ErrorKind kind_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const attn::Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no attn::Error thrown";
  return attn::ErrorKind::system;
}

TEST(CoreValidate, ErrorKinds) {
  {
    Problem p;
    Tensor k(DType::f64, {p.B, p.Hkv, p.Nk, p.D});
    p.k = k;
    EXPECT_EQ(kind_of(p.fwd()), attn::ErrorKind::dtype);
  }
  {
    Problem p;
    p.k = with_shape(p.k, {p.B, p.Hkv, p.Nk, p.D - 1});
    EXPECT_EQ(kind_of(p.fwd()), attn::ErrorKind::shape);
  }
  {
    Problem p;
    p.params.dropout_p = 1.0;
    EXPECT_EQ(kind_of(p.fwd()), attn::ErrorKind::value);
  }
  {
    Problem p;
    p.out = TensorView(p.q.data, DType::f32, {p.B, p.Hq, p.Nq, p.Dv});
    EXPECT_EQ(kind_of(p.fwd()), attn::ErrorKind::layout);
  }
  {
    Problem p;
    p.params.mask.score_mod.value = [](double s, std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return s; };
    BwdProblem b;
    b.params.mask.score_mod = p.params.mask.score_mod;  // no grad: no backend can run the backward
    EXPECT_EQ(kind_of(b.bwd()), attn::ErrorKind::unsupported);
  }
  EXPECT_STREQ(attn::error_kind_name(attn::ErrorKind::dtype), "dtype");
}

// ---- alignment: no default when some Lq_b != Lk_b and the call is causal, windowed or uses ALiBi

TEST(CoreValidate, AlignmentUnsetWithCausalAndNqNotNk) {
  Problem p;  // Nq = 3, Nk = 5
  p.params.mask.causal = true;
  expect_error(p.fwd(), "params.mask.alignment", {"is not set, but the call is causal and Nq = 3 != Nk = 5", "top_left", "bottom_right"});
}

TEST(CoreValidate, AlignmentUnsetWithWindowOrAlibi) {
  Problem p;
  p.params.mask.window_left = 1;
  expect_error(p.fwd(), "params.mask.alignment", {"windowed", "top_left", "bottom_right"});
  Problem r;
  r.params.mask.alibi_slopes = {0.5, 0.25, 0.125, 0.0625};
  expect_error(r.fwd(), "params.mask.alignment", {"ALiBi", "top_left", "bottom_right"});
  BwdProblem b;
  b.params.mask.window_right = 0;
  expect_error(b.bwd(), "params.mask.alignment", {"windowed", "top_left", "bottom_right"});
}

TEST(CoreValidate, AlignmentUnsetWithLengthsThatDiffer) {
  Problem p;
  Tensor q(DType::f32, {p.B, p.Hq, p.Nk, p.D}), out(DType::f32, {p.B, p.Hq, p.Nk, p.Dv});
  p.q = q, p.out = out, p.lse = {}, p.probs = {};  // Nq = Nk = 5
  p.params.mask.causal = true;
  EXPECT_NO_THROW(p.forward());
  p.params.mask.k_lengths = {5, 2};
  expect_error(p.fwd(), "params.mask.alignment", {"sequence 1 has Lq = 5 != Lk = 2", "top_left", "bottom_right"});
  p.params.mask.alignment = attn::Alignment::top_left;
  EXPECT_NO_THROW(p.forward());
}

TEST(CoreValidate, AlignmentStatedOrUnneededIsAccepted) {
  for (auto a : {attn::Alignment::top_left, attn::Alignment::bottom_right}) {
    Problem p;
    p.params.mask.causal = true;
    p.params.mask.alignment = a;
    EXPECT_NO_THROW(p.forward());
  }
  Problem plain;  // Nq != Nk, but nothing uses the offset
  Tensor bias(DType::f32, {plain.Nq, plain.Nk});
  plain.params.mask.bias = bias;
  EXPECT_NO_THROW(attn::explain({plain.out, plain.lse, plain.probs}, plain.q, plain.k, plain.v, plain.params));
}

TEST(CoreValidate, DropoutNegative) {
  Problem p;
  p.params.dropout_p = -0.1;
  expect_error(p.fwd(), "params.dropout_p", {"-0.1", "[0, 1)"});
}

TEST(CoreValidate, DropoutOne) {
  Problem p;
  p.params.dropout_p = 1.0;
  expect_error(p.fwd(), "params.dropout_p", {"= 1", "[0, 1)"});
}

TEST(CoreValidate, DropoutAboveOne) {
  Problem p;
  p.params.dropout_p = 1.5;
  expect_error(p.fwd(), "params.dropout_p", {"1.5", "[0, 1)"});
}

TEST(CoreValidate, DropoutNaN) {
  Problem p;
  p.params.dropout_p = std::numeric_limits<double>::quiet_NaN();
  expect_error(p.fwd(), "params.dropout_p", {"nan", "[0, 1)"});
}

TEST(CoreValidate, NonFiniteScale) {
  Problem p;
  p.params.scale = std::numeric_limits<double>::infinity();
  expect_error(p.fwd(), "params.scale", {"inf", "finite"});
  p.params.scale = std::numeric_limits<double>::quiet_NaN();
  expect_error(p.fwd(), "params.scale", {"nan", "finite"});
}

TEST(CoreValidate, NegativeSoftcap) {
  Problem p;
  p.params.mask.softcap = -1.0;
  expect_error(p.fwd(), "params.mask.softcap", {"-1"});
}

// ---- overlapping memory

TEST(CoreValidate, OutOverlapsQ) {
  Problem p;
  p.out = TensorView(p.q.data, DType::f32, {p.B, p.Hq, p.Nq, p.Dv});
  expect_error(p.fwd(), "out", {"overlaps q"});
}

TEST(CoreValidate, OutOverlapsK) {
  Problem p;
  Tensor big(DType::f32, {p.B * p.Hq * p.Nq * p.Dv + 8});
  p.k = TensorView(big.ptr<float>() + p.B * p.Hq * p.Nq * p.Dv - p.B * p.Hkv * p.Nk * p.D + 1, DType::f32,
                   {p.B, p.Hkv, p.Nk, p.D});  // k's span ends inside out's span
  p.out = TensorView(big.data(), DType::f32, {p.B, p.Hq, p.Nq, p.Dv});
  expect_error(p.fwd(), "out", {"overlaps k"});
}

TEST(CoreValidate, OutOverlapsV) {
  Problem p;
  p.out = TensorView(p.v.data, DType::f32, {p.B, p.Hq, p.Nq, p.Dv});
  expect_error(p.fwd(), "out", {"overlaps v"});
}

TEST(CoreValidate, OutOverlapsBias) {
  Problem p;
  Tensor bias(DType::f32, {p.B, p.Hq, p.Nq, p.Nk});
  p.params.mask.bias = bias;
  p.out = TensorView(bias.data(), DType::f32, {p.B, p.Hq, p.Nq, p.Dv});
  expect_error(p.fwd(), "out", {"overlaps params.mask.bias"});
}

TEST(CoreValidate, LseOverlapsOut) {
  Problem p;
  p.lse = TensorView(p.out.data, DType::f32, {p.B, p.Hq, p.Nq});
  expect_error(p.fwd(), "out", {"overlaps lse"});
}

TEST(CoreValidate, ProbsOverlapsLse) {
  Problem p;
  p.probs = TensorView(p.lse.data, DType::f32, {p.B, p.Hq, p.Nq, p.Nk});
  expect_error(p.fwd(), "lse", {"overlaps probs"});
}

TEST(CoreValidate, SelfOverlappingOut) {
  Problem p;
  // Stride 0 on the Nq axis: every query row writes the same memory.
  p.out = TensorView(p.out.data, DType::f32, {p.B, p.Hq, p.Nq, p.Dv}, {p.Hq * p.Dv, p.Dv, 0, 1});
  expect_error(p.fwd(), "out", {"write some elements twice", "stride 0"});
}

TEST(CoreValidate, DisjointStridedOutIsAccepted) {
  Problem p;
  // BSHD out: interleaved with gaps but no element written twice.
  Tensor bshd(DType::f32, {p.B, p.Nq, p.Hq, p.Dv});
  p.out = bshd.view().permute({0, 2, 1, 3});
  EXPECT_NO_THROW(attn::explain({p.out, p.lse, p.probs}, p.q, p.k, p.v, p.params));
}

// ---- varlen and lengths

struct Varlen : Problem {
  Varlen() {
    B = 1;
    Tensor q1(DType::f32, {1, Hq, 6, D}), k1(DType::f32, {1, Hkv, 9, D}), v1(DType::f32, {1, Hkv, 9, Dv});
    Tensor o1(DType::f32, {1, Hq, 6, Dv});
    qt = std::move(q1), kt = std::move(k1), vt = std::move(v1), outt = std::move(o1);
    q = qt, k = kt, v = vt, out = outt, lse = {}, probs = {};
    params.mask.cu_seqlens_q = {0, 2, 6};
    params.mask.cu_seqlens_k = {0, 4, 9};
  }
};

TEST(CoreValidate, VarlenValidIsAccepted) {
  Varlen p;
  EXPECT_NO_THROW(attn::explain({p.out, p.lse, p.probs}, p.q, p.k, p.v, p.params));
}

TEST(CoreValidate, CuSeqlensNotMonotonic) {
  Varlen p;
  p.params.mask.cu_seqlens_q = {0, 4, 3, 6};
  p.params.mask.cu_seqlens_k = {0, 3, 6, 9};
  expect_error(p.fwd(), "params.mask.cu_seqlens_q", {"not monotonic", "[2] = 3", "[1] = 4"});
}

TEST(CoreValidate, CuSeqlensNotEndingAtTotal) {
  Varlen p;
  p.params.mask.cu_seqlens_k = {0, 4, 8};
  expect_error(p.fwd(), "params.mask.cu_seqlens_k", {"ends at 8", "total length 9"});
}

TEST(CoreValidate, CuSeqlensNotStartingAtZero) {
  Varlen p;
  p.params.mask.cu_seqlens_q = {1, 2, 6};
  expect_error(p.fwd(), "params.mask.cu_seqlens_q", {"[0] = 1", "expected 0"});
}

TEST(CoreValidate, OnlyOneCuSeqlens) {
  Varlen p;
  p.params.mask.cu_seqlens_k.clear();
  expect_error(p.fwd(), "params.mask.cu_seqlens_q", {"both cu_seqlens_q and cu_seqlens_k", "only one"});
}

TEST(CoreValidate, CuSeqlensDifferentCounts) {
  Varlen p;
  p.params.mask.cu_seqlens_k = {0, 2, 4, 9};
  expect_error(p.fwd(), "params.mask.cu_seqlens_k", {"has 4 entries", "expected 3 as cu_seqlens_q"});
}

TEST(CoreValidate, VarlenNeedsBatchOne) {
  Problem p;  // B = 2
  p.params.mask.cu_seqlens_q = {0, p.Nq};
  p.params.mask.cu_seqlens_k = {0, p.Nk};
  expect_error(p.fwd(), "q", {"q.shape[0] = 2", "B = 1"});
}

TEST(CoreValidate, NegativeLength) {
  Problem p;
  p.params.mask.q_lengths = {-1, 2};
  expect_error(p.fwd(), "params.mask.q_lengths", {"q_lengths[0] = -1", "[0, 3]"});
}

TEST(CoreValidate, LengthAboveN) {
  Problem p;
  p.params.mask.k_lengths = {5, 6};
  expect_error(p.fwd(), "params.mask.k_lengths", {"k_lengths[1] = 6", "[0, 5]"});
}

TEST(CoreValidate, LengthsWrongCount) {
  Problem p;
  p.params.mask.q_lengths = {1, 2, 3};
  expect_error(p.fwd(), "params.mask.q_lengths", {"3 entries", "B = 2"});
}

// ---- backward

TEST(CoreValidate, BackwardDbiasWithoutBias) {
  BwdProblem p;
  Tensor dbias(DType::f32, {p.B, p.Hq, p.Nq, p.Nk});
  p.dbias = dbias;
  expect_error(p.bwd(), "dbias", {"params.mask.bias is not given"});
}

TEST(CoreValidate, BackwardDlseShapeMismatch) {
  BwdProblem p;
  Tensor dlse(DType::f32, {p.B, p.Hq + 1, p.Nq});
  p.dlse = dlse;
  expect_error(p.bwd(), "dlse", {"shape of lse"});
}

TEST(CoreValidate, BackwardDlseNotFloat) {
  BwdProblem p;
  Tensor dlse(DType::i8, {p.B, p.Hq, p.Nq});
  p.dlse = dlse;
  expect_error(p.bwd(), "dlse", {"i8"});
}

TEST(CoreValidate, BackwardDqOverlapsDlse) {
  BwdProblem p;
  p.dlse = with_shape(p.dq, {p.B, p.Hq, p.Nq});  // the first elements of dq, read as dlse
  expect_error(p.bwd(), "dq", {"dlse"});
}

TEST(CoreValidate, BackwardMissingLse) {
  BwdProblem p;
  p.lse = {};
  expect_error(p.bwd(), "lse", {"required by sdpa_backward"});
}

TEST(CoreValidate, BackwardDqShapeMismatch) {
  BwdProblem p;
  p.dq = with_shape(p.dq, {p.B, p.Hq, p.Nq + 1, p.D});
  expect_error(p.bwd(), "dq", {"[2, 4, 4, 8]", "shape of q [2, 4, 3, 8]"});
}

TEST(CoreValidate, BackwardDoutShapeMismatch) {
  BwdProblem p;
  p.dout = with_shape(p.dout, {p.B, p.Hq, p.Nq, p.Dv - 1});
  expect_error(p.bwd(), "dout", {"shape of out"});
}

TEST(CoreValidate, BackwardGradsOverlapEachOther) {
  BwdProblem p;
  p.dk = TensorView(p.dq.data, DType::f32, {p.B, p.Hkv, p.Nk, p.D});
  expect_error(p.bwd(), "dq", {"overlaps dk"});
}

// ---- empty sizes are valid calls

TEST(CoreValidate, ZeroBatchSucceeds) {
  Problem p;
  p.q = with_shape(p.q, {0, p.Hq, p.Nq, p.D});
  p.k = with_shape(p.k, {0, p.Hkv, p.Nk, p.D});
  p.v = with_shape(p.v, {0, p.Hkv, p.Nk, p.Dv});
  p.out = with_shape(p.out, {0, p.Hq, p.Nq, p.Dv});
  p.lse = with_shape(p.lse, {0, p.Hq, p.Nq});
  p.probs = {};
  EXPECT_NO_THROW(p.forward());
}

TEST(CoreValidate, ZeroQueryLengthSucceeds) {
  Problem p;
  p.q = with_shape(p.q, {p.B, p.Hq, 0, p.D});
  p.out = with_shape(p.out, {p.B, p.Hq, 0, p.Dv});
  p.lse = with_shape(p.lse, {p.B, p.Hq, 0});
  p.probs = with_shape(p.probs, {p.B, p.Hq, 0, p.Nk});
  EXPECT_NO_THROW(p.forward());
}

}  // namespace
