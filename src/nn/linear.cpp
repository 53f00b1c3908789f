// nn::Linear, forward and backward on OpenBLAS (docs/nn.md):
//   forward   y [M, out] = x [M, in]·Wᵀ + b          (one gemm, NoTrans × Trans)
//   backward  dx = dy·W (NoTrans × NoTrans),  dW += dyᵀ·x (Trans × NoTrans),  db += Σ_rows dy
// W is [out, in] row-major as torch stores it. With nn::set_float32_matmul_precision(bf16) the
// fp32 GEMMs round x, W and dy to bf16 and run on oneDNN with fp32 accumulation (nn/gemm_bf16.hpp);
// the bias, db and every output stay fp32. W is rounded at each call, or once per weights version
// while a WeightCacheGuard is alive (nn/bf16_weights.hpp, docs/nn.md "bf16 weight copies").

#include "attn/nn/linear.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "attn/nn/weight_cache.hpp"
#include "nn/bf16_weights.hpp"
#include "nn/gemm.hpp"
#include "nn/gemm_bf16.hpp"
#include "nn/init.hpp"
#include "nn/rows.hpp"

namespace attn::nn {

template <class T>
Linear<T>::Linear(std::int64_t in_features, std::int64_t out_features, bool bias, std::uint64_t seed)
    : in_(in_features), out_(out_features) {
  ATTN_CHECK(in_ >= 1, value, "in_features", "= ", in_, ", expected ≥ 1");
  ATTN_CHECK(out_ >= 1, value, "out_features", "= ", out_, ", expected ≥ 1");
  const std::int64_t nw = out_ * in_, nb = bias ? out_ : 0;
  storage_ = Tensor(detail::dtype_of<T>(), {2 * (nw + nb)});
  T* p = storage_.ptr<T>();
  std::memset(p, 0, static_cast<std::size_t>(2 * (nw + nb)) * sizeof(T));
  w_ = p;
  dw_ = p + nw;
  if (bias) {
    b_ = p + 2 * nw;
    db_ = b_ + nb;
  }
  detail::fill_uniform(w_, nw, 1.0 / std::sqrt(static_cast<double>(in_)), seed);
  share_bf16_weights(std::make_shared<Bf16WeightCopy>(), w_, nw);
}

template <class T>
Linear<T>::Linear(std::int64_t in_features, std::int64_t out_features, T* w, T* dw, T* b, T* db)
    : in_(in_features), out_(out_features), w_(w), dw_(dw), b_(b), db_(db) {
  if (w_) share_bf16_weights(std::make_shared<Bf16WeightCopy>(), w_, out_ * in_);
}

template <class T>
void Linear<T>::share_bf16_weights(std::shared_ptr<Bf16WeightCopy> copy, const T* base, std::int64_t n) {
  ATTN_CHECK(copy && base != nullptr && w_ >= base && w_ + out_ * in_ <= base + n, value, "base", "covers [",
             static_cast<const void*>(base), ", +", n, ") which does not hold this Linear's weight [",
             static_cast<const void*>(w_), ", +", out_ * in_, "), expected a block holding it");
  w16_ = std::move(copy);
  w16_base_ = base;
  w16_n_ = n;
}

template <class T>
void Linear<T>::share_bf16_weights(const Linear& other) {
  share_bf16_weights(other.w16_, other.w16_base_, other.w16_n_);
}

namespace {
// db[o] += Σ_m dy[m·ld + o], the rows added in order into each column: tasks own blocks of columns
// (their running sums in a local array, which the compiler vectorises), so the sums are the serial
// loop's bits on any number of threads.
template <class T>
void add_column_sums(const T* dy, std::int64_t M, std::int64_t C, std::int64_t ld, T* db) {
  constexpr std::int64_t kBlock = 64;
  const std::int64_t blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (M * C >= (1 << 15) && blocks > 1)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const std::int64_t c0 = blk * kBlock, n = std::min(C, c0 + kBlock) - c0;
    T acc[kBlock];
    for (std::int64_t j = 0; j < n; ++j) acc[j] = db[c0 + j];
    for (std::int64_t m = 0; m < M; ++m) {
      const T* row = dy + m * ld + c0;
      for (std::int64_t j = 0; j < n; ++j) acc[j] += row[j];
    }
    for (std::int64_t j = 0; j < n; ++j) db[c0 + j] = acc[j];
  }
}

template <class T>
bool bf16_matmuls() {
  return std::is_same_v<T, float> && float32_matmul_precision() == MatmulPrecision::bf16;
}

// Rows [rows, cols] (row stride ld) rounded to a packed bf16 copy in this thread's scratch buffer
// `slot` (0–2; grown, never shrunk, so that repeated calls do not fault fresh pages in).
const std::uint16_t* bf16_copy(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld, int slot) {
  thread_local std::vector<std::uint16_t> scratch[3];
  std::vector<std::uint16_t>& buf = scratch[slot];
  const auto n = static_cast<std::size_t>(rows * cols);
  if (buf.size() < n) buf.resize(n);
  detail::round_rows_to_bf16(src, rows, cols, ld, buf.data(), cols);
  return buf.data();
}
}  // namespace

