// attn._core.linear_attention_forward / _backward / _step and favor_projection: linear attention
// (include/attn/linear_attention.hpp) for Python. Arrays cross without copies (convert.hpp); the
// parameters are explicit keywords; attn::Error becomes ValueError/TypeError. The GIL is released
// while a kernel runs.

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#include "attn/error.hpp"
#include "attn/linear_attention.hpp"
#include "convert.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {
namespace {

struct LinearCall {
  Keep keep;
  LinearAttentionParams params;
  LinearCall(const std::string& feature_map, nb::handle projection, bool causal, nb::handle key_padding_mask,
             double eps, const std::string& backend, int num_threads, std::int64_t chunk, nb::handle alignment) {
    if (feature_map == "elu")
      params.feature_map = FeatureMap::elu;
    else if (feature_map == "favor")
      params.feature_map = FeatureMap::favor;
    else
      throw Error(ErrorKind::value, "feature_map", "= '" + feature_map + "', expected 'elu' or 'favor'");
    params.projection = to_optional_view(projection, "projection", keep);
    params.mask.causal = causal;
    // No default (docs/contract.md §5): None leaves it unset, and a causal call with Nq != Nk is
    // then refused by validation naming both choices.
    if (!alignment.is_none()) {
      const std::string a = nb::cast<std::string>(alignment);
      if (a == "top_left")
        params.mask.alignment = Alignment::top_left;
      else if (a == "bottom_right")
        params.mask.alignment = Alignment::bottom_right;
      else
        throw Error(ErrorKind::value, "alignment", "= '" + a + "', expected 'top_left' or 'bottom_right' (or None)");
    }
    params.key_padding_mask = to_optional_view(key_padding_mask, "key_padding_mask", keep);
    params.eps = eps;
    if (backend == "auto")
      params.backend = Backend::automatic;
    else if (backend == "reference")
      params.backend = Backend::reference;
    else if (backend == "cpu")
      params.backend = Backend::cpu;
    else
      throw Error(ErrorKind::value, "backend", "= '" + backend + "', expected 'auto', 'reference' or 'cpu'");
    params.num_threads = num_threads;
    ATTN_CHECK(chunk >= 0, value, "chunk", "= ", chunk, ", expected 0 (default) or >= 1");
    params.chunk = chunk;
  }
};

constexpr const char* kParams =
    "\nKeywords: feature_map='elu' | 'favor', projection=None (favor: [m, D] float, see favor_projection),\n"
    "causal=False, alignment=None ('top_left' | 'bottom_right': required for causal when Nq != Nk; no default),\n"
    "key_padding_mask=None ([B, Nk] bool,\n"
    "True = padding), eps=1e-6, backend='auto' | 'reference' | 'cpu', num_threads=0, chunk=0.";

}  // namespace

