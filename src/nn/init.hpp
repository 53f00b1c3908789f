#pragma once
// Seeded parameter initialisation for the nn modules: a SplitMix64 stream (Steele et al. 2014),
// so that the same seed gives the same weights on every platform and standard library.

#include <cmath>
#include <cstdint>

namespace attn::nn::detail {

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) {
    constexpr double kTwoPow53 = 9007199254740992.0;
    return lo + (hi - lo) * static_cast<double>(next() >> 11) / kTwoPow53;
  }

 private:
  std::uint64_t state_;
};

/// n values U(-bound, bound) from `seed`.
template <class T>
void fill_uniform(T* p, std::int64_t n, double bound, std::uint64_t seed) {
  SplitMix64 rng(seed);
  for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(rng.uniform(-bound, bound));
}

/// Xavier/Glorot uniform bound for a [fan_out, fan_in] weight: sqrt(6 / (fan_in + fan_out)).
inline double xavier_bound(std::int64_t fan_in, std::int64_t fan_out) {
  return std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
}

}  // namespace attn::nn::detail

namespace attn::nn::detail {

/// n values N(0, stddev²) from `seed` (Box–Muller on the SplitMix64 stream).
template <class T>
void fill_normal(T* p, std::int64_t n, double stddev, std::uint64_t seed) {
  SplitMix64 rng(seed);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (std::int64_t i = 0; i < n; i += 2) {
    const double u1 = 1.0 - rng.uniform(0.0, 1.0), u2 = rng.uniform(0.0, 1.0);  // u1 in (0, 1]
    const double r = stddev * std::sqrt(-2.0 * std::log(u1));
    p[i] = static_cast<T>(r * std::cos(kTwoPi * u2));
    if (i + 1 < n) p[i + 1] = static_cast<T>(r * std::sin(kTwoPi * u2));
  }
}

}  // namespace attn::nn::detail
