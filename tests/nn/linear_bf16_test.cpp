// nn::set_float32_matmul_precision(bf16) (src/nn/gemm_bf16.cpp, src/nn/linear.cpp): Linear's
// forward and backward against fp64 sums of the bf16-rounded operands (rounded here, by the test's
// own round-to-nearest-even), odd sizes and a strided input; the rounding must be visible (far
// from the unrounded fp32 result), f64 modules ignore the setting, MultiheadAttention follows it.

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/nn/multihead_attention.hpp"
#include "attn/sdpa.hpp"
#include "cpu/sdpa_case.hpp"
#include "nn/bf16_reference.hpp"
#include "nn/gemm_bf16.hpp"

namespace attn::test {
namespace {

struct Sizes {
  std::int64_t M, in, out;
};
const Sizes kSizes[] = {{1, 1, 1}, {7, 7, 5}, {65, 33, 64}, {63, 130, 17}, {128, 64, 96}};

TEST(LinearBf16, ForwardIsTheFp32SumOfBf16RoundedOperands) {
  SKIP_WITHOUT_DNNL();
  const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
  for (const Sizes& s : kSizes) {
    for (bool bias : {true, false}) {
      nn::Linear<float> lin(s.in, s.out, bias, 11);
      if (bias) {
        const auto b = normal(static_cast<std::size_t>(s.out), 12);
        std::copy(b.begin(), b.end(), lin.bias());
      }
      const std::int64_t ldx = s.in + 3, ldy = s.out + 2;  // strided rows in and out
      const auto x = normal(static_cast<std::size_t>(s.M * ldx), 13 + s.M);
      std::vector<float> y(static_cast<std::size_t>(s.M * ldy), -7.0f);
      lin.forward(x.data(), s.M, ldx, y.data(), ldy);
      const Bf16GemmError e = bf16_gemm_error(
          s.M, s.out, s.in, [&](auto m, auto i) { return x[m * ldx + i]; },
          [&](auto i, auto o) { return lin.weight()[o * s.in + i]; },
          [&](auto, auto o) { return bias ? lin.bias()[o] : 0.0f; }, [&](auto m, auto o) { return y[m * ldy + o]; });
      const double err = e.rounded, err_unrounded = e.unrounded;
      // fp32 accumulation of exact bf16 products: a few fp32 ulps of the magnitude sum.
      EXPECT_LE(err, 1e-6) << s.M << "x" << s.in << "x" << s.out << " bias " << bias;
      // The inputs really were rounded: bf16 keeps 8 bits, so some output is off by ≫ fp32 ulps.
      if (s.in >= 7) {
        EXPECT_GE(err_unrounded, 1e-4) << s.M << "x" << s.in << "x" << s.out;
      }
      for (std::int64_t m = 0; m < s.M; ++m)  // the gap between output rows is untouched
        for (std::int64_t o = s.out; o < ldy; ++o) ASSERT_EQ(y[m * ldy + o], -7.0f);
    }
  }
}

TEST(LinearBf16, BackwardIsTheFp32SumOfBf16RoundedOperands) {
  SKIP_WITHOUT_DNNL();
  const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
  for (const Sizes& s : kSizes) {
    for (bool accumulate : {false, true}) {
      nn::Linear<float> lin(s.in, s.out, true, 21);
      const auto dw0 = normal(static_cast<std::size_t>(s.out * s.in), 22);
      const auto db0 = normal(static_cast<std::size_t>(s.out), 23);
      std::copy(dw0.begin(), dw0.end(), lin.weight_grad());
      std::copy(db0.begin(), db0.end(), lin.bias_grad());
      const auto x = normal(static_cast<std::size_t>(s.M * s.in), 24);
      const auto dy = normal(static_cast<std::size_t>(s.M * s.out), 25);
      const auto dx0 = normal(static_cast<std::size_t>(s.M * s.in), 26);
      std::vector<float> dx = dx0;
      lin.backward(x.data(), s.in, dy.data(), s.out, s.M, dx.data(), s.in, accumulate);
      const double err_dx = bf16_gemm_error(
                                s.M, s.in, s.out, [&](auto m, auto o) { return dy[m * s.out + o]; },
                                [&](auto o, auto i) { return lin.weight()[o * s.in + i]; },
                                [&](auto m, auto i) { return accumulate ? dx0[m * s.in + i] : 0.0f; },
                                [&](auto m, auto i) { return dx[m * s.in + i]; })
                                .rounded;
      const double err_dw =
          bf16_gemm_error(
              s.out, s.in, s.M, [&](auto o, auto m) { return dy[m * s.out + o]; },
              [&](auto m, auto i) { return x[m * s.in + i]; }, [&](auto o, auto i) { return dw0[o * s.in + i]; },
              [&](auto o, auto i) { return lin.weight_grad()[o * s.in + i]; })
              .rounded;
      double err_db = 0;
      for (std::int64_t o = 0; o < s.out; ++o) {
        double ref = db0[o], mag = std::abs(ref);  // db sums the fp32 dy, unrounded
        for (std::int64_t m = 0; m < s.M; ++m) {
          ref += dy[m * s.out + o];
          mag += std::abs(dy[m * s.out + o]);
        }
        err_db = std::max(err_db, std::abs(lin.bias_grad()[o] - ref) / (mag + 1e-30));
      }
      EXPECT_LE(err_dx, 1e-6) << s.M << "x" << s.in << "x" << s.out << " accumulate " << accumulate;
      EXPECT_LE(err_dw, 1e-6) << s.M << "x" << s.in << "x" << s.out;
      EXPECT_LE(err_db, 1e-6) << s.M << "x" << s.in << "x" << s.out;
    }
  }
}

// A module that rounds x once (forward given x16, then backward given the same x16) gets the bits
// of the calls that round x themselves.
TEST(LinearBf16, CallsGivenTheRoundedInputEqualCallsThatRoundIt) {
  SKIP_WITHOUT_DNNL();
  const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
  for (const Sizes& s : kSizes)
    for (bool bias : {true, false}) {
      nn::Linear<float> lin(s.in, s.out, bias, 51);
      if (bias) {
        const auto b = normal(static_cast<std::size_t>(s.out), 52);
        std::copy(b.begin(), b.end(), lin.bias());
      }
      const std::int64_t ldx = s.in + 1;
      const auto x = normal(static_cast<std::size_t>(s.M * ldx), 53);
      const auto dy = normal(static_cast<std::size_t>(s.M * s.out), 54);
      std::vector<std::uint16_t> x16(static_cast<std::size_t>(s.M * s.in));
      nn::detail::round_rows_to_bf16(x.data(), s.M, s.in, ldx, x16.data(), s.in);
      std::vector<float> y(static_cast<std::size_t>(s.M * s.out)), y16(y.size()),
          dx(static_cast<std::size_t>(s.M * s.in)), dx16(dx.size());
      lin.forward(x.data(), s.M, ldx, y.data(), s.out);
      lin.forward(x.data(), s.M, ldx, y16.data(), s.out, x16.data());
      lin.zero_grad();
      lin.backward(x.data(), ldx, dy.data(), s.out, s.M, dx.data(), s.in);
      const std::vector<float> dw(lin.weight_grad(), lin.weight_grad() + s.out * s.in);
      lin.zero_grad();
      lin.backward(x.data(), ldx, dy.data(), s.out, s.M, dx16.data(), s.in, false, x16.data(), s.in);
      const std::vector<float> dw16(lin.weight_grad(), lin.weight_grad() + s.out * s.in);
      EXPECT_EQ(y, y16) << s.M << "x" << s.in << "x" << s.out << " bias " << bias;
      EXPECT_EQ(dx, dx16) << s.M << "x" << s.in << "x" << s.out;
      EXPECT_EQ(dw, dw16) << s.M << "x" << s.in << "x" << s.out;
    }
}

// Under bf16 matmuls MultiheadAttention rounds each input and ctx once in its forward and hands
// those roundings to its backward's dW GEMMs: the same bits as the composition below of its own
// Linears (each rounding its operands at every call) and the SDPA, for fused QKV, fused KV and
// separate projections, with random biases.
TEST(LinearBf16, MultiheadAttentionEqualsItsLinearsAndSdpaComposed) {
  SKIP_WITHOUT_DNNL();
  const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
  enum class Group { qkv, kv, separate };
  for (const Group g : {Group::qkv, Group::kv, Group::separate}) {
    const std::int64_t B = 2, Lq = 7, Lk = g == Group::qkv ? 7 : 9, E = 32, Hq = 4, Hkv = 2, hd = E / Hq, kv = Hkv * hd;
    const std::int64_t Mq = B * Lq, Mk = B * Lk;
    SCOPED_TRACE(g == Group::qkv ? "fused qkv" : g == Group::kv ? "fused kv" : "separate");
    nn::MhaConfig c;
    c.embed_dim = E;
    c.num_heads = Hq;
    c.num_kv_heads = Hkv;
    c.batch_first = true;
    c.seed = 9;
    nn::MultiheadAttention<float> m(c);
    for (const nn::Parameter& p : m.parameters())
      if (p.name.find("bias") != std::string::npos) {
        const auto b = normal(static_cast<std::size_t>(p.value.numel()), 60 + p.value.numel());
        std::copy(b.begin(), b.end(), static_cast<float*>(p.value.data));
      }
    const auto q = normal(static_cast<std::size_t>(Mq * E), 61), k = normal(static_cast<std::size_t>(Mk * E), 62),
               v = normal(static_cast<std::size_t>(Mk * E), 63), dout = normal(static_cast<std::size_t>(Mq * E), 64);
    const float* xk = g == Group::qkv ? q.data() : k.data();
    const float* xv = g == Group::qkv ? q.data() : g == Group::kv ? k.data() : v.data();
    const TensorView qv(const_cast<float*>(q.data()), DType::f32, {B, Lq, E});
    const TensorView kv_in(const_cast<float*>(xk), DType::f32, {B, Lk, E}),
        vv_in(const_cast<float*>(xv), DType::f32, {B, Lk, E});
    auto grads = [&] {
      std::vector<float> r;
      for (const nn::Parameter& p : m.parameters())
        r.insert(r.end(), static_cast<const float*>(p.grad.data),
                 static_cast<const float*>(p.grad.data) + p.grad.numel());
      return r;
    };
    m.zero_grad();
    const Tensor out = m.forward(qv, kv_in, vv_in).out;
    const nn::MhaGrads mg = m.backward(TensorView(const_cast<float*>(dout.data()), DType::f32, {B, Lq, E}));
    const std::vector<float> module_grads = grads();

    // The composition: the module's Linears (a fused one over [W_q; W_k; W_v] or [W_k; W_v] where
    // the module fuses), the SDPA on strided head views, the backward in reverse.
    m.zero_grad();
    nn::Linear<float>&lq = m.q_proj(), &lk = m.k_proj(), &lv = m.v_proj(), &lo = m.out_proj();
    std::vector<float> qp(static_cast<std::size_t>(Mq * E)), kvp(static_cast<std::size_t>(Mk * 2 * kv)),
        qkvp(static_cast<std::size_t>(Mq * (E + 2 * kv)));
    float *pq = qp.data(), *pk = kvp.data(), *pv = kvp.data() + kv;
    std::int64_t ldq = E, ldkv = 2 * kv;
    if (g == Group::qkv) {
      nn::Linear<float> fused(E, E + 2 * kv, lq.weight(), lq.weight_grad(), lq.bias(), lq.bias_grad());
      fused.share_bf16_weights(lq);
      fused.forward(q.data(), Mq, E, qkvp.data(), E + 2 * kv);
      pq = qkvp.data(), pk = pq + E, pv = pk + kv, ldq = ldkv = E + 2 * kv;
    } else {
      lq.forward(q.data(), Mq, E, qp.data(), E);
      if (g == Group::kv) {
        nn::Linear<float> fused(E, 2 * kv, lk.weight(), lk.weight_grad(), lk.bias(), lk.bias_grad());
        fused.share_bf16_weights(lk);
        fused.forward(xk, Mk, E, pk, ldkv);
      } else {
        lk.forward(xk, Mk, E, pk, ldkv);
        lv.forward(xv, Mk, E, pv, ldkv);
      }
    }
    auto heads = [&](float* p, std::int64_t ld, std::int64_t H, std::int64_t L) {
      return TensorView(p, DType::f32, {B, H, L, hd}, {L * ld, hd, ld, 1});
    };
    std::vector<float> ctx(static_cast<std::size_t>(Mq * E)), y(ctx.size()), dctx(ctx.size()), dq(ctx.size()),
        dk(static_cast<std::size_t>(Mk * kv)), dv(dk.size()), dxq(ctx.size()), dxk(static_cast<std::size_t>(Mk * E)),
        dxv(dxk.size());
    Tensor lse(DType::f32, {B, Hq, Lq});
    SdpaParams sp;
    const TensorView qh = heads(pq, ldq, Hq, Lq), kh = heads(pk, ldkv, Hkv, Lk), vh = heads(pv, ldkv, Hkv, Lk),
                     ch = heads(ctx.data(), E, Hq, Lq);
    sdpa_forward({ch, lse.view(), {}}, qh, kh, vh, sp);
    lo.forward(ctx.data(), Mq, E, y.data(), E);
    lo.backward(ctx.data(), E, dout.data(), E, Mq, dctx.data(), E);
    sdpa_backward({heads(dq.data(), E, Hq, Lq), heads(dk.data(), kv, Hkv, Lk), heads(dv.data(), kv, Hkv, Lk), {}},
                  heads(dctx.data(), E, Hq, Lq), qh, kh, vh, ch, lse.view(), sp);
    lq.backward(q.data(), E, dq.data(), E, Mq, dxq.data(), E);
    float* dk_to = g == Group::qkv ? dxq.data() : dxk.data();
    float* dv_to = g == Group::qkv ? dxq.data() : g == Group::kv ? dxk.data() : dxv.data();
    lk.backward(xk, E, dk.data(), kv, Mk, dk_to, E, g == Group::qkv);
    lv.backward(xv, E, dv.data(), kv, Mk, dv_to, E, g != Group::separate);

    EXPECT_EQ(std::vector<float>(out.ptr<float>(), out.ptr<float>() + out.numel()), y);
    EXPECT_EQ(std::vector<float>(mg.dquery.ptr<float>(), mg.dquery.ptr<float>() + mg.dquery.numel()), dxq);
    if (g != Group::qkv) {
      EXPECT_EQ(std::vector<float>(mg.dkey.ptr<float>(), mg.dkey.ptr<float>() + mg.dkey.numel()), dxk);
    }
    if (g == Group::separate) {
      EXPECT_EQ(std::vector<float>(mg.dvalue.ptr<float>(), mg.dvalue.ptr<float>() + mg.dvalue.numel()), dxv);
    }
    EXPECT_EQ(module_grads, grads());
  }
}

TEST(LinearBf16, F64ModulesIgnoreTheSettingAndTheGuardRestoresIt) {
  SKIP_WITHOUT_DNNL();
  ASSERT_EQ(nn::float32_matmul_precision(), nn::MatmulPrecision::f32);
  nn::Linear<double> lin(9, 4, false, 5);
  std::vector<double> x(18);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.1 + 0.37 * static_cast<double>(i);
  std::vector<double> y(8);
  {
    const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
    EXPECT_EQ(nn::float32_matmul_precision(), nn::MatmulPrecision::bf16);
    lin.forward(x.data(), 2, 9, y.data(), 4);
  }
  EXPECT_EQ(nn::float32_matmul_precision(), nn::MatmulPrecision::f32);
  for (std::int64_t m = 0; m < 2; ++m)
    for (std::int64_t o = 0; o < 4; ++o) {
      double ref = 0;
      for (std::int64_t i = 0; i < 9; ++i) ref += x[m * 9 + i] * lin.weight()[o * 9 + i];
      EXPECT_NEAR(y[m * 4 + o], ref, 1e-12);
    }
}

TEST(LinearBf16, MultiheadAttentionFollowsTheSetting) {
  SKIP_WITHOUT_DNNL();
  nn::MhaConfig c;
  c.embed_dim = 64;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.batch_first = true;
  c.seed = 3;
  nn::MultiheadAttention<float> mha(c);
  auto x = normal(2 * 9 * 64, 31);
  const TensorView xv(x.data(), DType::f32, {2, 9, 64});
  const Tensor ref = mha.forward(xv, xv, xv).out;
  Tensor low;
  {
    const nn::MatmulPrecisionGuard guard(nn::MatmulPrecision::bf16);
    low = mha.forward(xv, xv, xv).out;
  }
  const float* a = ref.ptr<float>();
  const float* b = low.ptr<float>();
  double diff = 0, mag = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    mag = std::max(mag, static_cast<double>(std::abs(a[i])));
  }
  EXPECT_GT(diff, 0.0);         // the projections ran in bf16 ...
  EXPECT_LE(diff, 2e-2 * mag);  // ... and stay close to fp32
}

TEST(LinearBf16, RowRoundingEqualsTheScalarConversion) {
  // Ties both ways, NaN (stays a quiet NaN), ±Inf, the largest float (rounds to Inf), denormals.
  std::vector<float> v = {1.0f, -2.5f, std::bit_cast<float>(0x3F808000u), std::bit_cast<float>(0x3F818000u),
                          std::bit_cast<float>(0x7FC00001u), std::bit_cast<float>(0x7F800001u), INFINITY, -INFINITY,
                          3.4028235e38f, 1e-40f, -0.0f};
  const auto r = normal(84000, 41);
  v.insert(v.end(), r.begin(), r.end());
  const std::int64_t rows = static_cast<std::int64_t>(v.size()) / 11, cols = 11;  // 7637 rows: ≥ 2^16 elements, the threaded branch
  // Every ISA's loop (round_bf16_<isa>.cpp), picked by the cpu backend's ISA setting, on full rows
  // and on a short strided block (a vector loop's remainder).
  for (const std::string& isa : test::supported_isas()) {
    test::IsaScope scope(isa);
    SCOPED_TRACE(isa);
    std::vector<std::uint16_t> out(static_cast<std::size_t>(rows * (cols + 1)), 0xABCD);
    nn::detail::round_rows_to_bf16(v.data(), rows, cols, cols, out.data(), cols + 1);
    for (std::int64_t i = 0; i < rows; ++i) {
      for (std::int64_t j = 0; j < cols; ++j)
        ASSERT_EQ(out[i * (cols + 1) + j], f32_to_bf16(v[i * cols + j])) << i << "," << j;
      ASSERT_EQ(out[i * (cols + 1) + cols], 0xABCD);
    }
    std::vector<std::uint16_t> wide(static_cast<std::size_t>(3 * 40), 0xABCD);
    nn::detail::round_rows_to_bf16(v.data(), 3, 37, 41, wide.data(), 40);
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t j = 0; j < 40; ++j)
        ASSERT_EQ(wide[i * 40 + j], j < 37 ? f32_to_bf16(v[i * 41 + j]) : 0xABCD) << i << "," << j;
  }
}

TEST(LinearBf16, PrecisionNames) {
  EXPECT_EQ(nn::matmul_precision_from_string("bf16"), nn::MatmulPrecision::bf16);
  EXPECT_EQ(nn::matmul_precision_from_string("f32"), nn::MatmulPrecision::f32);
  EXPECT_STREQ(nn::matmul_precision_name(nn::MatmulPrecision::bf16), "bf16");
  try {
    nn::matmul_precision_from_string("fp8", "--precision");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "--precision");
    EXPECT_NE(std::string(e.what()).find("\"fp8\""), std::string::npos) << e.what();
  }
  if (!nn::bf16_matmul_available()) {
    EXPECT_THROW(nn::set_float32_matmul_precision(nn::MatmulPrecision::bf16), Error);
  }
}

}  // namespace
}  // namespace attn::test
