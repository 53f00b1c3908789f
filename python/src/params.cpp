// The one table of attn's sdpa keyword parameters: (name, type, default, doc, setter). The
// binding parses keyword arguments by walking it; attn._params generates the torch.library
// schemas, the Python signatures and the packing by name from it (attn._core.sdpa_params()).
// Adding a parameter: one entry here plus its field in SdpaParams and its kernel support.
//
// Types (how attn._params carries each through a torch.library op):
//   bool, int, float, float?, str     the same type in the op schema
//   int[], float[]                    a sequence here; an int64 / float64 Tensor? in the op
//   array                             a numpy array or CPU tensor; Tensor? in the op
//   u64                               an int in [0, 2^64); a 0-d int64 Tensor? in the op (bits kept)
//   int|int[2]                        an int or (q, k) pair; int[]? in the op
//   callback                          a Python function: not in the op (a schema cannot carry it)

#include "params.hpp"

#include <nanobind/stl/string.h>

#include <cstdint>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "attn/error.hpp"

namespace attn::py {
namespace {

struct State {
  SdpaParams& p;
  Keep& keep;
  Callbacks& cb;
};

struct Entry {
  const char* name;
  const char* type;
  const char* default_value;  // a Python literal
  const char* doc;
  void (*set)(State& s, nb::handle value);  // value is never None
};

Alignment parse_alignment(const std::string& s) {
  if (s == "top_left") return Alignment::top_left;
  if (s == "bottom_right") return Alignment::bottom_right;
  throw Error(ErrorKind::value, "alignment", "= '" + s + "', expected 'top_left' or 'bottom_right' (or None)");
}

Backend parse_backend(const std::string& s) {
  if (s == "auto" || s == "automatic") return Backend::automatic;
  if (s == "reference") return Backend::reference;
  if (s == "cpu") return Backend::cpu;
  if (s == "cuda") return Backend::cuda;
  throw Error(ErrorKind::value, "backend", "= '" + s + "', expected 'auto', 'reference', 'cpu' or 'cuda'");
}

ProbsKind parse_probs_kind(const std::string& s) {
  if (s == "pre_dropout") return ProbsKind::pre_dropout;
  if (s == "post_dropout") return ProbsKind::post_dropout;
  throw Error(ErrorKind::value, "probs_kind", "= '" + s + "', expected 'pre_dropout' or 'post_dropout'");
}


std::vector<double> float_list(nb::handle obj, const char* name) {
  std::vector<double> out;
  for (nb::handle item : nb::iter(obj)) {
    if (!nb::try_cast(nb::float_(item), out.emplace_back())) throw Error(ErrorKind::type, name, "has an item that is not a float, expected a sequence of floats");
  }
  return out;
}

std::string str(nb::handle v) { return nb::cast<std::string>(v); }
std::int64_t i64(nb::handle v) { return nb::cast<std::int64_t>(v); }
double f64(nb::handle v) { return nb::cast<double>(v); }

using Value = std::function<double(double, std::int64_t, std::int64_t, std::int64_t, std::int64_t)>;

Value score_callback(State& s, nb::handle value) {
  nb::object fn = nb::borrow(value);
  Callbacks* cb = &s.cb;
  return [fn, cb](double x, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    nb::gil_scoped_acquire gil;
    try {
      return nb::cast<double>(fn(x, b, h, i, j));
    } catch (...) {
      cb->fail();
      return x;
    }
  };
}

// clang-format off
const Entry kParams[] = {
  {"scale", "float?", "None", "softmax scale; None = 1/sqrt(D)",
   [](State& s, nb::handle v) { s.p.scale = f64(v); }},
  {"causal", "bool", "False", "hide keys right of the aligned diagonal (window_right = 0)",
   [](State& s, nb::handle v) { s.p.mask.causal = nb::cast<bool>(v); }},
  {"window_left", "int", "-1", "keys further left of the diagonal are hidden; -1 = unbounded",
   [](State& s, nb::handle v) { s.p.mask.window_left = i64(v); }},
  {"window_right", "int", "-1", "keys further right of the diagonal are hidden; -1 = unbounded",
   [](State& s, nb::handle v) { s.p.mask.window_right = i64(v); }},
  {"alignment", "str?", "None", "'top_left' or 'bottom_right': the diagonal of causal/window/ALiBi when some Lq != Lk; "
   "no default: such a call must choose (None is then an error)",
   [](State& s, nb::handle v) { s.p.mask.alignment = parse_alignment(str(v)); }},
  {"q_lengths", "int[]", "None", "per-batch query lengths (right padding); None = Nq",
   [](State& s, nb::handle v) { s.p.mask.q_lengths = int_list(v, "q_lengths"); }},
  {"k_lengths", "int[]", "None", "per-batch key lengths (right padding); None = Nk",
   [](State& s, nb::handle v) { s.p.mask.k_lengths = int_list(v, "k_lengths"); }},
  {"cu_seqlens_q", "int[]", "None", "packed varlen: prefix sums of the query lengths (B = 1)",
   [](State& s, nb::handle v) { s.p.mask.cu_seqlens_q = int_list(v, "cu_seqlens_q"); }},
  {"cu_seqlens_k", "int[]", "None", "packed varlen: prefix sums of the key lengths (B = 1)",
   [](State& s, nb::handle v) { s.p.mask.cu_seqlens_k = int_list(v, "cu_seqlens_k"); }},
  {"bool_mask", "array", "None", "bool or i8 array (non-zero = attend; uint8 is refused), broadcast to [B, Hq, Nq, Nk]",
   [](State& s, nb::handle v) { s.p.mask.bool_mask = to_view(v, "params.mask.bool_mask", s.keep); }},
  {"bias", "array", "None", "float array added to the scores, broadcast to [B, Hq, Nq, Nk]",
   [](State& s, nb::handle v) { s.p.mask.bias = to_view(v, "params.mask.bias", s.keep); }},
  {"alibi_slopes", "float[]", "None", "ALiBi: one slope per query head",
   [](State& s, nb::handle v) { s.p.mask.alibi_slopes = float_list(v, "alibi_slopes"); }},
  {"softcap", "float", "0.0", "c > 0: s -> c*tanh(s/c); 0 = off",
   [](State& s, nb::handle v) { s.p.mask.softcap = f64(v); }},
  {"block_mask", "array", "None", "block-sparse keep bits [B|1, Hq|1, ceil(Nq/qb), ceil(Nk/kb)]",
   [](State& s, nb::handle v) { s.p.mask.block_mask = BlockMask{128, 128, to_view(v, "params.mask.block_mask.keep", s.keep)}; }},
  {"block_size", "int|int[2]", "None", "block_mask's (qb, kb), or one int for both; None = 128",
   [](State& s, nb::handle v) {
     ATTN_CHECK(s.p.mask.block_mask.has_value(), value, "block_size", "was given without block_mask, expected block_mask too");
     BlockMask& bm = *s.p.mask.block_mask;
     if (nb::isinstance<nb::int_>(v)) {
       bm.q_block = bm.k_block = i64(v);
       return;
     }
     const std::vector<std::int64_t> qk = int_list(v, "block_size");
     ATTN_CHECK(qk.size() == 2, shape, "block_size", "has ", qk.size(), " entries, expected an int or (q_block, k_block)");
     bm.q_block = qk[0];
     bm.k_block = qk[1];
   }},
  {"mask_mod", "callback", "None", "mask_mod(b, h, i, j) -> bool, True = attend (slow path)",
   [](State& s, nb::handle v) {
     nb::object fn = nb::borrow(v);
     Callbacks* cb = &s.cb;
     s.p.mask.mask_mod = [fn, cb](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
       nb::gil_scoped_acquire gil;
       try {
         return nb::cast<bool>(fn(b, h, i, j));
       } catch (...) {
         cb->fail();
         return false;
       }
     };
   }},
  {"score_mod", "callback", "None", "score_mod(s, b, h, i, j) -> float (slow path)",
   [](State& s, nb::handle v) { s.p.mask.score_mod.value = score_callback(s, v); }},
  {"score_mod_grad", "callback", "None", "d score_mod / d s, (s, b, h, i, j) -> float (for backward)",
   [](State& s, nb::handle v) { s.p.mask.score_mod.grad = score_callback(s, v); }},
  {"dropout_p", "float", "0.0", "dropout probability in [0, 1)",
   [](State& s, nb::handle v) { s.p.dropout_p = f64(v); }},
  {"dropout_seed", "u64", "0", "Philox key of the dropout stream",
   [](State& s, nb::handle v) { s.p.dropout_seed = nb::cast<std::uint64_t>(v); }},
  {"dropout_offset", "u64", "0", "Philox counter offset (low 32 bits form the last counter word)",
   [](State& s, nb::handle v) { s.p.dropout_offset = nb::cast<std::uint64_t>(v); }},
  {"probs_kind", "str", "'post_dropout'", "'post_dropout' or 'pre_dropout': what probs holds",
   [](State& s, nb::handle v) { s.p.probs_kind = parse_probs_kind(str(v)); }},
  {"backend", "str", "'auto'", "'auto', 'reference', 'cpu' or 'cuda'",
   [](State& s, nb::handle v) { s.p.backend = parse_backend(str(v)); }},
  {"num_threads", "int", "0", "threads; 0 = all cores (results do not depend on it)",
   [](State& s, nb::handle v) { s.p.num_threads = static_cast<int>(i64(v)); }},
};
// clang-format on

// The defaults as Python objects, parsed once (kept for the process's life: no destructor runs
// after the interpreter has gone).
const std::vector<nb::object>& defaults() {
  static const std::vector<nb::object>* d = [] {
    auto* v = new std::vector<nb::object>;
    nb::object literal_eval = nb::module_::import_("ast").attr("literal_eval");
    for (const Entry& e : kParams) v->push_back(literal_eval(e.default_value));
    return v;
  }();
  return *d;
}

}  // namespace

std::vector<std::int64_t> int_list(nb::handle obj, const char* name) {
  std::vector<std::int64_t> out;
  for (nb::handle item : nb::iter(obj)) {
    if (!nb::try_cast(nb::int_(item), out.emplace_back())) throw Error(ErrorKind::type, name, "has an item that is not an int, expected a sequence of ints");
  }
  return out;
}

SdpaParams parse_params(const nb::kwargs& kwargs, Keep& keep, Callbacks& cb) {
  for (auto [key, value] : kwargs) {
    const std::string name = nb::cast<std::string>(key);
    bool known = false;
    for (const Entry& e : kParams) known = known || name == e.name;
    if (!known) throw Error(ErrorKind::value, name, "is not a parameter of attn's sdpa, expected one of the names in help(attn.sdpa_forward)");
  }
  SdpaParams p;
  State s{p, keep, cb};
  const std::vector<nb::object>& d = defaults();
  for (std::size_t i = 0; i < std::size(kParams); ++i) {
    const Entry& e = kParams[i];
    nb::handle value = kwargs.contains(e.name) ? nb::handle(kwargs[e.name]) : nb::handle(d[i]);
    if (value.is_none()) continue;
    try {
      e.set(s, value);
    } catch (const nb::cast_error&) {
      const nb::handle type(reinterpret_cast<PyObject*>(Py_TYPE(value.ptr())));
      throw Error(ErrorKind::type, e.name, "is a " + nb::cast<std::string>(type.attr("__name__")) + ", expected " + e.type);
    }
  }
  return p;
}

std::string params_doc() {
  std::string doc = "Keyword parameters (SdpaParams / MaskSpec of include/attn/sdpa.hpp), name: type = default:\n";
  for (const Entry& e : kParams) {
    doc += "  " + std::string(e.name) + ": " + e.type + " = " + e.default_value + "  (" + e.doc + ")\n";
  }
  doc +=
      "Arrays: numpy arrays or CPU torch tensors (f32, f64, bf16, f16), any strides, never copied.\n"
      "Raises TypeError for a wrong dtype or kind of object, ValueError otherwise, with attn's message.";
  return doc;
}

void register_params(nb::module_& m) {
  m.def(
      "sdpa_params",
      [] {
        nb::list out;
        const std::vector<nb::object>& d = defaults();
        for (std::size_t i = 0; i < std::size(kParams); ++i) {
          const Entry& e = kParams[i];
          out.append(nb::make_tuple(e.name, e.type, d[i], e.doc));
        }
        return out;
      },
      "The keyword parameters of sdpa_forward/sdpa_backward/explain: [(name, type, default, doc)], in\n"
      "the order the binding applies them (attn._params builds the torch ops from it).");
}

}  // namespace attn::py
