// FAVOR+ orthogonal random features (Choromanski et al. 2021, "Rethinking Attention with
// Performers", §2.4 orthogonal random features): ω [m, D] is built from ⌈m/D⌉ independent blocks;
// each block is a D×D Gaussian matrix whose rows are orthonormalised by modified Gram–Schmidt
// (fp64), and row l of the result is scaled by the norm of its own D-dimensional Gaussian vector,
// so every row is marginally N(0, I_D) while rows inside a block are exactly orthogonal. The last
// block keeps its first m mod D rows. Normals come from Philox4x32-10 (core/philox.hpp) through
// Box–Muller, so a seed gives the same ω on every platform and compiler.

#include <cmath>
#include <numbers>
#include <vector>

#include "attn/error.hpp"
#include "attn/linear_attention.hpp"
#include "core/philox.hpp"

namespace attn {
namespace {

// Standard normal number `i` of the stream of `seed`.
double normal(std::uint64_t seed, std::uint64_t i) {
  const core::PhiloxBlock w = core::philox4x32_10(
      {static_cast<std::uint32_t>(i >> 1), static_cast<std::uint32_t>(i >> 33), 0x4641564Fu /* "FAVO" */, 0u},
      {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
  const double u1 = (static_cast<double>(w[0]) + 0.5) / 4294967296.0;
  const double u2 = (static_cast<double>(w[1]) + 0.5) / 4294967296.0;
  const double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * std::numbers::pi * u2;
  return (i & 1u) ? r * std::sin(a) : r * std::cos(a);
}

}  // namespace

void favor_projection(const TensorView& omega, std::uint64_t seed) {
  ATTN_CHECK(omega.defined() && omega.rank == 2, shape, "omega", "has rank ", omega.rank, ", expected rank 2 [m, D]");
  ATTN_CHECK(omega.dtype == DType::f32 || omega.dtype == DType::f64, dtype, "omega", "has dtype ",
             dtype_name(omega.dtype), ", expected f32 or f64");
  const std::int64_t m = omega.shape[0], D = omega.shape[1];
  ATTN_CHECK(m >= 1 && D >= 1, shape, "omega", "has shape ", omega.shape_string(), ", expected m >= 1 and D >= 1");
  ATTN_CHECK(omega.data != nullptr, layout, "omega", "has a null data pointer, expected a data pointer");
  std::uint64_t next = 0;
  const auto Du = static_cast<std::size_t>(D);
  std::vector<double> block(Du * Du);
  for (std::int64_t r0 = 0; r0 < m; r0 += D) {
    for (double& x : block) x = normal(seed, next++);
    for (std::size_t r = 0; r < Du; ++r) {  // modified Gram–Schmidt on the rows
      double* a = &block[r * Du];
      for (std::size_t s = 0; s < r; ++s) {
        const double* e = &block[s * Du];
        double dot = 0.0;
        for (std::size_t d = 0; d < Du; ++d) dot += a[d] * e[d];
        for (std::size_t d = 0; d < Du; ++d) a[d] -= dot * e[d];
      }
      double norm = 0.0;
      for (std::size_t d = 0; d < Du; ++d) norm += a[d] * a[d];
      norm = std::sqrt(norm);
      for (std::size_t d = 0; d < Du; ++d) a[d] /= norm;  // a Gaussian matrix has full rank almost surely
    }
    for (std::int64_t r = 0; r < D && r0 + r < m; ++r) {
      double len = 0.0;  // norm of an independent Gaussian vector: the row's length (χ_D)
      for (std::int64_t d = 0; d < D; ++d) {
        const double x = normal(seed, next++);
        len += x * x;
      }
      len = std::sqrt(len);
      for (std::int64_t d = 0; d < D; ++d)
        store_f64(omega, (r0 + r) * omega.strides[0] + d * omega.strides[1],
                  len * block[static_cast<std::size_t>(r * D + d)]);
    }
  }
}

}  // namespace attn
