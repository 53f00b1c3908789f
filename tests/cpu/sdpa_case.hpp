#pragma once
// SdpaCase: one printable test case of the fast-path grid (STYLE.md: one test struct per op), the
// set-up of its inputs and masks, and a seeded covering sample of the grid: every value of every
// axis appears, and cases are chosen greedily to cover as many not-yet-covered pairs of axis
// values as possible (all pairs, given enough cases).

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/test_util.hpp"
#include "cpu/isa.hpp"

namespace attn::test {

enum class MaskKind {
  none, causal_top_left, causal_bottom_right, window, padding, causal_padding_window, bias, bool_mask, alibi, softcap,
  bias_alibi_softcap, block_mask, mask_mod, score_mod, varlen, dropout, causal_dropout
};
inline constexpr MaskKind kAllMasks[] = {
    MaskKind::none, MaskKind::causal_top_left, MaskKind::causal_bottom_right, MaskKind::window, MaskKind::padding,
    MaskKind::causal_padding_window, MaskKind::bias, MaskKind::bool_mask, MaskKind::alibi, MaskKind::softcap,
    MaskKind::bias_alibi_softcap, MaskKind::block_mask, MaskKind::mask_mod, MaskKind::score_mod, MaskKind::varlen,
    MaskKind::dropout, MaskKind::causal_dropout};

inline const char* mask_name(MaskKind m) {
  constexpr const char* names[] = {"none",  "causal_tl", "causal_br", "window",  "padding",  "causal_pad_win",
                                   "bias",  "bool",      "alibi",     "softcap", "bias_alibi_softcap", "block",
                                   "mask_mod", "score_mod", "varlen", "dropout", "causal_dropout"};
  return names[static_cast<int>(m)];
}

struct SdpaCase {
  std::int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 16, Dv = 16;
  DType dtype = DType::f32;
  MaskKind mask = MaskKind::none;
  Layout layout = Layout::bhsd;
  std::uint64_t seed = 1;

  std::string name() const {
    std::ostringstream os;
    os << dtype_name(dtype) << "_B" << B << "_H" << Hq << "x" << Hkv << "_Nq" << Nq << "_Nk" << Nk << "_D" << D << "_Dv" << Dv
       << "_" << mask_name(mask) << "_" << layout_name(layout) << "_s" << seed;
    return os.str();
  }
  /// Multiply-adds of the dense problem (to bound the reference's cost).
  double macs() const { return static_cast<double>(B) * Hq * Nq * Nk * (D + Dv); }
};

/// Inputs, masks and params of a case; owns every tensor the params point to.
struct CaseSetup {
  Qkv x;
  GuardedTensor bias, bool_mask, block_keep;
  SdpaParams params;
};

/// Every compiled ISA this CPU runs (tests force each in turn); ATTN_TEST_ISAS="avx512,avx2" keeps
/// only those listed (the reruns of tests/CMakeLists.txt that vary an ISA-independent scheme use it
/// to stay short).
inline std::vector<std::string> supported_isas() {
  std::set<std::string> only;
  if (const char* env = std::getenv("ATTN_TEST_ISAS")) {
    std::stringstream list(env);
    for (std::string name; std::getline(list, name, ',');) only.insert(name);
  }
  std::vector<std::string> r;
  for (const auto& name : cpu::compiled_isas())
    if (cpu::isa_supported(name) && (only.empty() || only.count(name))) r.push_back(name);
  if (r.empty()) r.push_back("scalar");  // a CPU with none of the listed ISAs
  return r;
}

/// (ISA, dtype) parameters of the covering-sample suites: every runnable ISA × f32/bf16/f16.
/// amx_emu (the tile kernels on the emulated tiles) differs from scalar only in its bf16 forward,
/// so it runs only there (`forward`), in bf16.
using IsaDtype = std::tuple<std::string, DType>;
inline std::vector<IsaDtype> isa_dtype_params(bool forward) {
  std::vector<IsaDtype> r;
  for (const auto& isa : supported_isas()) {
    if (isa == "amx_emu") {
      if (forward) r.emplace_back(isa, DType::bf16);
      continue;
    }
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) r.emplace_back(isa, dt);
  }
  return r;
}
/// gtest name of one parameter: "avx2_bf16".
inline std::string isa_dtype_name(const ::testing::TestParamInfo<IsaDtype>& info) {
  return std::get<0>(info.param) + "_" + dtype_name(std::get<1>(info.param));
}

