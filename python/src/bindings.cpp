// attn._core: the C++ API of include/attn/sdpa.hpp for Python. Arrays cross by DLPack or the
// buffer protocol without copies (any strides); keyword parameters mirror SdpaParams/MaskSpec;
// attn::Error becomes ValueError (TypeError for dtypes) with the same message. The GIL is released
// while a kernel runs; Python callbacks (mask_mod, score_mod) take it back for each call.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/sdpa.hpp"
#include "convert.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {

void register_kv_cache(nb::module_& m);

namespace {

DType dtype_of(const nb::ndarray<>& a, const char* name) {
  const nb::dlpack::dtype t = a.dtype();
  using C = nb::dlpack::dtype_code;
  ATTN_CHECK(t.lanes == 1, name, "has a vector dtype (lanes = ", int(t.lanes), "), expected a scalar dtype");
  const auto code = static_cast<C>(t.code);
  if (code == C::Float && t.bits == 32) return DType::f32;
  if (code == C::Float && t.bits == 64) return DType::f64;
  if (code == C::Float && t.bits == 16) return DType::f16;
  if (code == C::Bfloat && t.bits == 16) return DType::bf16;
  if (code == C::Bool && t.bits == 8) return DType::boolean;
  if (code == C::UInt && t.bits == 8) return DType::boolean;  // torch's old uint8 masks: non-zero = true
  if (code == C::Int && t.bits == 8) return DType::i8;
  if (code == C::Int && t.bits == 32) return DType::i32;
  if (code == C::Int && t.bits == 64) return DType::i64;
  throw Error(name, detail::concat("has dtype code ", int(t.code), " with ", int(t.bits),
                                   " bits, which attn does not have (expected f32, f64, bf16, f16, bool, i8, i32 or i64)"));
}

}  // namespace

TensorView to_view(nb::handle obj, const char* name, Keep& keep) {
  ATTN_CHECK(!obj.is_none(), name, "is required but was None");
  nb::object o = nb::borrow(obj);
  if (nb::hasattr(o, "requires_grad") && nb::hasattr(o, "detach") && nb::cast<bool>(o.attr("requires_grad")))
    o = o.attr("detach")();
  nb::ndarray<> a;
  if (!nb::try_cast(o, a)) {
    const std::string type = nb::cast<std::string>(nb::str(nb::handle(reinterpret_cast<PyObject*>(Py_TYPE(o.ptr())))));
    throw Error(name, "is a " + type + ", expected a writable numpy array or a CPU torch tensor (DLPack, no copies)");
  }
  ATTN_CHECK(a.device_type() == nb::device::cpu::value, name, "lives on device type ", a.device_type(),
             ", but attn's Python package runs on the CPU (move it with .cpu())");
  ATTN_CHECK(a.ndim() >= 1 && a.ndim() <= kMaxRank, name, "has rank ", a.ndim(), ", expected rank 1 to ", kMaxRank);
  TensorView v;
  v.data = a.data();
  v.dtype = dtype_of(a, name);
  v.rank = static_cast<int>(a.ndim());
  for (int d = 0; d < v.rank; ++d) {
    v.shape[d] = static_cast<std::int64_t>(a.shape(d));
    v.strides[d] = a.stride(d);
  }
  keep.push_back(std::move(a));
  return v;
}

TensorView to_optional_view(nb::handle obj, const char* name, Keep& keep) {
  return obj.is_none() ? TensorView{} : to_view(obj, name, keep);
}

void register_errors() {
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      const bool about_dtype = std::strstr(e.what(), "dtype") != nullptr;
      PyErr_SetString(about_dtype ? PyExc_TypeError : PyExc_ValueError, e.what());
    }
  });
}

