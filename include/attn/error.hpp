#pragma once
/// attn::Error — the one exception type of attn, with the one message format of every attn error
/// (core, KV cache, CLI and the Python package alike):
///
///   "<argument>: <what was seen>, expected <what was expected>[ (<why, or more context>)]"
///
/// <argument> is the offending argument as the caller spells it ("q", "params.mask.bias",
/// "config.page_size", "q.shape[1]"); <what was seen> states the fact about it, without repeating
/// the argument's name first ("has dtype f64", "= 1.5", "k.shape[3] = 96", "overlaps q in memory",
/// "is not given"); then what would have been accepted. For example
///   "k: k.shape[3] = 96, expected 128 = q.shape[3] (head dims of q and k must match; shape [2, 2, 5, 96])"
///   "params.dropout_p: = 1, expected a probability in [0, 1)"
/// `kind()` says what sort of mistake it is, so that callers branch on it rather than on the text
/// (the Python package raises TypeError for dtype and type, ValueError for the others).

#include <exception>
#include <sstream>
#include <string>
#include <utility>

namespace attn {

/// What is wrong with the argument an attn::Error names.
enum class ErrorKind {
  value,        ///< a value out of range or inconsistent with the others (dropout_p, lengths, alignment)
  shape,        ///< a rank, a shape or a broadcast that does not fit
  dtype,        ///< an element type that is not accepted there
  type,         ///< an object of the wrong kind (not an array, not a sequence of ints)
  layout,       ///< memory: strides, overlapping outputs, a null data pointer
  unsupported,  ///< a valid request nothing here can run (no backend, an ISA the CPU lacks, a read-only cache)
  system,       ///< the environment failed (a file that cannot be written, a child process)
};

/// "value", "shape", "dtype", "type", "layout", "unsupported" or "system".
constexpr const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::value: return "value";
    case ErrorKind::shape: return "shape";
    case ErrorKind::dtype: return "dtype";
    case ErrorKind::type: return "type";
    case ErrorKind::layout: return "layout";
    case ErrorKind::unsupported: return "unsupported";
    case ErrorKind::system: return "system";
  }
  return "?";
}

/// Thrown for every invalid call. `argument()` is the offending argument ("q", "params.dropout_p"),
/// `kind()` the sort of mistake, `what()` the whole message "argument: message".
class Error : public std::exception {
 public:
  Error(ErrorKind kind, std::string argument, std::string message)
      : kind_(kind),
        argument_(std::move(argument)),
        message_(argument_.empty() ? message : argument_ + ": " + message) {}
  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& argument() const noexcept { return argument_; }
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
  std::string argument_;
  std::string message_;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

}  // namespace attn

/// ATTN_CHECK(cond, kind, "arg", parts...): throws attn::Error(ErrorKind::kind, "arg", parts...)
/// when cond is false; the parts form the message "<seen>, expected <expected>[ (<why>)]".
#define ATTN_CHECK(cond, kind, argument, ...)                                                              \
  do {                                                                                                    \
    if (!(cond)) throw ::attn::Error(::attn::ErrorKind::kind, (argument), ::attn::detail::concat(__VA_ARGS__)); \
  } while (0)
