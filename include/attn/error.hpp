#pragma once
/// attn::Error — the one exception type of attn. Its message names the argument, the axis, the
/// value seen and what was expected, e.g.
///   "k.shape[3] = 96, but q.shape[3] = 128 (head dims of q and k must match)".

#include <exception>
#include <sstream>
#include <string>
#include <utility>

namespace attn {

/// Thrown for every invalid call. `argument()` is the offending argument ("q", "params.dropout_p").
class Error : public std::exception {
 public:
  Error(std::string argument, std::string message)
      : argument_(std::move(argument)), message_(argument_.empty() ? message : argument_ + ": " + message) {}
  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& argument() const noexcept { return argument_; }

 private:
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

/// ATTN_CHECK(cond, "arg", parts...): throws attn::Error("arg", parts...) when cond is false.
#define ATTN_CHECK(cond, argument, ...)                                    \
  do {                                                                     \
    if (!(cond)) throw ::attn::Error((argument), ::attn::detail::concat(__VA_ARGS__)); \
  } while (0)
