// Kept bf16 weight copies (attn/nn/weight_cache.hpp, src/nn/bf16_weights.cpp, docs/nn.md "bf16
// weight copies"): under a WeightCacheGuard with plain kept copies, Linear and MultiheadAttention
// give the same bits as the per-call rounding (forward and backward; MHA, GQA, MQA; fused QKV,
// fused KV and separate cross-attention projections; the cached decoding path); with copies packed
// into oneDNN's layout, Linear's forward and dx equal fp64 sums of the bf16-rounded operands
// (rounded by the test) within fp32 accumulation error, and the module stays within a stated
// tolerance of per-call rounding; after each kind of weight change — an AdamW step, a state-dict
// load, a user write with mark_weights_changed() — the next call uses the new weights; a write
// without the mark is served stale (the copy really is kept) unless verification is on, which throws.

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/module_state.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/nn/multihead_attention.hpp"
#include "attn/nn/optim.hpp"
#include "attn/nn/weight_cache.hpp"
#include "nn/bf16_reference.hpp"
#include "nn/bf16_weights.hpp"

namespace attn::test {
namespace {

// Kept copies packed into oneDNN's layout (on) or plain (off) for its lifetime.
struct Packing {
  bool saved = nn::detail::weight_packing_enabled();
  explicit Packing(bool on) { nn::detail::set_weight_packing(on); }
  ~Packing() { nn::detail::set_weight_packing(saved); }
};

// max |a − b| / max |b| over two equally long vectors.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    d = std::max(d, std::abs(static_cast<double>(a[i]) - b[i]));
    m = std::max(m, std::abs(static_cast<double>(b[i])));
  }
  return a.size() == b.size() ? d / (m + 1e-30) : 1e30;
}

bool same_bits(const float* a, const float* b, std::int64_t n) {
  return std::memcmp(a, b, static_cast<std::size_t>(n) * sizeof(float)) == 0;
}

// y, dx, dW and db of one forward + backward of `lin` (gradients zeroed first).
struct LinearRun {
  std::vector<float> y, dx, dw, db;
};
LinearRun run_linear(nn::Linear<float>& lin, const std::vector<float>& x, std::int64_t M,
                     const std::vector<float>& dy) {
  lin.zero_grad();
  LinearRun r;
  r.y.assign(static_cast<std::size_t>(M * lin.out_features()), 0.0f);
  r.dx.assign(static_cast<std::size_t>(M * lin.in_features()), 0.0f);
  lin.forward(x.data(), M, lin.in_features(), r.y.data(), lin.out_features());
  lin.backward(x.data(), lin.in_features(), dy.data(), lin.out_features(), M, r.dx.data(), lin.in_features());
  r.dw.assign(lin.weight_grad(), lin.weight_grad() + lin.out_features() * lin.in_features());
  if (lin.has_bias()) r.db.assign(lin.bias_grad(), lin.bias_grad() + lin.out_features());
  return r;
}

void expect_same(const LinearRun& a, const LinearRun& b, const std::string& what) {
  EXPECT_EQ(a.y, b.y) << what << ": y";
  EXPECT_EQ(a.dx, b.dx) << what << ": dx";
  EXPECT_EQ(a.dw, b.dw) << what << ": dW";
  EXPECT_EQ(a.db, b.db) << what << ": db";
}

struct Sizes {
  std::int64_t M, in, out;
};

// The tests of kept copies: skipped without oneDNN, run under bf16 matmuls.
class WeightCacheBf16 : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_DNNL();
    precision_.emplace(nn::MatmulPrecision::bf16);
  }
  std::optional<nn::MatmulPrecisionGuard> precision_;
};

// A module of embed_dim 32 with Hq query and Hkv key/value heads, batch first.
nn::MhaConfig mha_config(std::int64_t Hq, std::int64_t Hkv, std::uint64_t seed) {
  nn::MhaConfig c;
  c.embed_dim = 32;
  c.num_heads = Hq;
  c.num_kv_heads = Hkv;
  c.batch_first = true;
  c.seed = seed;
  return c;
}
const Sizes kSizes[] = {{1, 1, 1}, {7, 7, 5}, {65, 33, 64}, {63, 130, 17}, {127, 64, 96}};

TEST(WeightCache, GuardScopesAndVersions) {
  EXPECT_FALSE(nn::weight_cache_enabled());
  const std::uint64_t v0 = nn::weights_version();
  {
    const nn::WeightCacheGuard a;
    {
      const nn::WeightCacheGuard b;
      EXPECT_TRUE(nn::weight_cache_enabled());
    }
    EXPECT_TRUE(nn::weight_cache_enabled());
    nn::mark_weights_changed();
  }
  EXPECT_FALSE(nn::weight_cache_enabled());
  EXPECT_GT(nn::weights_version(), v0);
}