/// Forces an ISA for the scope's lifetime.
struct IsaScope {
  explicit IsaScope(const std::string& name) { cpu::set_isa_override(name); }
  ~IsaScope() { cpu::set_isa_override(""); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;
};

inline std::vector<std::int64_t> random_lengths(std::mt19937_64& rng, std::int64_t B, std::int64_t N) {
  std::vector<std::int64_t> r(static_cast<std::size_t>(B));
  std::uniform_int_distribution<std::int64_t> d(0, N);
  for (auto& x : r) x = d(rng);
  if (B > 0) r[0] = N;  // keep one full row
  return r;
}

inline std::vector<std::int64_t> random_cu(std::mt19937_64& rng, std::int64_t nseq, std::int64_t total) {
  std::vector<std::int64_t> cuts(static_cast<std::size_t>(nseq - 1));
  std::uniform_int_distribution<std::int64_t> d(0, total);
  for (auto& c : cuts) c = d(rng);
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::int64_t> cu{0};
  cu.insert(cu.end(), cuts.begin(), cuts.end());
  cu.push_back(total);
  return cu;
}

inline CaseSetup make_case(const SdpaCase& c) {
  CaseSetup s;
  std::mt19937_64 rng(c.seed * 7919 + 13);
  const bool varlen = c.mask == MaskKind::varlen;
  const std::int64_t tensor_B = varlen ? 1 : c.B;
  s.x = make_qkv(tensor_B, c.Hq, c.Hkv, c.Nq, c.Nk, c.D, c.Dv, c.dtype, c.layout, c.seed);
  MaskSpec& m = s.params.mask;
  auto window = [&] {
    std::uniform_int_distribution<std::int64_t> w(0, std::max<std::int64_t>(c.Nk / 3, 2));
    m.window_left = w(rng);
    m.window_right = w(rng);
  };
  switch (c.mask) {
    case MaskKind::none: break;
    case MaskKind::causal_top_left: m.causal = true; m.alignment = Alignment::top_left; break;
    case MaskKind::causal_bottom_right: m.causal = true; m.alignment = Alignment::bottom_right; break;
    case MaskKind::window: window(); m.alignment = c.seed % 2 ? Alignment::top_left : Alignment::bottom_right; break;
    case MaskKind::padding:
    case MaskKind::causal_padding_window:
      m.q_lengths = random_lengths(rng, c.B, c.Nq);
      m.k_lengths = random_lengths(rng, c.B, c.Nk);
      nan_beyond_lengths(s.x.q, m.q_lengths);
      nan_beyond_lengths(s.x.k, m.k_lengths);
      nan_beyond_lengths(s.x.v, m.k_lengths);
      if (c.mask == MaskKind::causal_padding_window) {
        window();
        m.causal = true;
        m.alignment = c.seed % 2 ? Alignment::top_left : Alignment::bottom_right;
      }
      break;
    case MaskKind::bias:
    case MaskKind::alibi:
    case MaskKind::softcap:
    case MaskKind::bias_alibi_softcap: {
      const bool all = c.mask == MaskKind::bias_alibi_softcap;
      if (all || c.mask == MaskKind::bias) {
        s.bias = c.seed % 2 ? make_tensor(c.dtype, {c.B, 1, c.Nq, c.Nk}) : make_tensor(c.dtype, {c.Nq, c.Nk});
        fill_normal(s.bias.view, c.seed + 101);
        m.bias = s.bias.view;
      }
      if (all || c.mask == MaskKind::alibi) {
        for (std::int64_t h = 0; h < c.Hq; ++h) m.alibi_slopes.push_back(std::pow(2.0, -8.0 * static_cast<double>(h + 1) / static_cast<double>(c.Hq)));
        m.alibi_slopes.back() *= 0.9;  // slopes need not be the canonical ones
        m.alignment = c.seed % 2 ? Alignment::bottom_right : Alignment::top_left;
      }
      if (all || c.mask == MaskKind::softcap) m.softcap = 3.0 + static_cast<double>(c.seed % 5);
      break;
    }
    case MaskKind::bool_mask: {
      s.bool_mask = c.seed % 2 ? make_tensor(DType::boolean, {c.B, 1, 1, c.Nk}) : make_tensor(DType::boolean, {c.Hq, c.Nq, c.Nk});
      std::bernoulli_distribution keep(0.7);
      for_each_element(s.bool_mask.view, [&](const auto&, std::int64_t off) { store_f64(s.bool_mask.view, off, keep(rng)); });
      m.bool_mask = s.bool_mask.view;
      break;
    }
    case MaskKind::block_mask: {
      BlockMask bm;
      bm.q_block = 16 << (c.seed % 3);
      bm.k_block = 32 << (c.seed % 2);
      s.block_keep = make_tensor(DType::boolean, {c.B, c.Hq, (c.Nq + bm.q_block - 1) / bm.q_block, (c.Nk + bm.k_block - 1) / bm.k_block});
      std::bernoulli_distribution keep(0.5);
      for_each_element(s.block_keep.view, [&](const auto&, std::int64_t off) { store_f64(s.block_keep.view, off, keep(rng)); });
      bm.keep = s.block_keep.view;
      m.block_mask = bm;
      break;
    }
    case MaskKind::mask_mod:
      m.mask_mod = [](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) { return (i + 2 * j + b + h) % 5 != 0; };
      break;
    case MaskKind::score_mod:
      m.score_mod.value = [](double sc, std::int64_t, std::int64_t h, std::int64_t i, std::int64_t j) {
        return sc * (1.0 + 0.1 * static_cast<double>(h % 3)) + 0.01 * static_cast<double>((i - j) % 7);
      };
      m.score_mod.grad = [](double, std::int64_t, std::int64_t h, std::int64_t, std::int64_t) { return 1.0 + 0.1 * static_cast<double>(h % 3); };
      break;
    case MaskKind::varlen:
      m.cu_seqlens_q = random_cu(rng, c.B + 1, c.Nq);
      m.cu_seqlens_k = random_cu(rng, c.B + 1, c.Nk);
      m.causal = c.seed % 2 == 0;
      break;
    case MaskKind::dropout:
    case MaskKind::causal_dropout:
      s.params.dropout_p = 0.1 + 0.1 * static_cast<double>(c.seed % 4);
      s.params.dropout_seed = 0x1234567890ull + c.seed;
      s.params.dropout_offset = c.seed % 3;
      m.causal = c.mask == MaskKind::causal_dropout;
      break;
  }
  // Nq != Nk in most cases: calls that are causal (varlen, causal_dropout) state an alignment,
  // alternating between the two.
  if (!m.alignment) m.alignment = (c.seed / 2) % 2 ? Alignment::top_left : Alignment::bottom_right;
  return s;
}

/// Axis values of the fast-path grid.
struct Grid {
  std::vector<std::int64_t> B{1, 3};
  std::vector<std::pair<std::int64_t, std::int64_t>> heads{{1, 1}, {4, 4}, {8, 2}, {8, 1}};
  std::vector<std::int64_t> N{1, 7, 63, 64, 65, 127, 200, 1000};
  std::vector<std::int64_t> D{16, 40, 64, 80, 96, 128, 256};
  std::vector<Layout> layouts{Layout::bhsd, Layout::bshd};
};

/// A seeded covering sample of `count` cases of the grid in `dtype` (all masks), with the dense
/// cost of each case bounded by `max_macs` so that the fp64 reference stays cheap.
inline std::vector<SdpaCase> covering_sample(DType dtype, int count, std::uint64_t seed, double max_macs) {
  const Grid g;
  constexpr int kAxes = 8;  // B, heads, Nq, Nk, D, Dv, mask, layout
  const int sizes[kAxes] = {static_cast<int>(g.B.size()), static_cast<int>(g.heads.size()), static_cast<int>(g.N.size()),
                            static_cast<int>(g.N.size()),  static_cast<int>(g.D.size()),     static_cast<int>(g.D.size()),
                            static_cast<int>(std::size(kAllMasks)), static_cast<int>(g.layouts.size())};
  std::set<std::tuple<int, int, int, int>> covered;
  std::mt19937_64 rng(seed);
  std::vector<SdpaCase> cases;
  auto build = [&](const std::array<int, kAxes>& a, std::uint64_t s) {
    SdpaCase c;
    c.B = g.B[a[0]];
    std::tie(c.Hq, c.Hkv) = g.heads[a[1]];
    c.Nq = g.N[a[2]];
    c.Nk = g.N[a[3]];
    c.D = g.D[a[4]];
    c.Dv = g.D[a[5]];
    c.mask = kAllMasks[a[6]];
    c.layout = g.layouts[a[7]];
    c.dtype = dtype;
    c.seed = s;
    return c;
  };
  for (int n = 0; n < count; ++n) {
    std::array<int, kAxes> best{};
    int best_gain = -1;
    for (int trial = 0; trial < 40; ++trial) {
      std::array<int, kAxes> a{};
      for (int x = 0; x < kAxes; ++x) a[x] = (trial == 0 && n < 64) ? (n % sizes[x]) : static_cast<int>(rng() % sizes[x]);
      if (a[2] == a[3] || build(a, 0).macs() > max_macs) continue;  // Nq != Nk, bounded cost
      int gain = 0;
      for (int x = 0; x < kAxes; ++x)
        for (int y = x + 1; y < kAxes; ++y) gain += !covered.count({x, a[x], y, a[y]});
      if (gain > best_gain) {
        best_gain = gain;
        best = a;
      }
    }
    if (best_gain < 0) continue;
    for (int x = 0; x < kAxes; ++x)
      for (int y = x + 1; y < kAxes; ++y) covered.insert({x, best[x], y, best[y]});
    cases.push_back(build(best, seed * 1000 + static_cast<std::uint64_t>(n)));
  }
  return cases;
}

}  // namespace attn::test
