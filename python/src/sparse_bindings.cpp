// attn._core.strided_attention_forward / _backward: strided ∪ window ∪ global sparse attention
// (include/attn/sparse_attention.hpp) for Python. Arrays cross without copies (convert.hpp); the
// parameters are explicit keywords; attn::Error becomes ValueError/TypeError. The GIL is released
// while the kernels run.

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#include "attn/error.hpp"
#include "attn/sparse_attention.hpp"
#include "convert.hpp"
#include "params.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {
namespace {

StridedAttentionParams strided_params(std::int64_t stride, std::int64_t window, std::int64_t global_tokens, bool causal,
                                      nb::handle alignment, nb::handle scale, nb::handle k_lengths, int num_threads) {
  StridedAttentionParams p;
  p.stride = stride;
  p.window = window;
  p.global_tokens = global_tokens;
  p.causal = causal;
  // No default (as SDPA's): None leaves it unset, and a call with Nq != Nk is refused naming both.
  if (!alignment.is_none()) {
    const std::string a = nb::cast<std::string>(alignment);
    if (a == "top_left")
      p.alignment = Alignment::top_left;
    else if (a == "bottom_right")
      p.alignment = Alignment::bottom_right;
    else
      throw Error(ErrorKind::value, "alignment", "= '" + a + "', expected 'top_left' or 'bottom_right' (or None)");
  }
  if (!scale.is_none()) p.scale = nb::cast<double>(scale);
  if (!k_lengths.is_none()) p.k_lengths = int_list(k_lengths, "k_lengths");
  p.num_threads = num_threads;
  return p;
}

constexpr const char* kParams =
    "\nKeywords: stride (s >= 1), window=0 (w >= 0: keys with |i - j| <= w too), global_tokens=0 (g: keys j < g\n"
    "seen by all, queries i < g see all), causal=False, alignment=None ('top_left' | 'bottom_right': required\n"
    "when Nq != Nk), scale=None (1/sqrt(D)), k_lengths=None (per-batch key lengths, right padding: keys\n"
    "j >= k_lengths[b] are hidden; needs top_left alignment or Nq == Nk), num_threads=0.";

}  // namespace

void register_sparse(nb::module_& m) {
  m.def(
      "strided_attention_forward",
      [](nb::handle out, nb::handle q, nb::handle k, nb::handle v, nb::handle lse, std::int64_t stride,
         std::int64_t window, std::int64_t global_tokens, bool causal, nb::handle alignment, nb::handle scale,
         nb::handle k_lengths, int num_threads) {
        const StridedAttentionParams p =
            strided_params(stride, window, global_tokens, causal, alignment, scale, k_lengths, num_threads);
        Keep keep;
        const SdpaOutputs o{to_view(out, "out", keep), to_optional_view(lse, "lse", keep), {}};
        const TensorView qv = to_view(q, "q", keep), kv = to_view(k, "k", keep), vv = to_view(v, "v", keep);
        nb::gil_scoped_release release;
        strided_attention_forward(o, qv, kv, vv, p);
      },
      "out"_a, "q"_a, "k"_a, "v"_a, "lse"_a = nb::none(), nb::kw_only(), "stride"_a, "window"_a = 0,
      "global_tokens"_a = 0, "causal"_a = false, "alignment"_a = nb::none(), "scale"_a = nb::none(),
      "k_lengths"_a = nb::none(), "num_threads"_a = 0,
      (std::string("strided_attention_forward(out, q, k, v, lse=None, **params): one softmax over the strided,\n"
                   "window and global keys of each query, into out [B, Hq, Nq, Dv] (and lse [B, Hq, Nq], which the\n"
                   "backward needs).") +
       kParams)
          .c_str());

  m.def(
      "strided_attention_backward",
      [](nb::handle dq, nb::handle dk, nb::handle dv, nb::handle dout, nb::handle q, nb::handle k, nb::handle v,
         nb::handle out, nb::handle lse, nb::handle dlse, std::int64_t stride, std::int64_t window,
         std::int64_t global_tokens, bool causal, nb::handle alignment, nb::handle scale, nb::handle k_lengths,
         int num_threads) {
        const StridedAttentionParams p =
            strided_params(stride, window, global_tokens, causal, alignment, scale, k_lengths, num_threads);
        Keep keep;
        const SdpaGrads g{to_view(dq, "dq", keep), to_view(dk, "dk", keep), to_view(dv, "dv", keep), {}};
        const TensorView dov = to_view(dout, "dout", keep), qv = to_view(q, "q", keep), kv = to_view(k, "k", keep),
                         vv = to_view(v, "v", keep), ov = to_view(out, "out", keep), lv = to_view(lse, "lse", keep),
                         dlv = to_optional_view(dlse, "dlse", keep);
        nb::gil_scoped_release release;
        strided_attention_backward(g, dov, qv, kv, vv, ov, lv, p, dlv);
      },
      "dq"_a, "dk"_a, "dv"_a, "dout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "dlse"_a = nb::none(), nb::kw_only(),
      "stride"_a, "window"_a = 0, "global_tokens"_a = 0, "causal"_a = false, "alignment"_a = nb::none(),
      "scale"_a = nb::none(), "k_lengths"_a = nb::none(), "num_threads"_a = 0,
      (std::string("strided_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, dlse=None, **params): gradients\n"
                   "of strided_attention_forward.") +
       kParams)
          .c_str());
}

}  // namespace attn::py
