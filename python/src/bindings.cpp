// attn._core: the C++ API of include/attn/sdpa.hpp for Python. Arrays cross by DLPack or the
// buffer protocol without copies (any strides); keyword parameters are the table of params.cpp;
// attn::Error becomes ValueError (TypeError for dtypes) with the same message. The GIL is released
// while a kernel runs; Python callbacks (mask_mod, score_mod) take it back for each call.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/sdpa.hpp"
#include "convert.hpp"
#include "params.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {

void register_kv_cache(nb::module_& m);
void register_linear(nb::module_& m);
void register_sparse(nb::module_& m);
void register_io(nb::module_& m);
void register_models(nb::module_& m);

namespace {

// numpy's / torch's name of a DLPack dtype ("uint8", "int16", "complex64", "bfloat16").
std::string dlpack_dtype_name(nb::dlpack::dtype t) {
  using C = nb::dlpack::dtype_code;
  const char* base = "";
  switch (static_cast<C>(t.code)) {
    case C::Int: base = "int"; break;
    case C::UInt: base = "uint"; break;
    case C::Float: base = "float"; break;
    case C::Bfloat: base = "bfloat"; break;
    case C::Complex: base = "complex"; break;
    case C::Bool: return "bool";
    default: return detail::concat("code ", int(t.code), " with ", int(t.bits), " bits");
  }
  return detail::concat(base, int(t.bits));
}

// The array's attn dtype. Nothing is reinterpreted: a uint8 array (torch's old byte masks) is
// refused like every other dtype attn does not have, since a mask of 0/1 bytes could mean
// "attend" or "blocked" depending on the API it came from.
DType dtype_of(const nb::ndarray<>& a, const char* name) {
  const nb::dlpack::dtype t = a.dtype();
  using C = nb::dlpack::dtype_code;
  ATTN_CHECK(t.lanes == 1, dtype, name, "has a vector dtype (lanes = ", int(t.lanes), "), expected a scalar dtype");
  const auto code = static_cast<C>(t.code);
  if (code == C::Float && t.bits == 32) return DType::f32;
  if (code == C::Float && t.bits == 64) return DType::f64;
  if (code == C::Float && t.bits == 16) return DType::f16;
  if (code == C::Bfloat && t.bits == 16) return DType::bf16;
  if (code == C::Bool && t.bits == 8) return DType::boolean;
  if (code == C::Int && t.bits == 8) return DType::i8;
  if (code == C::Int && t.bits == 32) return DType::i32;
  if (code == C::Int && t.bits == 64) return DType::i64;
  const bool byte_mask = code == C::UInt && t.bits == 8;
  throw Error(ErrorKind::dtype, name,
              detail::concat("has dtype ", dlpack_dtype_name(t),
                             ", which attn does not have, expected float32, float64, bfloat16, float16, bool, int8, "
                             "int32 or int64",
                             byte_mask ? " (for a mask, pass a bool array, e.g. mask != 0, or a float bias)" : ""));
}

}  // namespace

TensorView to_view(nb::handle obj, const char* name, Keep& keep) {
  ATTN_CHECK(!obj.is_none(), value, name, "is None, expected an array");
  nb::object o = nb::borrow(obj);
  if (nb::hasattr(o, "requires_grad") && nb::hasattr(o, "detach") && nb::cast<bool>(o.attr("requires_grad")))
    o = o.attr("detach")();
  nb::ndarray<> a;
  if (!nb::try_cast(o, a)) {
    const std::string type = nb::cast<std::string>(nb::str(nb::handle(reinterpret_cast<PyObject*>(Py_TYPE(o.ptr())))));
    throw Error(ErrorKind::type, name, "is a " + type + ", expected a writable numpy array or a CPU torch tensor (DLPack, no copies)");
  }
  ATTN_CHECK(a.device_type() == nb::device::cpu::value, value, name, "lives on device type ", a.device_type(),
             ", expected a CPU array (attn's Python package runs on the CPU; move it with .cpu())");
  ATTN_CHECK(a.ndim() >= 1 && a.ndim() <= kMaxRank, shape, name, "has rank ", a.ndim(), ", expected rank 1 to ", kMaxRank);
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
      // The Python type follows the error's kind: a wrong dtype or a wrong kind of object is a
      // TypeError, everything else (values, shapes, memory, unsupported calls) a ValueError.
      const bool type_error = e.kind() == ErrorKind::dtype || e.kind() == ErrorKind::type;
      PyErr_SetString(type_error ? PyExc_TypeError : PyExc_ValueError, e.what());
    }
  });
}

namespace {

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

}  // namespace
}  // namespace attn::py

NB_MODULE(_core, m) {
  using namespace attn::py;
  m.doc() = "attn: exact attention (C++ core). See the attn package for the documented API.";
  register_errors();
  register_params(m);
  const std::string params = params_doc();

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
                   "[B, Hq, Nq, Dv] (and lse [B, Hq, Nq], f64 for f64 inputs else f32, probs [B, Hq, Nq, Nk] when\n"
                   "given).\n"
                   "q [B, Hq, Nq, D], k [B, Hkv, Nk, D], v [B, Hkv, Nk, Dv].") + "\n" + params).c_str());

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
       "\n" + params)
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
  register_text(m);
  register_linear(m);
  register_sparse(m);
  register_io(m);
  register_models(m);
  register_sentence(m);
}