namespace {

// Python callbacks run on the kernel's threads: each call takes the GIL; the first exception is
// kept and re-raised after the kernel returns (an exception may not cross an OpenMP region).
struct Callbacks {
  std::mutex mutex;
  std::exception_ptr error;
  void fail() {
    std::lock_guard<std::mutex> lock(mutex);
    if (!error) error = std::current_exception();
  }
  void rethrow() {
    if (error) std::rethrow_exception(error);
  }
};

Alignment parse_alignment(const std::string& s) {
  if (s == "top_left") return Alignment::top_left;
  if (s == "bottom_right") return Alignment::bottom_right;
  throw Error("alignment", "= '" + s + "', expected 'top_left' or 'bottom_right'");
}

Backend parse_backend(const std::string& s) {
  if (s == "auto" || s == "automatic") return Backend::automatic;
  if (s == "reference") return Backend::reference;
  if (s == "cpu") return Backend::cpu;
  if (s == "cuda") return Backend::cuda;
  throw Error("backend", "= '" + s + "', expected 'auto', 'reference', 'cpu' or 'cuda'");
}

std::vector<std::int64_t> int_list(nb::handle obj, const char* name) {
  if (obj.is_none()) return {};
  std::vector<std::int64_t> out;
  for (nb::handle item : nb::iter(obj)) {
    if (!nb::try_cast(nb::int_(item), out.emplace_back()))
      throw Error(name, "must be a sequence of ints");
  }
  return out;
}

std::vector<double> float_list(nb::handle obj, const char* name) {
  if (obj.is_none()) return {};
  std::vector<double> out;
  for (nb::handle item : nb::iter(obj)) {
    if (!nb::try_cast(nb::float_(item), out.emplace_back()))
      throw Error(name, "must be a sequence of floats");
  }
  return out;
}

// SdpaParams from keyword arguments (names of SdpaParams/MaskSpec; block_mask = keep bits with
// block_size = n or (qb, kb)). Unknown names are errors, so a typo never passes silently.
SdpaParams parse_params(const nb::kwargs& kwargs, Keep& keep, Callbacks& cb) {
  SdpaParams p;
  MaskSpec& m = p.mask;
  nb::handle block_size;
  for (auto [key_obj, value] : kwargs) {
    const std::string key = nb::cast<std::string>(key_obj);
    const char* k = key.c_str();
    auto as_int = [&] { return nb::cast<std::int64_t>(value); };
    auto as_float = [&] { return nb::cast<double>(value); };
    if (key == "scale") { if (!value.is_none()) p.scale = as_float(); }
    else if (key == "causal") m.causal = nb::cast<bool>(value);
    else if (key == "window_left") m.window_left = as_int();
    else if (key == "window_right") m.window_right = as_int();
    else if (key == "alignment") m.alignment = parse_alignment(nb::cast<std::string>(value));
    else if (key == "q_lengths") m.q_lengths = int_list(value, k);
    else if (key == "k_lengths") m.k_lengths = int_list(value, k);
    else if (key == "cu_seqlens_q") m.cu_seqlens_q = int_list(value, k);
    else if (key == "cu_seqlens_k") m.cu_seqlens_k = int_list(value, k);
    else if (key == "bool_mask") m.bool_mask = to_optional_view(value, "params.mask.bool_mask", keep);
    else if (key == "bias") m.bias = to_optional_view(value, "params.mask.bias", keep);
    else if (key == "alibi_slopes") m.alibi_slopes = float_list(value, k);
    else if (key == "softcap") m.softcap = as_float();
    else if (key == "block_mask") {
      if (!value.is_none()) m.block_mask = BlockMask{128, 128, to_view(value, "params.mask.block_mask.keep", keep)};
    } else if (key == "block_size") block_size = value;
    else if (key == "mask_mod") {
      if (!value.is_none()) {
        nb::object fn = nb::borrow(value);
        m.mask_mod = [fn, &cb](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
          nb::gil_scoped_acquire gil;
          try { return nb::cast<bool>(fn(b, h, i, j)); } catch (...) { cb.fail(); return false; }
        };
      }
    } else if (key == "score_mod" || key == "score_mod_grad") {
      if (!value.is_none()) {
        nb::object fn = nb::borrow(value);
        auto call = [fn, &cb](double s, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
          nb::gil_scoped_acquire gil;
          try { return nb::cast<double>(fn(s, b, h, i, j)); } catch (...) { cb.fail(); return s; }
        };
        (key == "score_mod" ? m.score_mod.value : m.score_mod.grad) = call;
      }
    } else if (key == "dropout_p") p.dropout_p = as_float();
    else if (key == "dropout_seed") p.dropout_seed = nb::cast<std::uint64_t>(value);
    else if (key == "dropout_offset") p.dropout_offset = nb::cast<std::uint64_t>(value);
    else if (key == "probs_kind") {
      const std::string s = nb::cast<std::string>(value);
      ATTN_CHECK(s == "pre_dropout" || s == "post_dropout", "probs_kind", "= '", s, "', expected 'pre_dropout' or 'post_dropout'");
      p.probs_kind = s == "pre_dropout" ? ProbsKind::pre_dropout : ProbsKind::post_dropout;
    } else if (key == "backend") p.backend = parse_backend(nb::cast<std::string>(value));
    else if (key == "num_threads") p.num_threads = static_cast<int>(as_int());
    else
      throw Error(key, "is not a parameter of attn's sdpa (see help(attn.sdpa_forward) for the names)");
  }
  if (block_size.is_valid() && !block_size.is_none()) {
    ATTN_CHECK(m.block_mask.has_value(), "block_size", "was given without block_mask");
    if (nb::isinstance<nb::int_>(block_size)) {
      m.block_mask->q_block = m.block_mask->k_block = nb::cast<std::int64_t>(block_size);
    } else {
      const std::vector<std::int64_t> qk = int_list(block_size, "block_size");
      ATTN_CHECK(qk.size() == 2, "block_size", "has ", qk.size(), " entries, expected an int or (q_block, k_block)");
      m.block_mask->q_block = qk[0];
      m.block_mask->k_block = qk[1];
    }
  }
  return p;
}

nb::list verdicts_to_python(const std::vector<BackendVerdict>& verdicts) {
  nb::list out;
  for (const BackendVerdict& v : verdicts) {
    nb::dict d;
    d["backend"] = backend_name(v.backend);
    d["can_run"] = v.can_run;
    d["reasons"] = v.reasons;
    out.append(d);
  }
  return out;
}

struct ForwardCall {
  Keep keep;
  Callbacks cb;
  SdpaOutputs outputs;
  TensorView q, k, v;
  SdpaParams params;
  ForwardCall(nb::handle out, nb::handle q_, nb::handle k_, nb::handle v_, nb::handle lse, nb::handle probs,
              const nb::kwargs& kwargs) {
    outputs.out = to_view(out, "out", keep);
    q = to_view(q_, "q", keep);
    k = to_view(k_, "k", keep);
    v = to_view(v_, "v", keep);
    outputs.lse = to_optional_view(lse, "lse", keep);
    outputs.probs = to_optional_view(probs, "probs", keep);
    params = parse_params(kwargs, keep, cb);
  }
};

struct BackwardCall {
  Keep keep;
  Callbacks cb;
  SdpaGrads grads;
  TensorView dout, q, k, v, out, lse, dlse;
  SdpaParams params;
  BackwardCall(nb::handle dq, nb::handle dk, nb::handle dv, nb::handle dout_, nb::handle q_, nb::handle k_,
               nb::handle v_, nb::handle out_, nb::handle lse_, nb::handle dbias, nb::handle dlse_,
               const nb::kwargs& kwargs) {
    grads.dq = to_view(dq, "dq", keep);
    grads.dk = to_view(dk, "dk", keep);
    grads.dv = to_view(dv, "dv", keep);
    grads.dbias = to_optional_view(dbias, "dbias", keep);
    dout = to_view(dout_, "dout", keep);
    q = to_view(q_, "q", keep);
    k = to_view(k_, "k", keep);
    v = to_view(v_, "v", keep);
    out = to_view(out_, "out", keep);
    lse = to_view(lse_, "lse", keep);
    dlse = to_optional_view(dlse_, "dlse", keep);
    params = parse_params(kwargs, keep, cb);
  }
};

constexpr const char* kParamsDoc = R"(
Keyword parameters (SdpaParams / MaskSpec of include/attn/sdpa.hpp):
  scale=None (1/sqrt(D)), causal=False, window_left=-1, window_right=-1,
  alignment='bottom_right' | 'top_left', q_lengths, k_lengths, cu_seqlens_q, cu_seqlens_k,
  bool_mask (bool/i8/u8 array, True = attend, PyTorch broadcasting), bias (float array, added),
  alibi_slopes (one per query head), softcap=0, block_mask (keep bits [B|1, Hq|1, nqb, nkb]),
  block_size=128 or (q_block, k_block), mask_mod(b, h, i, j) -> bool, score_mod(s, b, h, i, j),
  score_mod_grad(s, b, h, i, j), dropout_p=0, dropout_seed=0, dropout_offset=0,
  probs_kind='post_dropout' | 'pre_dropout', backend='auto' | 'reference' | 'cpu', num_threads=0.
Arrays: numpy arrays or CPU torch tensors (f32, f64, bf16, f16), any strides, never copied.
Raises ValueError (TypeError for dtype problems) with attn's message.)";

}  // namespace
}  // namespace attn::py

