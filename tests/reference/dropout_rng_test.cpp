// The dropout RNG of docs/contract.md §7 (src/core/philox.hpp) and the reference forward's use of it:
// Philox4x32-10 against Random123's published known-answer vectors (its tests/kat_vectors), then
// keep decisions of the reference forward against keep bits computed here from the raw words.

#include <gtest/gtest.h>

#include <cmath>

#include "attn/sdpa.hpp"
#include "common/test_util.hpp"
#include "core/philox.hpp"

namespace attn::test {
namespace {

TEST(RefDropoutRng, Philox4x32_10KnownAnswers) {
  struct Kat {
    core::PhiloxBlock ctr;
    std::array<std::uint32_t, 2> key;
    core::PhiloxBlock want;
  };
  // Random123 tests/kat_vectors, "philox4x32 10" lines: counter, key, expected output.
  const Kat kats[] = {
      {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
       {0x00000000, 0x00000000},
       {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) EXPECT_EQ(core::philox4x32_10(k.ctr, k.key), k.want);
}

// Which entries of probs (post_dropout) are zero must follow the keep rule of §5, computed here:
// key = (seed lo, seed hi), counter = (j >> 2, i, b·Hq + h, offset lo), word j & 3, keep iff
// word >= floor(p·2^32).
TEST(RefDropoutRng, ForwardKeepBitsFollowPhiloxWords) {
  constexpr std::int64_t B = 2, Hq = 3, Nq = 5, Nk = 11;
  const Qkv x = make_qkv(B, Hq, 1, Nq, Nk, 4, 2, DType::f64, Layout::bhsd, 171);
  SdpaParams params;
  params.backend = Backend::reference;
  params.dropout_p = 0.375;
  params.dropout_seed = 0x0123456789abcdefull;
  params.dropout_offset = 0x500000007ull;  // only the low 32 bits enter the counter
  const Outputs o = forward(x, params, /*with_probs=*/true);
  const auto threshold = static_cast<std::uint32_t>(0.375 * 4294967296.0);  // exact: 0x60000000
  ASSERT_EQ(threshold, 0x60000000u);
  int kept = 0, dropped = 0;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < Hq; ++h)
      for (std::int64_t i = 0; i < Nq; ++i)
        for (std::int64_t j = 0; j < Nk; ++j) {
          const core::PhiloxBlock ctr{static_cast<std::uint32_t>(j >> 2), static_cast<std::uint32_t>(i),
                                      static_cast<std::uint32_t>(b * Hq + h), 7u};
          const core::PhiloxBlock w = core::philox4x32_10(ctr, {0x89abcdefu, 0x01234567u});
          const bool keep = w[static_cast<std::size_t>(j & 3)] >= threshold;
          (keep ? kept : dropped)++;
          EXPECT_EQ(at(o.probs, b, h, i, j) != 0.0, keep) << "b=" << b << " h=" << h << " i=" << i << " j=" << j;
        }
  EXPECT_GT(kept, 0);
  EXPECT_GT(dropped, 0);
}

}  // namespace
}  // namespace attn::test