TEST_F(WeightCacheBf16, LinearEqualsPerCallRoundingBitForBit) {
  const Packing plain(false);
  for (const Sizes& s : kSizes)
    for (bool bias : {true, false}) {
      nn::Linear<float> lin(s.in, s.out, bias, 3);
      const auto x = normal(static_cast<std::size_t>(s.M * s.in), 4);
      const auto dy = normal(static_cast<std::size_t>(s.M * s.out), 5);
      const LinearRun per_call = run_linear(lin, x, s.M, dy);
      const nn::WeightCacheGuard cache;
      const LinearRun first = run_linear(lin, x, s.M, dy), again = run_linear(lin, x, s.M, dy);
      const std::string what = std::to_string(s.M) + "x" + std::to_string(s.in) + "x" + std::to_string(s.out);
      expect_same(per_call, first, what + " first call");
      expect_same(per_call, again, what + " reused copy");
    }
}

// Packed copies: y = x·Wᵀ + b and dx = dy·W (+ dx0) against fp64 sums of the rounded operands.
TEST_F(WeightCacheBf16, PackedWeightsGiveFp32SumsOfBf16RoundedOperands) {
  const Packing packed(true);
  const nn::WeightCacheGuard cache;
  for (const Sizes& s : kSizes)
    for (bool accumulate : {false, true}) {
      nn::Linear<float> lin(s.in, s.out, true, 41);
      const auto b = normal(static_cast<std::size_t>(s.out), 42);
      std::copy(b.begin(), b.end(), lin.bias());
      nn::mark_weights_changed();
      const auto x = normal(static_cast<std::size_t>(s.M * s.in), 43);
      const auto dy = normal(static_cast<std::size_t>(s.M * s.out), 44);
      const auto dx0 = normal(static_cast<std::size_t>(s.M * s.in), 45);
      std::vector<float> y(static_cast<std::size_t>(s.M * s.out)), dx = dx0;
      for (int call = 0; call < 2; ++call) {  // the copy made, then reused
        lin.forward(x.data(), s.M, s.in, y.data(), s.out);
        dx = dx0;
        lin.backward(x.data(), s.in, dy.data(), s.out, s.M, dx.data(), s.in, accumulate);
        const double err_y =
            bf16_gemm_error(
                s.M, s.out, s.in, [&](auto m, auto i) { return x[m * s.in + i]; },
                [&](auto i, auto o) { return lin.weight()[o * s.in + i]; }, [&](auto, auto o) { return lin.bias()[o]; },
                [&](auto m, auto o) { return y[m * s.out + o]; })
                .rounded;
        const double err_dx = bf16_gemm_error(
                                  s.M, s.in, s.out, [&](auto m, auto o) { return dy[m * s.out + o]; },
                                  [&](auto o, auto i) { return lin.weight()[o * s.in + i]; },
                                  [&](auto m, auto i) { return accumulate ? dx0[m * s.in + i] : 0.0f; },
                                  [&](auto m, auto i) { return dx[m * s.in + i]; })
                                  .rounded;
        // fp32 accumulation of exact bf16 products: a few fp32 ulps of the magnitude sum.
        EXPECT_LE(err_y, 1e-6) << s.M << "x" << s.in << "x" << s.out << " call " << call;
        EXPECT_LE(err_dx, 1e-6) << s.M << "x" << s.in << "x" << s.out << " accumulate " << accumulate;
      }
    }
}

