#pragma once
// One MultiheadAttention test case (printable), shared by the forward and backward tests: sizes,
// self/cross, layout, masks, RoPE, dropout; builds the module, its inputs and the call's options.

#include <sstream>
#include <string>

#include "nn/nn_test_util.hpp"

namespace attn::test {

enum class MaskKind { none, bool2d, float4d, key_lengths, causal, causal_bottom_right, causal_top_left };
inline const char* mask_kind_name(MaskKind m) {
  switch (m) {
    case MaskKind::none: return "nomask";
    case MaskKind::bool2d: return "bool2d";
    case MaskKind::float4d: return "float4d";
    case MaskKind::key_lengths: return "keylen";
    case MaskKind::causal: return "causal";
    case MaskKind::causal_bottom_right: return "causalBR";
    case MaskKind::causal_top_left: return "causalTL";
  }
  return "?";
}
enum class Inputs { self, cross, cross_shared_kv };
enum class Rope { none, half, interleaved };

struct MhaCase {
  std::int64_t E = 16, Hq = 4, Hkv = 4, kdim = 0, vdim = 0, B = 2, Lq = 5, Lk = 5;
  Inputs inputs = Inputs::self;
  SeqLayout layout = SeqLayout::batch_first;
  bool bias = true;
  Rope rope = Rope::none;
  MaskKind mask = MaskKind::none;
  double dropout = 0.0;
  bool strided = false;  // inputs with an inner stride of 2 (the module copies them)
  std::vector<std::int64_t> positions;

  std::string name() const {
    std::ostringstream os;
    os << "E" << E << "_H" << Hq << "_Hkv" << Hkv << "_B" << B << "_Lq" << Lq << "_Lk" << Lk << "_"
       << (inputs == Inputs::self    ? "self"
           : inputs == Inputs::cross ? "cross"
                                     : "crossKV")
       << "_" << seq_layout_name(layout) << "_" << mask_kind_name(mask);
    if (kdim || vdim) os << "_kd" << kdim << "_vd" << vdim;
    if (!bias) os << "_nobias";
    if (rope != Rope::none) os << (rope == Rope::half ? "_ropeHalf" : "_ropeInter");
    if (dropout > 0) os << "_drop";
    if (strided) os << "_strided";
    if (!positions.empty()) os << "_pos";
    return os.str();
  }

  nn::MhaConfig config() const {
    nn::MhaConfig c;
    c.embed_dim = E;
    c.num_heads = Hq;
    c.num_kv_heads = Hkv;
    c.kdim = kdim;
    c.vdim = vdim;
    c.bias = bias;
    c.dropout = dropout;
    c.batch_first = layout == SeqLayout::batch_first;
    c.seed = 7;
    if (rope != Rope::none) {
      nn::RotaryConfig r;
      r.convention = rope == Rope::half ? nn::RotaryConvention::half_split : nn::RotaryConvention::interleaved;
      r.base = 100.0;  // large angles at short lengths
      c.rotary = r;
    }
    return c;
  }
};

inline void PrintTo(const MhaCase& c, std::ostream* os) { *os << c.name(); }

/// Module-layout inputs of a case (self: one tensor used three times) and the logical sequences.
struct MhaInputs {
  Seq q, k, v;
  GuardedTensor tq, tk, tv;
  TensorView query, key, value;
};

/// x in module layout with every element's inner stride 2 (the odd slots hold NaN).
inline GuardedTensor to_module_strided(const Seq& s, SeqLayout layout, DType dtype) {
  GuardedTensor t = layout == SeqLayout::batch_first ? make_tensor(dtype, {s.B, s.L, 2 * s.C})
                    : layout == SeqLayout::seq_first ? make_tensor(dtype, {s.L, s.B, 2 * s.C})
                                                     : make_tensor(dtype, {s.L, 2 * s.C});
  t.view.shape[t.view.rank - 1] = s.C;
  t.view.strides[t.view.rank - 1] = 2;
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t l = 0; l < s.L; ++l)
      for (std::int64_t c = 0; c < s.C; ++c) store_f64(t.view, seq_offset(t.view, layout, b, l, c), s.at(b, l, c));
  return t;
}