NB_MODULE(_core, m) {
  using namespace attn::py;
  m.doc() = "attn: exact attention (C++ core). See the attn package for the documented API.";
  register_errors();

  m.def(
      "sdpa_forward",
      [](nb::handle out, nb::handle q, nb::handle k, nb::handle v, nb::handle lse, nb::handle probs, nb::kwargs kwargs) {
        ForwardCall c(out, q, k, v, lse, probs, kwargs);
        {
          nb::gil_scoped_release release;
          attn::sdpa_forward(c.outputs, c.q, c.k, c.v, c.params);
        }
        c.cb.rethrow();
      },
      "out"_a, "q"_a, "k"_a, "v"_a, "lse"_a = nb::none(), "probs"_a = nb::none(), "params"_a,
      (std::string("sdpa_forward(out, q, k, v, lse=None, probs=None, **params): writes softmax(S)·V into out\n"
                   "[B, Hq, Nq, Dv] (and lse [B, Hq, Nq] f32, probs [B, Hq, Nq, Nk] when given).\n"
                   "q [B, Hq, Nq, D], k [B, Hkv, Nk, D], v [B, Hkv, Nk, Dv].") + kParamsDoc).c_str());

  m.def(
      "sdpa_backward",
      [](nb::handle dq, nb::handle dk, nb::handle dv, nb::handle dout, nb::handle q, nb::handle k, nb::handle v,
         nb::handle out, nb::handle lse, nb::handle dbias, nb::handle dlse, nb::kwargs kwargs) {
        BackwardCall c(dq, dk, dv, dout, q, k, v, out, lse, dbias, dlse, kwargs);
        {
          nb::gil_scoped_release release;
          attn::sdpa_backward(c.grads, c.dout, c.q, c.k, c.v, c.out, c.lse, c.params, c.dlse);
        }
        c.cb.rethrow();
      },
      "dq"_a, "dk"_a, "dv"_a, "dout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "dbias"_a = nb::none(),
      "dlse"_a = nb::none(), "params"_a,
      (std::string("sdpa_backward(dq, dk, dv, dout, q, k, v, out, lse, dbias=None, dlse=None, **params): gradients\n"
                   "of sdpa_forward, written into dq, dk, dv (and dbias, shaped like params bias). Pass the\n"
                   "forward's out and lse and the same parameters; dlse (shaped like lse) is the gradient\n"
                   "with respect to lse, when the loss uses it.") +
       kParamsDoc)
          .c_str());

  m.def(
      "explain",
      [](nb::handle out, nb::handle q, nb::handle k, nb::handle v, nb::handle lse, nb::handle probs, nb::kwargs kwargs) {
        ForwardCall c(out, q, k, v, lse, probs, kwargs);
        return verdicts_to_python(attn::explain(c.outputs, c.q, c.k, c.v, c.params));
      },
      "out"_a, "q"_a, "k"_a, "v"_a, "lse"_a = nb::none(), "probs"_a = nb::none(), "params"_a,
      "explain(out, q, k, v, lse=None, probs=None, **params) -> [{'backend', 'can_run', 'reasons'}]:\n"
      "each backend's verdict on this forward call, in dispatch order.");

  m.def(
      "explain_backward",
      [](nb::handle dq, nb::handle dk, nb::handle dv, nb::handle dout, nb::handle q, nb::handle k, nb::handle v,
         nb::handle out, nb::handle lse, nb::handle dbias, nb::handle dlse, nb::kwargs kwargs) {
        BackwardCall c(dq, dk, dv, dout, q, k, v, out, lse, dbias, dlse, kwargs);
        return verdicts_to_python(attn::explain(c.grads, c.dout, c.q, c.k, c.v, c.out, c.lse, c.params, c.dlse));
      },
      "dq"_a, "dk"_a, "dv"_a, "dout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "dbias"_a = nb::none(),
      "dlse"_a = nb::none(), "params"_a,
      "explain_backward(...): each backend's verdict on this backward call (arguments of sdpa_backward).");

  m.def("version", [] { return std::string(attn::version()); }, "The C++ library version.");
  register_kv_cache(m);
}