void register_linear(nb::module_& m) {
  m.def(
      "linear_attention_forward",
      [](nb::handle out, nb::handle q, nb::handle k, nb::handle v, nb::handle den, const std::string& feature_map,
         nb::handle projection, bool causal, nb::handle alignment, nb::handle key_padding_mask, double eps,
         const std::string& backend, int num_threads, std::int64_t chunk) {
        LinearCall c(feature_map, projection, causal, key_padding_mask, eps, backend, num_threads, chunk, alignment);
        const LinearAttentionOutputs o{to_view(out, "out", c.keep), to_optional_view(den, "den", c.keep)};
        const TensorView qv = to_view(q, "q", c.keep), kv = to_view(k, "k", c.keep), vv = to_view(v, "v", c.keep);
        nb::gil_scoped_release release;
        linear_attention_forward(o, qv, kv, vv, c.params);
      },
      "out"_a, "q"_a, "k"_a, "v"_a, "den"_a = nb::none(), nb::kw_only(), "feature_map"_a = "elu",
      "projection"_a = nb::none(), "causal"_a = false, "alignment"_a = nb::none(), "key_padding_mask"_a = nb::none(),
      "eps"_a = 1e-6, "backend"_a = "auto", "num_threads"_a = 0, "chunk"_a = 0,
      (std::string("linear_attention_forward(out, q, k, v, den=None, **params): writes φ(q)ᵀS / (φ(q)ᵀz + eps) into\n"
                   "out [B, Hq, Nq, Dv] (and the denominators into den [B, Hq, Nq] f32, which the backward needs).") +
       kParams)
          .c_str());

  m.def(
      "linear_attention_backward",
      [](nb::handle dq, nb::handle dk, nb::handle dv, nb::handle dout, nb::handle q, nb::handle k, nb::handle v,
         nb::handle out, nb::handle den, const std::string& feature_map, nb::handle projection, bool causal,
         nb::handle alignment, nb::handle key_padding_mask, double eps, const std::string& backend, int num_threads,
         std::int64_t chunk) {
        LinearCall c(feature_map, projection, causal, key_padding_mask, eps, backend, num_threads, chunk, alignment);
        const LinearAttentionGrads g{to_view(dq, "dq", c.keep), to_view(dk, "dk", c.keep), to_view(dv, "dv", c.keep)};
        const TensorView dov = to_view(dout, "dout", c.keep), qv = to_view(q, "q", c.keep),
                         kv = to_view(k, "k", c.keep), vv = to_view(v, "v", c.keep), ov = to_view(out, "out", c.keep),
                         dnv = to_view(den, "den", c.keep);
        nb::gil_scoped_release release;
        linear_attention_backward(g, dov, qv, kv, vv, ov, dnv, c.params);
      },
      "dq"_a, "dk"_a, "dv"_a, "dout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "den"_a, nb::kw_only(), "feature_map"_a = "elu",
      "projection"_a = nb::none(), "causal"_a = false, "alignment"_a = nb::none(), "key_padding_mask"_a = nb::none(),
      "eps"_a = 1e-6, "backend"_a = "auto", "num_threads"_a = 0, "chunk"_a = 0,
      (std::string("linear_attention_backward(dq, dk, dv, dout, q, k, v, out, den, **params): gradients of\n"
                   "linear_attention_forward (the FAVOR+ projection is a constant).") +
       kParams)
          .c_str());

  m.def(
      "linear_attention_step",
      [](nb::handle out, nb::handle S_out, nb::handle z_out, nb::handle q, nb::handle k, nb::handle v, nb::handle S_in,
         nb::handle z_in, const std::string& feature_map, nb::handle projection, nb::handle key_padding_mask,
         double eps, const std::string& backend, int num_threads) {
        LinearCall c(feature_map, projection, false, key_padding_mask, eps, backend, num_threads, 0, nb::none());
        const LinearAttentionState so{to_view(S_out, "S_out", c.keep), to_view(z_out, "z_out", c.keep)};
        const LinearAttentionState si{to_optional_view(S_in, "S_in", c.keep), to_optional_view(z_in, "z_in", c.keep)};
        const TensorView ov = to_view(out, "out", c.keep), qv = to_view(q, "q", c.keep), kv = to_view(k, "k", c.keep),
                         vv = to_view(v, "v", c.keep);
        nb::gil_scoped_release release;
        linear_attention_step(ov, so, qv, kv, vv, si, c.params);
      },
      "out"_a, "S_out"_a, "z_out"_a, "q"_a, "k"_a, "v"_a, "S_in"_a = nb::none(), "z_in"_a = nb::none(), nb::kw_only(),
      "feature_map"_a = "elu", "projection"_a = nb::none(), "key_padding_mask"_a = nb::none(), "eps"_a = 1e-6,
      "backend"_a = "auto", "num_threads"_a = 0,
      "linear_attention_step(out, S_out, z_out, q, k, v, S_in=None, z_in=None, **params): causal decode of T\n"
      "new tokens (q [B, Hq, T, D], k/v [B, Hkv, T, D/Dv]) on top of the state S [B, Hkv, F, Dv], z [B, Hkv, F]\n"
      "(f32; None = zeros); writes out and the new state (S_out/z_out may be S_in/z_in).");

  m.def(
      "favor_projection",
      [](nb::handle omega, std::uint64_t seed) {
        Keep keep;
        const TensorView w = to_view(omega, "omega", keep);
        favor_projection(w, seed);
      },
      "omega"_a, "seed"_a,
      "favor_projection(omega, seed): fills omega [m, D] (f32/f64) with FAVOR+ orthogonal random features,\n"
      "deterministic in seed.");
}

}  // namespace attn::py