inline MhaInputs make_inputs(const MhaCase& c, DType dtype, std::uint64_t seed) {
  MhaInputs in;
  const std::int64_t kd = c.kdim ? c.kdim : c.E, vd = c.vdim ? c.vdim : c.E;
  auto module = [&](const Seq& s) {
    return c.strided ? to_module_strided(s, c.layout, dtype) : to_module(s, c.layout, dtype);
  };
  in.q = random_seq(c.B, c.Lq, c.E, seed);
  in.tq = module(in.q);
  in.q = from_module(in.tq.view, c.layout);  // rounded to dtype
  if (c.inputs == Inputs::self) {
    in.k = in.v = in.q;
    in.query = in.key = in.value = in.tq.view;
    return in;
  }
  in.k = random_seq(c.B, c.Lk, kd, seed + 1);
  in.tk = module(in.k);
  in.k = from_module(in.tk.view, c.layout);
  if (c.inputs == Inputs::cross_shared_kv) {
    in.v = in.k;
    in.query = in.tq.view;
    in.key = in.value = in.tk.view;
    return in;
  }
  in.v = random_seq(c.B, c.Lk, vd, seed + 2);
  in.tv = module(in.v);
  in.v = from_module(in.tv.view, c.layout);
  in.query = in.tq.view;
  in.key = in.tk.view;
  in.value = in.tv.view;
  return in;
}

/// The call's options and the same masks as SdpaParams for the reference composition.
struct MhaMasks {
  nn::MhaOptions options;
  SdpaParams params;
  GuardedTensor mask;
};

inline MhaMasks make_masks(const MhaCase& c, std::uint64_t seed) {
  MhaMasks m;
  m.params.dropout_p = c.dropout;
  m.params.dropout_seed = 7;  // the case's module seed
  m.params.dropout_offset = 3;
  m.options.dropout_offset = 3;
  m.options.positions = c.positions;
  std::mt19937_64 rng(seed);
  switch (c.mask) {
    case MaskKind::none: break;
    case MaskKind::bool2d: {
      m.mask = make_tensor(DType::boolean, {c.Lq, c.Lk});
      for (std::int64_t i = 0; i < c.Lq; ++i)
        for (std::int64_t j = 0; j < c.Lk; ++j) set(m.mask.view, j == i % c.Lk || rng() % 3 != 0 ? 1.0 : 0.0, i, j);
      m.options.attn_mask = m.params.mask.bool_mask = m.mask.view;
      break;
    }
    case MaskKind::float4d: {
      m.mask = make_tensor(DType::f32, {c.B, 1, c.Lq, c.Lk});
      fill_uniform(m.mask.view, seed, -2.0, 2.0);
      set(m.mask.view, -kInf, 0, 0, 0, 0);
      m.options.attn_mask = m.params.mask.bias = m.mask.view;
      break;
    }
    case MaskKind::key_lengths:
      for (std::int64_t b = 0; b < c.B; ++b) m.options.key_lengths.push_back(std::max<std::int64_t>(1, c.Lk - b - 1));
      m.params.mask.k_lengths = m.options.key_lengths;
      break;
    case MaskKind::causal:
    case MaskKind::causal_bottom_right:
    case MaskKind::causal_top_left: {
      const Alignment a = c.mask == MaskKind::causal_top_left ? Alignment::top_left : Alignment::bottom_right;
      m.options.is_causal = m.params.mask.causal = true;
      if (c.mask != MaskKind::causal) m.options.causal_alignment = a;
      m.params.mask.alignment = a;
      break;
    }
  }
  return m;
}

}  // namespace attn::test