// The new weights after each kind of change: the kept copy's results equal per-call rounding of
// the changed W, which differ from the results before the change.
TEST_F(WeightCacheBf16, LinearSeesEveryKindOfWeightChange) {
  const std::int64_t M = 9, in = 24, out = 20;
  nn::Linear<float> lin(in, out, true, 8);
  const auto x = normal(static_cast<std::size_t>(M * in), 9);
  const auto dy = normal(static_cast<std::size_t>(M * out), 10);
  nn::AdamW opt(lin);
  const nn::WeightCacheGuard cache;
  LinearRun before = run_linear(lin, x, M, dy);
  auto check_changed = [&](const std::string& what) {
    const LinearRun cached = run_linear(lin, x, M, dy);
    // A new Linear holding the changed weights: its first call rounds them (equal to per-call
    // rounding by LinearEqualsPerCallRoundingBitForBit).
    nn::Linear<float> fresh(in, out, true, 0);
    std::memcpy(fresh.weight(), lin.weight(), sizeof(float) * in * out);
    std::memcpy(fresh.bias(), lin.bias(), sizeof(float) * out);
    const LinearRun per_call = run_linear(fresh, x, M, dy);
    expect_same(per_call, cached, what);
    EXPECT_NE(cached.y, before.y) << what << ": the change was not seen";
    before = cached;
  };
  // 1. an optimizer step (it marks the weights changed itself)
  lin.zero_grad();
  run_linear(lin, x, M, dy);
  opt.step(1e-2);
  check_changed("after AdamW::step");
  // 2. a state-dict load
  io::StateDict sd = io::state_dict(lin);
  {
    nn::Linear<float> other(in, out, true, 99);
    sd = io::state_dict(other);
  }
  io::load_state_dict(lin, sd);
  check_changed("after load_state_dict");
  // 3. a user write, then mark_weights_changed()
  for (std::int64_t i = 0; i < in * out; ++i) lin.weight()[i] *= -1.5f;
  nn::mark_weights_changed();
  check_changed("after a user write and mark_weights_changed()");
}

TEST_F(WeightCacheBf16, AnUnmarkedWriteIsServedStaleAndVerificationCatchesIt) {
  const std::int64_t M = 5, in = 16, out = 8;
  nn::Linear<float> lin(in, out, false, 12);
  const auto x = normal(static_cast<std::size_t>(M * in), 13);
  std::vector<float> y0(static_cast<std::size_t>(M * out)), y1(y0.size()), y2(y0.size());
  nn::set_weight_cache_verification(false);  // whatever ATTN_VERIFY_WEIGHT_CACHE says
  const nn::WeightCacheGuard cache;
  lin.forward(x.data(), M, in, y0.data(), out);
  for (std::int64_t i = 0; i < in * out; ++i) lin.weight()[i] += 1.0f;  // no mark
  lin.forward(x.data(), M, in, y1.data(), out);
  EXPECT_TRUE(same_bits(y0.data(), y1.data(), M * out)) << "the kept copy was not reused";
  nn::set_weight_cache_verification(true);
  try {
    lin.forward(x.data(), M, in, y2.data(), out);
    ADD_FAILURE() << "no error for weights written without mark_weights_changed()";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "weights");
    EXPECT_NE(std::string(e.what()).find("mark_weights_changed()"), std::string::npos) << e.what();
  }
  nn::mark_weights_changed();
  lin.forward(x.data(), M, in, y2.data(), out);  // marked: no error, the new weights
  nn::set_weight_cache_verification(false);
  EXPECT_FALSE(same_bits(y0.data(), y2.data(), M * out));
}

// MultiheadAttention: forward + backward with the kept copy equal per-call rounding bit for bit,
// again after an AdamW step, for each way the projections are grouped.
struct MhaRun {
  std::vector<float> out, dq, dk, dv, grads;
};

enum class Group { qkv, kv, separate };

MhaRun run_mha(nn::MultiheadAttention<float>& m, Group g, std::int64_t B, std::int64_t Lq, std::int64_t Lk) {
  const std::int64_t E = m.embed_dim();
  const auto q = normal(static_cast<std::size_t>(B * Lq * E), 21), k = normal(static_cast<std::size_t>(B * Lk * E), 22),
             v = normal(static_cast<std::size_t>(B * Lk * E), 23),
             dout = normal(static_cast<std::size_t>(B * Lq * E), 24);
  const TensorView qv(const_cast<float*>(q.data()), DType::f32, {B, Lq, E});
  const TensorView kv(const_cast<float*>(g == Group::qkv ? q.data() : k.data()), DType::f32,
                      {B, g == Group::qkv ? Lq : Lk, E});
  const TensorView vv(const_cast<float*>(g == Group::qkv  ? q.data()
                                         : g == Group::kv ? k.data()
                                                          : v.data()),
                      DType::f32, {B, g == Group::qkv ? Lq : Lk, E});
  m.zero_grad();
  nn::MhaOptions o;
  const Tensor out = m.forward(qv, kv, vv, o).out;
  const nn::MhaGrads gr = m.backward(TensorView(const_cast<float*>(dout.data()), DType::f32, {B, Lq, E}));
  MhaRun r;
  r.out.assign(out.ptr<float>(), out.ptr<float>() + out.numel());
  auto take = [](const Tensor& t, std::vector<float>& dst) {
    if (t.numel() > 0) dst.assign(t.ptr<float>(), t.ptr<float>() + t.numel());
  };
  take(gr.dquery, r.dq);
  take(gr.dkey, r.dk);
  take(gr.dvalue, r.dv);
  for (const nn::Parameter& p : m.parameters())
    r.grads.insert(r.grads.end(), static_cast<const float*>(p.grad.data),
                   static_cast<const float*>(p.grad.data) + p.grad.numel());
  return r;
}

