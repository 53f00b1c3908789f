// TensorView / Tensor and the bf16/fp16 conversions (round-to-nearest-even, NaN and Inf kept).

#include "attn/tensor.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <numeric>
#include <sstream>

#include "attn/error.hpp"
#include "core/half.hpp"

namespace attn {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i8: return "i8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::boolean: return "bool";
  }
  return "?";
}

bool is_floating(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16 || dtype == DType::f16;
}

namespace {
void set_shape(TensorView& t, std::span<const std::int64_t> shape) {
  ATTN_CHECK(shape.size() <= kMaxRank, shape, "shape", "has rank ", shape.size(), ", expected a rank <= ", kMaxRank);
  t.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), t.shape.begin());
  for (int a = 0; a < t.rank; ++a) ATTN_CHECK(t.shape[a] >= 0, shape, "shape", "shape[", a, "] = ", t.shape[a], ", expected >= 0");
}
void set_contiguous_strides(TensorView& t) {
  std::int64_t s = 1;
  for (int a = t.rank - 1; a >= 0; --a) {
    t.strides[a] = s;
    s *= std::max<std::int64_t>(t.shape[a], 1);
  }
}
}  // namespace

TensorView::TensorView(void* data_, DType dtype_, std::initializer_list<std::int64_t> shape_,
                       std::initializer_list<std::int64_t> strides_)
    : data(data_), dtype(dtype_) {
  set_shape(*this, {shape_.begin(), shape_.size()});
  ATTN_CHECK(strides_.size() == shape_.size(), shape, "strides", "has ", strides_.size(), " entries, expected ", rank, " (one per axis of the shape)");
  std::copy(strides_.begin(), strides_.end(), strides.begin());
}

TensorView::TensorView(void* data_, DType dtype_, std::initializer_list<std::int64_t> shape_)
    : data(data_), dtype(dtype_) {
  set_shape(*this, {shape_.begin(), shape_.size()});
  set_contiguous_strides(*this);
}

std::int64_t TensorView::numel() const {
  if (rank == 0) return 0;
  std::int64_t n = 1;
  for (int a = 0; a < rank; ++a) n *= shape[a];
  return n;
}

TensorView TensorView::permute(std::initializer_list<int> order) const {
  ATTN_CHECK(static_cast<int>(order.size()) == rank, value, "order", "has ", order.size(), " axes, expected ", rank, " (a permutation of the view's axes)");
  TensorView r = *this;
  int a = 0;
  for (int src : order) {
    ATTN_CHECK(src >= 0 && src < rank, value, "order", "names axis ", src, ", expected an axis in [0, ", rank, ")");
    r.shape[a] = shape[src];
    r.strides[a] = strides[src];
    ++a;
  }
  return r;
}

bool TensorView::is_contiguous() const {
  std::int64_t s = 1;
  for (int a = rank - 1; a >= 0; --a) {
    if (shape[a] != 1 && strides[a] != s) return false;
    s *= shape[a];
  }
  return true;
}

std::string TensorView::shape_string() const {
  std::ostringstream os;
  os << '[';
  for (int a = 0; a < rank; ++a) os << (a ? ", " : "") << shape[a];
  os << ']';
  return os.str();
}

std::pair<const char*, const char*> TensorView::byte_span() const {
  const char* base = static_cast<const char*>(data);
  if (numel() == 0 || data == nullptr) return {base, base};
  std::int64_t lo = 0, hi = 0;
  for (int a = 0; a < rank; ++a) {
    const std::int64_t reach = (shape[a] - 1) * strides[a];
    (reach < 0 ? lo : hi) += reach;
  }
  const auto esize = static_cast<std::int64_t>(dtype_size(dtype));
  return {base + lo * esize, base + (hi + 1) * esize};
}

void Tensor::Free::operator()(void* p) const { std::free(p); }

Tensor::Tensor(DType dtype, std::initializer_list<std::int64_t> shape)
    : Tensor(dtype, std::span<const std::int64_t>(shape.begin(), shape.size())) {}

Tensor::Tensor(DType dtype, std::span<const std::int64_t> shape) {
  view_.dtype = dtype;
  set_shape(view_, shape);
  set_contiguous_strides(view_);
  storage_elems_ = view_.numel();
  const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(storage_elems_, 1)) * dtype_size(dtype);
  const std::size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  storage_.reset(p);
  view_.data = p;
}

Tensor Tensor::with_guard(DType dtype, std::initializer_list<std::int64_t> shape, std::int64_t guard_elems) {
  ATTN_CHECK(guard_elems >= 0, value, "guard_elems", "= ", guard_elems, ", expected >= 0");
  Tensor t;
  t.view_ = TensorView(nullptr, dtype, shape);
  t.storage_elems_ = t.view_.numel() + 2 * guard_elems;
  const std::size_t esize = dtype_size(dtype);
  const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(t.storage_elems_, 1)) * esize;
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  t.storage_.reset(p);
  t.view_.data = static_cast<char*>(p) + guard_elems * static_cast<std::int64_t>(esize);
  if (is_floating(dtype)) {
    TensorView all(p, dtype, {t.storage_elems_});
    for (std::int64_t e = 0; e < t.storage_elems_; ++e) store_f64(all, e, std::numeric_limits<double>::quiet_NaN());
  } else {
    std::memset(p, 0xFF, bytes);
  }
  return t;
}

std::uint16_t f32_to_bf16(float x) { return core::f32_to_bf16(x); }
float bf16_to_f32(std::uint16_t h) { return core::bf16_to_f32(h); }
std::uint16_t f32_to_f16(float x) { return core::f32_to_f16(x); }
float f16_to_f32(std::uint16_t h) { return core::f16_to_f32(h); }

double load_f64(const TensorView& t, std::int64_t offset) {
  const void* p = t.at(offset);
  switch (t.dtype) {
    case DType::f32: return *static_cast<const float*>(p);
    case DType::f64: return *static_cast<const double*>(p);
    case DType::bf16: return bf16_to_f32(*static_cast<const std::uint16_t*>(p));
    case DType::f16: return f16_to_f32(*static_cast<const std::uint16_t*>(p));
    case DType::i8: return *static_cast<const std::int8_t*>(p);
    case DType::i32: return *static_cast<const std::int32_t*>(p);
    case DType::i64: return static_cast<double>(*static_cast<const std::int64_t*>(p));
    case DType::boolean: return *static_cast<const std::uint8_t*>(p) != 0 ? 1.0 : 0.0;
  }
  return 0.0;
}

void store_f64(const TensorView& t, std::int64_t offset, double value) {
  void* p = t.at(offset);
  switch (t.dtype) {
    case DType::f32: *static_cast<float*>(p) = static_cast<float>(value); break;
    case DType::f64: *static_cast<double*>(p) = value; break;
    case DType::bf16: *static_cast<std::uint16_t*>(p) = f32_to_bf16(static_cast<float>(value)); break;
    case DType::f16: *static_cast<std::uint16_t*>(p) = f32_to_f16(static_cast<float>(value)); break;
    case DType::i8: *static_cast<std::int8_t*>(p) = static_cast<std::int8_t>(value); break;
    case DType::i32: *static_cast<std::int32_t*>(p) = static_cast<std::int32_t>(value); break;
    case DType::i64: *static_cast<std::int64_t*>(p) = static_cast<std::int64_t>(value); break;
    case DType::boolean: *static_cast<std::uint8_t*>(p) = value != 0.0 ? 1 : 0; break;
  }
}

}  // namespace attn
