#pragma once
// The synthetic sequence-regression task of `attn train regression` (docs/training.md).
// Each sequence has L_b valid tokens (L_b uniform in [⌈L/2⌉, L]); token j carries a type
// t_j ∈ {plain, plus, minus} (plus and minus each with probability p/2) and a value x_j ~ U(−1, 1).
// The target is
//     y = (Σ_{1 ≤ j < L_b} s(t_{j−1})·x_j) / √((L − 1)·p/3),   s(plus) = +1, s(minus) = −1, s(plain) = 0:
// the values right after a "+" marker minus those right after a "−" marker, scaled to unit
// variance at full length. Each term needs the type of the *previous* token, so a model must move
// information between positions (attention can: attend to the previous position). Mixing by the
// sequence mean cannot: y is uncorrelated with every sum of per-token functions (E[s] = 0), so
// a model without attention stays near the trivial loss.

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace attn_cli {

struct RegressionTask {
  std::int64_t L = 32;
  double marker_rate = 0.25;  ///< p
};

/// A batch of B sequences: types [B·L] (0 plain, 1 plus, 2 minus; padding plain), values [B·L]
/// (padding 0), lengths [B], targets [B].
struct RegressionData {
  std::int64_t B = 0, L = 0;
  std::vector<std::int64_t> types, lengths;
  std::vector<float> values, targets;
};

inline RegressionData make_regression_batch(const RegressionTask& task, std::int64_t B, std::mt19937_64& rng) {
  RegressionData d;
  d.B = B;
  d.L = task.L;
  const std::int64_t L = task.L, Lmin = (L + 1) / 2;
  d.types.assign(static_cast<std::size_t>(B * L), 0);
  d.values.assign(static_cast<std::size_t>(B * L), 0.0f);
  std::uniform_real_distribution<double> u01(0.0, 1.0), value(-1.0, 1.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(L - 1) * task.marker_rate / 3.0);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t n = Lmin + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(L - Lmin + 1));
    d.lengths.push_back(n);
    double y = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double r = u01(rng);
      const std::int64_t t = r < task.marker_rate / 2 ? 1 : r < task.marker_rate ? 2 : 0;
      const double x = value(rng);
      d.types[static_cast<std::size_t>(b * L + j)] = t;
      d.values[static_cast<std::size_t>(b * L + j)] = static_cast<float>(x);
      if (j > 0) {
        const std::int64_t prev = d.types[static_cast<std::size_t>(b * L + j - 1)];
        y += prev == 1 ? x : prev == 2 ? -x : 0.0;
      }
    }
    d.targets.push_back(static_cast<float>(y * scale));
  }
  return d;
}

}  // namespace attn_cli