template <class T>
const std::uint16_t* Linear<T>::bf16_weight(int slot) const {
  if constexpr (std::is_same_v<T, float>) {
    if (weight_cache_enabled()) return w16_->get(w16_base_, w16_n_) + (w_ - w16_base_);
    return bf16_copy(w_, out_, in_, in_, slot);
  } else {
    (void)slot;
    return nullptr;
  }
}

template <class T>
bool Linear<T>::gemm_packed_weight(bool trans_b, std::int64_t M, const std::uint16_t* A16, std::int64_t lda, float beta,
                                   float* C, std::int64_t ldc, const float* bias) const {
  if constexpr (std::is_same_v<T, float>) {
    if (!weight_cache_enabled() || !detail::weight_packing_enabled()) return false;
    const std::int64_t N = trans_b ? out_ : in_, K = trans_b ? in_ : out_;
    const detail::PackedLayout layout = detail::packed_layout_bf16(trans_b, M, N, K, lda, beta, ldc, bias != nullptr);
    if (layout.id < 0) return false;
    const std::uint8_t* wp = w16_->packed(w16_base_, w16_n_, w_ - w16_base_, out_, in_, trans_b, layout);
    detail::gemm_bf16_packed(trans_b, M, N, K, A16, lda, wp, layout, beta, C, ldc, bias);
    return true;
  } else {
    (void)trans_b, (void)M, (void)A16, (void)lda, (void)beta, (void)C, (void)ldc, (void)bias;
    return false;
  }
}

template <class T>
void Linear<T>::forward(const T* x, std::int64_t M, std::int64_t ldx, T* y, std::int64_t ldy) const {
  forward(x, M, ldx, y, ldy, nullptr);
}

template <class T>
void Linear<T>::forward(const T* x, std::int64_t M, std::int64_t ldx, T* y, std::int64_t ldy,
                        const std::uint16_t* x16) const {
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_matmuls<T>()) {  // the bias in the matmul's epilogue
      if (!x16) x16 = bf16_copy(x, M, in_, ldx, 0);
      if (!gemm_packed_weight(true, M, x16, in_, 0.0f, y, ldy, b_))
        detail::gemm_bf16(false, true, M, out_, in_, x16, in_, bf16_weight(1), in_, 0.0f, y, ldy, b_);
      return;
    }
  }
  (void)x16;
  if (b_)
    for (std::int64_t m = 0; m < M; ++m) std::memcpy(y + m * ldy, b_, static_cast<std::size_t>(out_) * sizeof(T));
  detail::gemm<T>(false, true, M, out_, in_, T(1), x, ldx, w_, in_, b_ ? T(1) : T(0), y, ldy);
}

template <class T>
void Linear<T>::backward(const T* x, std::int64_t ldx, const T* dy, std::int64_t ldy, std::int64_t M, T* dx,
                         std::int64_t lddx, bool accumulate_dx) {
  backward(x, ldx, dy, ldy, M, dx, lddx, accumulate_dx, nullptr, 0);
}

