// Consumer of the installed attn package: one causal sdpa_forward on BSHD buffers, checked against
// a hand-written loop, and one nn::Linear forward (the BLAS and, where libattn has it, oneDNN in
// bf16 that libattn links privately must reach the consumer's link line). Exit 0 = it works.

#include <attn/nn/linear.hpp>
#include <attn/nn/matmul_precision.hpp>
#include <attn/sdpa.hpp>
#include <attn/tensor.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const std::int64_t B = 2, H = 3, N = 5, D = 4;
  // BSHD memory: element (b, n, h, d) at ((b * N + n) * H + h) * D + d.
  std::vector<float> q(B * N * H * D), k(q.size()), v(q.size()), out(q.size());
  for (std::size_t e = 0; e < q.size(); ++e) {
    q[e] = std::sin(0.37f * static_cast<float>(e));
    k[e] = std::cos(0.23f * static_cast<float>(e));
    v[e] = std::sin(0.11f * static_cast<float>(e) + 1.0f);
  }
  const std::int64_t sb = N * H * D, sn = H * D, sh = D;
  auto bhsd = [&](std::vector<float>& buf) {
    return attn::TensorView(buf.data(), attn::DType::f32, {B, H, N, D}, {sb, sh, sn, 1});
  };
  attn::SdpaParams params;
  params.mask.causal = true;
  attn::sdpa_forward({bhsd(out), {}, {}}, bhsd(q), bhsd(k), bhsd(v), params);

  double max_err = 0.0;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < N; ++i) {
        std::vector<double> s(static_cast<std::size_t>(i + 1));
        double m = -INFINITY, l = 0.0;
        for (std::int64_t j = 0; j <= i; ++j) {
          double dot = 0.0;
          for (std::int64_t d = 0; d < D; ++d) dot += q[b * sb + i * sn + h * sh + d] * k[b * sb + j * sn + h * sh + d];
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        for (double& x : s) l += (x = std::exp(x - m));
        for (std::int64_t d = 0; d < D; ++d) {
          double o = 0.0;
          for (std::int64_t j = 0; j <= i; ++j) o += s[j] / l * v[b * sb + j * sn + h * sh + d];
          max_err = std::max(max_err, std::abs(o - out[b * sb + i * sn + h * sh + d]));
        }
      }
  // y = x·Wᵀ of a 3 -> 2 Linear, in fp32 and (when available) with bf16 matmuls.
  attn::nn::Linear<float> lin(3, 2, false, 1);
  const float x[3] = {0.5f, -1.0f, 2.0f};
  double lin_err = 0.0;
  for (bool bf16 : {false, true}) {
    if (bf16 && !attn::nn::bf16_matmul_available()) continue;
    const attn::nn::MatmulPrecisionGuard guard(bf16 ? attn::nn::MatmulPrecision::bf16 : attn::nn::MatmulPrecision::f32);
    float y[2];
    lin.forward(x, 1, 3, y, 2);
    for (int o = 0; o < 2; ++o) {
      double ref = 0.0;
      for (int i = 0; i < 3; ++i) ref += lin.weight()[o * 3 + i] * x[i];
      lin_err = std::max(lin_err, std::abs(ref - y[o]) / (bf16 ? 1e-2 : 1e-6));
    }
  }
  std::printf("attn %s consumer: max abs error %.3g, Linear %s (bf16 matmuls: %s)\n", attn::version(), max_err,
              lin_err <= 1.0 ? "ok" : "WRONG", attn::nn::bf16_matmul_available() ? "yes" : "no");
  return max_err < 1e-5 && lin_err <= 1.0 ? 0 : 1;
}
