#pragma once
/// Tensors: DType, a non-owning strided TensorView (rank <= 4, element strides) and an owning,
/// 64-byte-aligned Tensor. Logical layouts are in docs/contract.md §2: q [B, Hq, Nq, D], k [B, Hkv, Nk, D],
/// v [B, Hkv, Nk, Dv], out [B, Hq, Nq, Dv], lse [B, Hq, Nq]. BSHD memory is the same logical tensor
/// with other strides.

#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

namespace attn {

/// Element types. Compute is fp32 (fp64 in the reference). `boolean` is one byte, non-zero = true.
enum class DType : std::uint8_t { f32, f64, bf16, f16, i8, i32, i64, boolean };

/// Bytes per element.
constexpr std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::bf16: case DType::f16: return 2;
    case DType::i8: case DType::boolean: return 1;
  }
  return 1;
}
/// "f32", "bf16", ...
const char* dtype_name(DType dtype);
/// True for f32, f64, bf16, f16.
bool is_floating(DType dtype);

inline constexpr int kMaxRank = 4;

/// A view of strided memory: pointer, dtype, shape and element strides. Does not own the memory.
/// A default-constructed view (rank 0, null data) means "not given" for optional arguments.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  int rank = 0;
  std::array<std::int64_t, kMaxRank> shape{};
  std::array<std::int64_t, kMaxRank> strides{};

  TensorView() = default;
  /// A view with the given shape and strides (element strides).
  TensorView(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
             std::initializer_list<std::int64_t> strides);
  /// A row-major (contiguous) view of the given shape.
  TensorView(void* data, DType dtype, std::initializer_list<std::int64_t> shape);

  /// True when the view was given (rank > 0).
  bool defined() const { return rank > 0; }
  std::int64_t numel() const;
  std::int64_t size(int axis) const { return shape[static_cast<std::size_t>(axis)]; }
  std::int64_t stride(int axis) const { return strides[static_cast<std::size_t>(axis)]; }
  /// Element offset of an index (one entry per axis, missing trailing axes are 0).
  std::int64_t offset(std::initializer_list<std::int64_t> index) const {
    std::int64_t off = 0;
    std::size_t a = 0;
    for (std::int64_t i : index) off += i * strides[a++];
    return off;
  }
  /// Byte address of an element offset.
  void* at(std::int64_t element_offset) const {
    return static_cast<char*>(data) + element_offset * static_cast<std::int64_t>(dtype_size(dtype));
  }
  /// The view with axes reordered: result axis a is this view's axis order[a].
  TensorView permute(std::initializer_list<int> order) const;
  /// True when the elements are laid out row-major without gaps.
  bool is_contiguous() const;
  /// "[2, 4, 7, 64]".
  std::string shape_string() const;
  /// Half-open byte range [first, last) spanned by the view (empty range for numel 0).
  std::pair<const char*, const char*> byte_span() const;
};

/// Owning tensor with 64-byte-aligned, row-major storage (uninitialised unless filled).
class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, std::initializer_list<std::int64_t> shape);
  /// The same for a shape known at run time (rank 1 to kMaxRank).
  Tensor(DType dtype, std::span<const std::int64_t> shape);
  /// Allocates `guard_elems` extra elements on both sides of the data (guard bands for tests) and
  /// fills the whole allocation with NaN (floating dtypes) or 0xFF bytes (others).
  static Tensor with_guard(DType dtype, std::initializer_list<std::int64_t> shape, std::int64_t guard_elems);

  const TensorView& view() const { return view_; }
  operator const TensorView&() const { return view_; }  // NOLINT: a Tensor is usable as its view
  void* data() const { return view_.data; }
  template <class T>
  T* ptr() const { return static_cast<T*>(view_.data); }
  std::int64_t numel() const { return view_.numel(); }
  DType dtype() const { return view_.dtype; }
  /// The whole allocation, guard bands included (for filling guards).
  void* storage() const { return storage_.get(); }
  std::int64_t storage_elems() const { return storage_elems_; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> storage_;
  std::int64_t storage_elems_ = 0;
  TensorView view_;
};

/// fp32 -> bf16 with round-to-nearest-even; NaN stays NaN (quiet), Inf stays Inf.
std::uint16_t f32_to_bf16(float x);
float bf16_to_f32(std::uint16_t h);
/// fp32 -> IEEE fp16 with round-to-nearest-even, overflow to Inf, subnormals kept; NaN stays NaN.
std::uint16_t f32_to_f16(float x);
float f16_to_f32(std::uint16_t h);

/// Reads element `offset` of a floating or integer view as double.
double load_f64(const TensorView& t, std::int64_t offset);
/// Writes `value` to element `offset`, rounding to the view's dtype.
void store_f64(const TensorView& t, std::int64_t offset, double value);

}  // namespace attn
