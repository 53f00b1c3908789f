#pragma once
// Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11) and the dropout keep rule of docs/contract.md §7: key = seed (64 bit), counter =
// (j >> 2, i, b·Hq + h, offset), word j & 3; keep iff word >= floor(p·2^32). Every backend uses this
// one function, so forward, backward and reference agree bit for bit.

#include <array>
#include <cstdint>

namespace attn::core {

inline constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

using PhiloxBlock = std::array<std::uint32_t, 4>;

inline PhiloxBlock philox4x32_10(PhiloxBlock ctr, std::array<std::uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxM0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxM1) * ctr[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    key[0] += kPhiloxW0;
    key[1] += kPhiloxW1;
  }
  return ctr;
}

/// The four keep words for keys 4·(j>>2) .. 4·(j>>2)+3 of query row i, head bh = b·Hq + h.
inline PhiloxBlock dropout_words(std::uint64_t seed, std::uint64_t offset, std::int64_t bh, std::int64_t i, std::int64_t j) {
  const PhiloxBlock ctr{static_cast<std::uint32_t>(j >> 2), static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(bh),
                        static_cast<std::uint32_t>(offset)};
  return philox4x32_10(ctr, {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
}

/// Keep decision of element (b·Hq + h, i, j).
inline bool dropout_keep(std::uint64_t seed, std::uint64_t offset, std::uint32_t threshold, std::int64_t bh, std::int64_t i,
                         std::int64_t j) {
  return dropout_words(seed, offset, bh, i, j)[static_cast<std::size_t>(j & 3)] >= threshold;
}

}  // namespace attn::core