template <class T>
void Linear<T>::backward(const T* x, std::int64_t ldx, const T* dy, std::int64_t ldy, std::int64_t M, T* dx,
                         std::int64_t lddx, bool accumulate_dx, const std::uint16_t* x16, std::int64_t ldx16) {
  bool done = false;
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_matmuls<T>()) {
      const std::uint16_t* dy16 = bf16_copy(dy, M, out_, ldy, 0);
      if (!x16) {
        x16 = bf16_copy(x, M, in_, ldx, 1);
        ldx16 = in_;
      }
      const float beta = accumulate_dx ? 1.0f : 0.0f;
      if (dx && !gemm_packed_weight(false, M, dy16, out_, beta, dx, lddx))
        detail::gemm_bf16(false, false, M, in_, out_, dy16, out_, bf16_weight(2), in_, beta, dx, lddx);
      detail::gemm_bf16(true, false, out_, in_, M, dy16, out_, x16, ldx16, 1.0f, dw_, in_);
      done = true;
    }
  }
  if (!done) {
    if (dx) detail::gemm<T>(false, false, M, in_, out_, T(1), dy, ldy, w_, in_, accumulate_dx ? T(1) : T(0), dx, lddx);
    detail::gemm<T>(true, false, out_, in_, M, T(1), dy, ldy, x, ldx, T(1), dw_, in_);
  }
  if (db_) add_column_sums(dy, M, out_, ldy, db_);
}

namespace {
// A row-major tensor with the shape of `like` but last axis `last`.
Tensor like_with_last(const TensorView& like, std::int64_t last, DType dtype) {
  switch (like.rank) {
    case 1: return Tensor(dtype, {last});
    case 2: return Tensor(dtype, {like.shape[0], last});
    default: return Tensor(dtype, {like.shape[0], like.shape[1], last});
  }
}
}  // namespace

template <class T>
Tensor Linear<T>::forward(const TensorView& x) const {
  ATTN_CHECK(x.dtype == detail::dtype_of<T>(), dtype, "x", "has dtype ", dtype_name(x.dtype), ", expected ",
             dtype_name(detail::dtype_of<T>()));
  ATTN_CHECK(x.rank >= 1 && x.shape[x.rank - 1] == in_, shape, "x", "has shape ", x.shape_string(), ", expected [..., ", in_,
             "] (in_features)");
  const detail::Rows<T> r = detail::as_rows<T>(x, "x");
  Tensor y = like_with_last(x, out_, x.dtype);
  forward(r.data, r.M, r.ld, y.ptr<T>(), out_);
  return y;
}

template <class T>
Tensor Linear<T>::backward(const TensorView& x, const TensorView& dy) {
  ATTN_CHECK(x.dtype == detail::dtype_of<T>() && dy.dtype == x.dtype, dtype, "dy", "x has dtype ", dtype_name(x.dtype),
             " and dy ", dtype_name(dy.dtype), ", expected ", dtype_name(detail::dtype_of<T>()));
  ATTN_CHECK(x.rank >= 1 && x.shape[x.rank - 1] == in_, shape, "x", "has shape ", x.shape_string(), ", expected [..., ", in_,
             "] (in_features)");
  bool same = dy.rank == x.rank && dy.shape[dy.rank - 1] == out_;
  for (int a = 0; same && a + 1 < x.rank; ++a) same = dy.shape[a] == x.shape[a];
  ATTN_CHECK(same, shape, "dy", "has shape ", dy.shape_string(), ", expected x's leading dims and ", out_, " (x has shape ",
             x.shape_string(), ")");
  const detail::Rows<T> rx = detail::as_rows<T>(x, "x"), rdy = detail::as_rows<T>(dy, "dy");
  Tensor dx = like_with_last(x, in_, x.dtype);
  backward(rx.data, rx.ld, rdy.data, rdy.ld, rx.M, dx.ptr<T>(), in_);
  return dx;
}

template <class T>
std::vector<Parameter> Linear<T>::parameters() const {
  const DType dt = detail::dtype_of<T>();
  std::vector<Parameter> p{{"weight", TensorView(w_, dt, {out_, in_}), TensorView(dw_, dt, {out_, in_})}};
  if (b_) p.push_back({"bias", TensorView(b_, dt, {out_}), TensorView(db_, dt, {out_})});
  return p;
}

template class Linear<float>;
template class Linear<double>;

}  // namespace attn::nn
