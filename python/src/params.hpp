#pragma once
// The keyword parameters of attn's sdpa calls (SdpaParams / MaskSpec), listed once in params.cpp:
// the binding parses keyword arguments by walking that table, and attn._params reads the same
// table (attn._core.sdpa_params()) to generate the torch.library schemas and signatures
// (docs/architecture.md, "Python").

#include <nanobind/nanobind.h>

#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "attn/sdpa.hpp"
#include "convert.hpp"

namespace attn::py {

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

/// SdpaParams from keyword arguments: every entry of the table, the given value or its default.
/// A name that is not in the table is an error, so a typo never passes silently.
SdpaParams parse_params(const nb::kwargs& kwargs, Keep& keep, Callbacks& cb);

/// "Keyword parameters: ..." for the docstrings, one line per entry of the table.
std::string params_doc();

/// A Python sequence of ints as int64s; attn::Error (kind type) naming `name` for an item that is not one.
std::vector<std::int64_t> int_list(nb::handle obj, const char* name);

/// attn._core.sdpa_params() -> [(name, type, default, doc)], the table in its order.
void register_params(nb::module_& m);

}  // namespace attn::py
