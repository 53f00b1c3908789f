#pragma once
/// nn::Dropout (docs/nn.md): y = x·keep/(1 − p) elementwise while training, the identity otherwise.
/// The keep bits come from Philox4x32-10 (the generator of attn's attention dropout, docs/contract.md)
/// with key = seed and counter (⌊i/4⌋ low and high words, stream, offset): element i of a call is
/// kept iff word i mod 4 ≥ ⌊p·2³²⌋. Nothing is stored: backward replays the bits of the same
/// (seed, stream, offset), so forward and backward agree bit for bit and every call is reproducible.

#include <cstdint>

namespace attn::nn {

template <class T>
class Dropout {
 public:
  /// Throws attn::Error for p outside [0, 1). `stream` separates the dropouts of one model.
  explicit Dropout(double p = 0.0, std::uint64_t seed = 0, std::uint32_t stream = 0);
  double p() const { return p_; }
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }
  /// True when forward changes anything (training and p > 0).
  bool active() const { return training_ && p_ > 0.0; }

  /// y[i] = x[i]·keep(i)/(1 − p), i < n (y may be x). `offset` names the call (the caller advances it).
  void forward(const T* x, std::int64_t n, T* y, std::uint64_t offset) const;
  /// dx[i] = dy[i]·keep(i)/(1 − p) with the forward's offset (dx may be dy).
  void backward(const T* dy, std::int64_t n, T* dx, std::uint64_t offset) const { forward(dy, n, dx, offset); }
  /// The keep decision of element i of call `offset`.
  bool keep(std::int64_t i, std::uint64_t offset) const;

 private:
  double p_ = 0;
  std::uint64_t seed_ = 0;
  std::uint32_t stream_ = 0, threshold_ = 0;
  bool training_ = true;
};

extern template class Dropout<float>;
extern template class Dropout<double>;

}  // namespace attn::nn
