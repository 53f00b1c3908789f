// attn._core's safetensors and state-dict functions (include/attn/io/): the C++ reader hands out
// numpy arrays over its copy-on-write mapping (no copies; the arrays keep the file object alive),
// the writer takes C-contiguous arrays of any dtype, and map_names runs the C++ name maps (the
// Python package has its own in attn/state_dict.py; the tests check they agree).

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/name_maps.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/io/state_dict.hpp"
#include "convert.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {
namespace {

using nb::dlpack::dtype_code;

// The numpy dtype that carries a safetensors dtype's bytes: itself where numpy has it, else
// unsigned integers of the same width (BF16 -> uint16, F8_* -> uint8; attn/io.py re-views them).
nb::dlpack::dtype carrier_dtype(const std::string& name) {
  struct Row {
    const char* name;
    dtype_code code;
    std::uint8_t bits;
  };
  static const Row rows[] = {
      {"BOOL", dtype_code::Bool, 8},   {"U8", dtype_code::UInt, 8},     {"I8", dtype_code::Int, 8},
      {"F8_E5M2", dtype_code::UInt, 8}, {"F8_E4M3", dtype_code::UInt, 8}, {"F8_E8M0", dtype_code::UInt, 8},
      {"I16", dtype_code::Int, 16},    {"U16", dtype_code::UInt, 16},   {"F16", dtype_code::Float, 16},
      {"BF16", dtype_code::UInt, 16},  {"I32", dtype_code::Int, 32},    {"U32", dtype_code::UInt, 32},
      {"F32", dtype_code::Float, 32},  {"C64", dtype_code::Complex, 64}, {"F64", dtype_code::Float, 64},
      {"I64", dtype_code::Int, 64},    {"U64", dtype_code::UInt, 64}};
  for (const Row& r : rows)
    if (name == r.name) return {static_cast<std::uint8_t>(r.code), r.bits, 1};
  throw Error(ErrorKind::dtype, "dtype", "= " + name + ", which has no array carrier, expected a safetensors dtype");
}

struct PyFile {
  io::SafetensorsFile file;
};

nb::list tensors_of(PyFile& self) {
  nb::object owner = nb::find(&self);
  nb::list out;
  for (const io::SafetensorsEntry& e : self.file.tensors()) {
    std::vector<std::size_t> shape(e.shape.begin(), e.shape.end());
    // The mapping is private and writable (copy_on_write), so the arrays may be written.
    nb::ndarray<nb::numpy> a(const_cast<std::byte*>(e.data), shape.size(), shape.data(), owner, nullptr,
                             carrier_dtype(e.dtype));
    out.append(nb::make_tuple(e.name, e.dtype, nb::cast(e.shape), a.cast()));
  }
  return out;
}

void save(const std::string& path, const nb::list& tensors, const std::map<std::string, std::string>& metadata) {
  std::vector<nb::ndarray<nb::c_contig, nb::device::cpu>> keep;
  std::vector<io::SafetensorsRecord> records;
  for (nb::handle item : tensors) {
    auto t = nb::cast<nb::tuple>(item);
    const std::string name = nb::cast<std::string>(t[0]);
    io::SafetensorsRecord r{name, nb::cast<std::string>(t[1]), nb::cast<std::vector<std::int64_t>>(t[2]), {}};
    nb::ndarray<nb::c_contig, nb::device::cpu> a;
    ATTN_CHECK(nb::try_cast(t[3], a), type, "tensor \"" + name + "\"", "is ", nb::inst_name(t[3]).c_str(),
               ", expected a C-contiguous CPU array");
    r.bytes = {static_cast<const std::byte*>(a.data()), a.nbytes()};
    keep.push_back(std::move(a));
    records.push_back(std::move(r));
  }
  nb::gil_scoped_release release;
  io::save_safetensors(path, records, metadata);
}

// dict name -> array (rank 1-4, attn dtypes) -> StateDict -> map -> list of (name, array) copies.
nb::list map_names(const std::string& direction, const std::string& names, const nb::dict& state,
                   const std::string& prefix, std::int64_t q_dim) {
  io::StateDict in;
  Keep keep;
  for (auto [key, value] : state) {
    const std::string name = nb::cast<std::string>(key);
    in.insert_copy(name, to_view(value, name.c_str(), keep));
  }
  const io::NameMap map = io::parse_name_map(names);
  const io::NameMapOptions options{prefix, q_dim};
  ATTN_CHECK(direction == "to_canonical" || direction == "from_canonical", value, "direction", "is \"", direction,
             "\", expected to_canonical or from_canonical");
  auto* out = new io::StateDict(direction == "to_canonical" ? io::to_canonical(in, map, options)
                                                            : io::from_canonical(in, map, options));
  nb::capsule owner(out, [](void* p) noexcept { delete static_cast<io::StateDict*>(p); });
  nb::list result;
  for (const auto& [name, t] : out->items()) {
    const TensorView& v = t.view();
    std::vector<std::size_t> shape(v.shape.begin(), v.shape.begin() + v.rank);
    nb::ndarray<nb::numpy> a(t.data(), shape.size(), shape.data(), owner, nullptr,
                             carrier_dtype(io::safetensors_dtype_name(v.dtype)));
    result.append(nb::make_tuple(name, a.cast()));
  }
  return result;
}

}  // namespace

void register_io(nb::module_& m) {
  nb::class_<PyFile>(m, "SafetensorsFile",
                     "A validated safetensors file, memory-mapped copy-on-write (attn::io::SafetensorsFile).")
      .def(
          "__init__",
          [](PyFile* self, const std::string& path) {
            // The environment failing (open, stat, mmap: kind system) is OSError; a bad file is ValueError
            // (even when the problem is a dtype name).
            try {
              new (self) PyFile{io::SafetensorsFile::open(path, true)};
            } catch (const Error& e) {
              PyErr_SetString(e.kind() == ErrorKind::system ? PyExc_OSError : PyExc_ValueError, e.what());
              throw nb::python_error();
            }
          },
          "path"_a)
      .def("tensors", &tensors_of,
           "[(name, dtype, shape, array)] in file order; arrays are views of the mapping (bf16 as uint16, "
           "F8 as uint8)")
      .def("metadata", [](const PyFile& self) { return self.file.metadata(); });
  m.def("save_safetensors", &save, "path"_a, "tensors"_a, "metadata"_a,
        "Writes [(name, dtype, shape, C-contiguous array)] with the C++ writer.");
  m.def("map_names", &map_names, "direction"_a, "names"_a, "state"_a, "prefix"_a = "", "q_dim"_a = 0,
        "The C++ name maps on a dict of arrays: returns [(name, array)].");
}

}  // namespace attn::py
