// attn._core.KvCache and attn._core.decode: the KV cache of include/attn/kv_cache.hpp for Python.
// K/V are appended from numpy arrays or torch CPU tensors ([n, Hkv, N, D], any strides, no copies);
// decode writes into the caller's out (and lse).

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/kv_cache.hpp"
#include "convert.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {
namespace {

DType cache_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::f32;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "i8" || s == "int8") return DType::i8;
  throw Error(ErrorKind::dtype, "dtype", "= '" + s + "', expected 'f32', 'bf16' or 'i8' (cache storage types)");
}

KvLayout cache_layout(const std::string& s) {
  if (s == "contiguous") return KvLayout::contiguous;
  if (s == "paged") return KvLayout::paged;
  throw Error(ErrorKind::value, "layout", "= '" + s + "', expected 'contiguous' or 'paged'");
}

}  // namespace

void register_kv_cache(nb::module_& m) {
  nb::class_<KvCache>(m, "KvCache",
                      "The K/V cache of one attention layer: B rows of keys [Hkv, len_b, D] and values\n"
                      "[Hkv, len_b, Dv], contiguous or paged, stored as f32, bf16 or i8.")
      .def(
          "__init__",
          [](KvCache* self, std::int64_t batch, std::int64_t kv_heads, std::int64_t head_dim, std::int64_t capacity,
             const std::string& dtype, const std::string& layout, std::int64_t v_head_dim, std::int64_t page_size,
             std::int64_t num_pages, bool growable) {
            KvCacheConfig c;
            c.batch = batch;
            c.kv_heads = kv_heads;
            c.head_dim = head_dim;
            c.v_head_dim = v_head_dim;
            c.capacity = capacity;
            c.dtype = cache_dtype(dtype);
            c.layout = cache_layout(layout);
            c.page_size = page_size;
            c.num_pages = num_pages;
            c.growable = growable;
            new (self) KvCache(c);
          },
          "batch"_a, "kv_heads"_a, "head_dim"_a, "capacity"_a, "dtype"_a = "f32", "layout"_a = "contiguous",
          "v_head_dim"_a = 0, "page_size"_a = 64, "num_pages"_a = 0, "growable"_a = false)
      .def_prop_ro("batch", &KvCache::batch)
      .def_prop_ro("kv_heads", &KvCache::kv_heads)
      .def_prop_ro("head_dim", &KvCache::head_dim)
      .def_prop_ro("v_head_dim", &KvCache::v_head_dim)
      .def_prop_ro("capacity", &KvCache::capacity)
      .def_prop_ro("lengths", &KvCache::lengths, "len_b for every batch row")
      .def_prop_ro("read_only", &KvCache::read_only)
      .def("length", &KvCache::length, "b"_a)
      .def(
          "append",
          [](KvCache& self, nb::handle k, nb::handle v, std::vector<std::int64_t> rows, std::vector<std::int64_t> counts) {
            Keep keep;
            const TensorView kv = to_view(k, "k", keep), vv = to_view(v, "v", keep);
            nb::gil_scoped_release release;
            self.append(kv, vv, rows, counts);
          },
          "k"_a, "v"_a, "rows"_a = std::vector<std::int64_t>{}, "counts"_a = std::vector<std::int64_t>{},
          "Appends k [n, Hkv, N, D], v [n, Hkv, N, Dv]: entry e goes to row rows[e] (default e) and adds\n"
          "its first counts[e] tokens (default N). Nothing is written when it raises.")
      .def("trim", &KvCache::trim, "b"_a, "length"_a, "Keeps the first `length` tokens of row b.")
      .def("reset", nb::overload_cast<std::int64_t>(&KvCache::reset), "b"_a, "Empties row b.")
      .def("reset", nb::overload_cast<>(&KvCache::reset), "Empties every row.")
      .def("set_read_only", &KvCache::set_read_only)
      .def_prop_ro("pages_total", &KvCache::pages_total)
      .def_prop_ro("pages_free", &KvCache::pages_free)
      .def("block_table", &KvCache::block_table, "b"_a)
      .def("element", &KvCache::element, "which"_a, "b"_a, "h"_a, "j"_a, "d"_a,
           "Cached element (fp32, dequantised) of K (which=0) or V (which=1) at [b, h, j, d].");

  m.def(
      "decode",
      [](nb::handle out, nb::handle q, const KvCache& cache, nb::handle lse, nb::handle scale, bool causal,
         std::int64_t window_left, std::vector<double> alibi_slopes, double softcap, int num_threads) {
        Keep keep;
        DecodeOutputs o{to_view(out, "out", keep), to_optional_view(lse, "lse", keep)};
        const TensorView qv = to_view(q, "q", keep);
        DecodeParams p;
        if (!scale.is_none()) p.scale = nb::cast<double>(scale);
        p.causal = causal;
        p.window_left = window_left;
        p.alibi_slopes = std::move(alibi_slopes);
        p.softcap = softcap;
        p.num_threads = num_threads;
        nb::gil_scoped_release release;
        attn::decode(o, qv, cache, p);
      },
      "out"_a, "q"_a, "cache"_a, "lse"_a = nb::none(), "scale"_a = nb::none(), "causal"_a = true,
      "window_left"_a = -1, "alibi_slopes"_a = std::vector<double>{}, "softcap"_a = 0.0, "num_threads"_a = 0,
      "decode(out, q, cache, lse=None, ...): attends q [B, Hq, Nq, D] (whose K/V were appended first) to\n"
      "the cache with bottom-right alignment; writes out [B, Hq, Nq, Dv] (and lse [B, Hq, Nq] f32).");
}

}  // namespace attn::py