void expect_same(const MhaRun& a, const MhaRun& b, const std::string& what) {
  EXPECT_EQ(a.out, b.out) << what << ": out";
  EXPECT_EQ(a.dq, b.dq) << what << ": dquery";
  EXPECT_EQ(a.dk, b.dk) << what << ": dkey";
  EXPECT_EQ(a.dv, b.dv) << what << ": dvalue";
  EXPECT_EQ(a.grads, b.grads) << what << ": parameter gradients";
}

// Plain copies: the same bits. Packed copies: oneDNN's kernel may sum in another order, so the
// module's outputs and gradients stay within 1e-5 of the largest element (fp32 sums of exact bf16
// products, carried through the SDPA) of per-call rounding.
void expect_same_or_close(const MhaRun& a, const MhaRun& b, bool bitwise, const std::string& what) {
  if (bitwise) return expect_same(a, b, what);
  const double tol = 1e-5;
  EXPECT_LE(rel_diff(a.out, b.out), tol) << what << ": out";
  EXPECT_LE(rel_diff(a.dq, b.dq), tol) << what << ": dquery";
  EXPECT_LE(rel_diff(a.dk, b.dk), tol) << what << ": dkey";
  EXPECT_LE(rel_diff(a.dv, b.dv), tol) << what << ": dvalue";
  EXPECT_LE(rel_diff(a.grads, b.grads), tol) << what << ": parameter gradients";
}

TEST_F(WeightCacheBf16, MultiheadAttentionEqualsPerCallRounding) {
  for (const bool packed : {false, true}) {
    const Packing packing(packed);
    struct Heads {
      std::int64_t Hq, Hkv;
      const char* name;
    };
    for (const Heads h : {Heads{4, 4, "mha"}, Heads{4, 2, "gqa"}, Heads{4, 1, "mqa"}})
      for (const Group g : {Group::qkv, Group::kv, Group::separate}) {
        nn::MultiheadAttention<float> m(mha_config(h.Hq, h.Hkv, 5));
        nn::AdamW opt(m);
        const std::int64_t B = 2, Lq = 7, Lk = g == Group::qkv ? 7 : 9;
        const std::string what = std::string(packed ? "packed " : "plain ") + h.name +
                                 (g == Group::qkv  ? " fused qkv"
                                  : g == Group::kv ? " fused kv"
                                                   : " separate");
        const MhaRun per_call = run_mha(m, g, B, Lq, Lk);
        MhaRun cached, stepped;
        {
          const nn::WeightCacheGuard cache;
          cached = run_mha(m, g, B, Lq, Lk);
          const MhaRun again = run_mha(m, g, B, Lq, Lk);
          expect_same_or_close(per_call, cached, !packed, what);
          expect_same(cached, again, what + ", reused");
          opt.step(1e-2);
          stepped = run_mha(m, g, B, Lq, Lk);
        }
        const MhaRun stepped_per_call = run_mha(m, g, B, Lq, Lk);
        expect_same_or_close(stepped_per_call, stepped, !packed, what + ", after AdamW::step");
        EXPECT_GT(rel_diff(stepped.out, cached.out), 1e-3) << what << ": the step was not seen";
      }
  }
}

TEST_F(WeightCacheBf16, CachedDecodingEqualsPerCallRounding) {
  nn::MultiheadAttention<float> m(mha_config(4, 2, 0));
  const std::int64_t B = 2, steps = 4;
  const auto x = normal(static_cast<std::size_t>(B * steps * 32), 31);
  auto decode = [&] {
    KvCache cache = m.make_cache(B, steps);
    std::vector<float> outs;
    for (std::int64_t t = 0; t < steps; ++t) {
      const TensorView xt(const_cast<float*>(x.data()) + t * 32, DType::f32, {B, 1, 32}, {steps * 32, 32, 1});
      const Tensor o = m.forward_cached(xt, xt, xt, cache);
      outs.insert(outs.end(), o.ptr<float>(), o.ptr<float>() + o.numel());
    }
    return outs;
  };
  const std::vector<float> per_call = decode();
  const nn::WeightCacheGuard cache;
  {
    const Packing plain(false);
    EXPECT_EQ(decode(), per_call);
  }
  const Packing packed(true);
  EXPECT_LE(rel_diff(decode(), per_call), 1e-5);
}

}  // namespace
}  // namespace attn::test
