// nn::RotaryEmbedding (RoPE; Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
// Embedding"). For token n of row b at position p = offsets[b] + n and pair i < rotary_dim/2:
//   θ_i = p · inv_freq_i,  inv_freq_i = 1 / base^(2i / rotary_dim)   (fp32, as Hugging Face)
//   (x1, x2) -> (x1·cos θ − x2·sin θ, x2·cos θ + x1·sin θ)   forward
//   (g1, g2) -> (g1·cos θ + g2·sin θ, g2·cos θ − g1·sin θ)   backward (the transpose)
// Pairs (i, i + rotary_dim/2) for half_split (GPT-NeoX / LLaMA), (2i, 2i + 1) for interleaved (GPT-J).
// cos/sin are computed once per (b, n) and shared by every head; tokens run in parallel.

#include "attn/nn/rotary.hpp"

#include <cmath>

#include "attn/error.hpp"

namespace attn::nn {

const char* rotary_convention_name(RotaryConvention convention) {
  return convention == RotaryConvention::half_split ? "half_split" : "interleaved";
}

RotaryEmbedding::RotaryEmbedding(std::int64_t head_dim, const RotaryConfig& config)
    : head_dim_(head_dim), rotary_dim_(config.rotary_dim == 0 ? head_dim : config.rotary_dim), config_(config) {
  ATTN_CHECK(head_dim_ >= 1, value, "head_dim", "= ", head_dim_, ", expected ≥ 1");
  ATTN_CHECK(rotary_dim_ >= 2 && rotary_dim_ % 2 == 0 && rotary_dim_ <= head_dim_, value, "rotary.rotary_dim",
             "rotary_dim = ", rotary_dim_, ", expected an even number in [2, head_dim = ", head_dim_, "]");
  ATTN_CHECK(config.base > 0 && std::isfinite(config.base), value, "rotary.base", "= ", config.base,
             ", expected a finite value > 0");
  config_.rotary_dim = rotary_dim_;
  const std::int64_t half = rotary_dim_ / 2;
  inv_freq_.resize(static_cast<std::size_t>(half));
  const auto base = static_cast<float>(config.base);
  for (std::int64_t i = 0; i < half; ++i)
    inv_freq_[static_cast<std::size_t>(i)] =
        1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(rotary_dim_));
}

float RotaryEmbedding::angle(std::int64_t position, std::int64_t pair) const {
  return static_cast<float>(position) * inv_freq_[static_cast<std::size_t>(pair)];
}

namespace {
template <class T>
void rotate_typed(const TensorView& x, const std::vector<float>& cos_t, const std::vector<float>& sin_t, std::int64_t b,
                  std::int64_t n, std::int64_t half, bool interleaved, bool inverse) {
  T* base = static_cast<T*>(x.data);
  const std::int64_t sd = x.strides[3];
  const std::int64_t step = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
  for (std::int64_t h = 0; h < x.shape[1]; ++h) {
    T* row = base + b * x.strides[0] + h * x.strides[1] + n * x.strides[2];
    for (std::int64_t i = 0; i < half; ++i) {
      T* p1 = row + i * step * sd;
      T* p2 = p1 + partner * sd;
      const T c = static_cast<T>(cos_t[static_cast<std::size_t>(i)]);
      const T s = inverse ? -static_cast<T>(sin_t[static_cast<std::size_t>(i)])
                          : static_cast<T>(sin_t[static_cast<std::size_t>(i)]);
      const T x1 = *p1, x2 = *p2;
      *p1 = x1 * c - x2 * s;
      *p2 = x2 * c + x1 * s;
    }
  }
}
}  // namespace

void RotaryEmbedding::rotate(const TensorView& x, const std::vector<std::int64_t>& offsets, bool inverse) const {
  ATTN_CHECK(x.rank == 4, shape, "x", "has rank ", x.rank, " (shape ", x.shape_string(), "), expected 4: [B, H, N, D]");
  ATTN_CHECK(x.dtype == DType::f32 || x.dtype == DType::f64, dtype, "x", "has dtype ", dtype_name(x.dtype),
             ", expected f32 or f64");
  ATTN_CHECK(x.shape[3] == head_dim_, shape, "x", "has shape ", x.shape_string(),
             ", expected head dim x.shape[3] = ", head_dim_);
  const std::int64_t B = x.shape[0], N = x.shape[2];
  ATTN_CHECK(offsets.size() <= 1 || static_cast<std::int64_t>(offsets.size()) == B, shape, "offsets", "has ", offsets.size(),
             " entries, expected 0, 1 or B = ", B);
  for (std::int64_t o : offsets) ATTN_CHECK(o >= 0, value, "offsets", "has an entry ", o, ", expected ≥ 0");
  const std::int64_t half = rotary_dim_ / 2;
  const bool interleaved = config_.convention == RotaryConvention::interleaved;
  // Tokens are independent: (b, n) in parallel once the call is large enough to pay for the threads.
  const bool parallel = B * N * x.shape[1] * head_dim_ >= (std::int64_t{1} << 15);
#pragma omp parallel if (parallel)
  {
    std::vector<float> cos_t(static_cast<std::size_t>(half)), sin_t(static_cast<std::size_t>(half));
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t n = 0; n < N; ++n) {
        const std::int64_t off = offsets.empty()       ? 0
                                 : offsets.size() == 1 ? offsets[0]
                                                       : offsets[static_cast<std::size_t>(b)];
        for (std::int64_t i = 0; i < half; ++i) {
          const float a = angle(off + n, i);
          cos_t[static_cast<std::size_t>(i)] = std::cos(a);
          sin_t[static_cast<std::size_t>(i)] = std::sin(a);
        }
        if (x.dtype == DType::f32)
          rotate_typed<float>(x, cos_t, sin_t, b, n, half, interleaved, inverse);
        else
          rotate_typed<double>(x, cos_t, sin_t, b, n, half, interleaved, inverse);
      }
  }
}

void RotaryEmbedding::forward(const TensorView& x, const std::vector<std::int64_t>& offsets) const {
  rotate(x, offsets, false);
}

void RotaryEmbedding::backward(const TensorView& dx, const std::vector<std::int64_t>& offsets) const {
  rotate(dx, offsets, true);
}

}  // namespace attn::nn
