// nn::MultiheadAttention backward (docs/nn.md): the forward's passes in reverse, explicit (no autograd).
//   4'. dctx = dout·W_o;  dW_o += doutᵀ·ctx;  db_o += Σ_rows dout
//   3'. dq, dk, dv = attn::sdpa_backward(dctx, q, k, v, ctx, lse) (same mask, dropout seed and offset)
//   3''. with dweights (need_weights): the weights' own path, per (b, h) with A the returned
//       (post-dropout) weights, P the softmax (P = A without dropout) and dA the weights' gradient
//       (dweights / Hq per head when averaged): A = P·keep/(1 − p), so through the softmax
//       dS = A∘dA − P∘c with c_i = Σ_j A_ij dA_ij; then dq += scale·dS·k, dk += scale·dSᵀ·q.
//   2'. RoPE's transposed rotation on dq and dk
//   1'. dx = dq·W_q (+ dk·W_k + dv·W_v for inputs shared by a fused group);  dW += dᵀ·x;  db += Σ_rows d
// dq, dk, dv live in separate buffers (sdpa_backward's outputs must not share memory), so a fused
// group's input gradient accumulates three GEMMs instead of one. Under bf16 matmuls the dW GEMMs
// take the bf16 roundings of x and ctx that the forward made (Projections::xq16 …, Saved::ctx16),
// and each Linear rounds its d once for its dx and dW GEMMs (docs/nn.md "bf16 matmuls").

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "attn/nn/matmul_precision.hpp"
#include "nn/gemm.hpp"
#include "nn/gemm_bf16.hpp"
#include "nn/mha_impl.hpp"

namespace attn::nn {
namespace {

// Step 3'': adds the gradient that flows through the returned attention weights into dq [Mq, E]
// and dk [Mk, Hkv·hd] (rows as the projection buffers: (b, l) at b·L + l batch-first, l·B + b
// otherwise), from post-RoPE q [Mq, ldq] and k [Mk, ldkv].
template <class T>
void weights_backward(const TensorView& dweights, const Tensor& probs, const Tensor& probs_pre, bool averaged,
                      const detail::Projections<T>& p, std::int64_t Hq, std::int64_t Hkv, std::int64_t hd, bool bf,
                      double scale, T* dq, std::int64_t lddq, T* dk, std::int64_t lddk) {
  const std::int64_t B = probs.view().shape[0], Lq = probs.view().shape[2], Lk = probs.view().shape[3];
  const std::int64_t group = Hq / Hkv;
  const bool batched = dweights.rank == (averaged ? 3 : 4);
  std::vector<T> dS(static_cast<std::size_t>(Lq * Lk));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < Hq; ++h) {
      const T* A = probs.ptr<T>() + (b * Hq + h) * Lq * Lk;
      const T* P = probs_pre.view().defined() ? probs_pre.ptr<T>() + (b * Hq + h) * Lq * Lk : A;
      for (std::int64_t i = 0; i < Lq; ++i) {
        T c = 0;
        for (std::int64_t j = 0; j < Lk; ++j) {
          std::int64_t off = 0;
          if (averaged)
            off = batched ? dweights.offset({b, i, j}) : dweights.offset({i, j});
          else
            off = batched ? dweights.offset({b, h, i, j}) : dweights.offset({h, i, j});
          const T dA = static_cast<const T*>(dweights.data)[off] / (averaged ? static_cast<T>(Hq) : T(1));
          dS[static_cast<std::size_t>(i * Lk + j)] = dA;
          c += A[i * Lk + j] * dA;
        }
        for (std::int64_t j = 0; j < Lk; ++j) {
          T& d = dS[static_cast<std::size_t>(i * Lk + j)];
          d = A[i * Lk + j] * d - P[i * Lk + j] * c;
        }
      }
      // Head (b, h) of a rows buffer: first row of b, column block h, rows l apart by the row stride.
      const std::int64_t kvh = h / group;
      const auto head = [&](std::int64_t ld, std::int64_t L, std::int64_t hh) {
        return std::pair<std::int64_t, std::int64_t>{(bf ? b * L : b) * ld + hh * hd, bf ? ld : B * ld};
      };
      const auto [qo, qld] = head(p.ldq, Lq, h);
      const auto [ko, kld] = head(p.ldkv, Lk, kvh);
      const auto [dqo, dqld] = head(lddq, Lq, h);
      const auto [dko, dkld] = head(lddk, Lk, kvh);
      detail::gemm<T>(false, false, Lq, hd, Lk, static_cast<T>(scale), dS.data(), Lk, p.k + ko, kld, T(1), dq + dqo,
                      dqld);
      detail::gemm<T>(true, false, Lk, hd, Lq, static_cast<T>(scale), dS.data(), Lk, p.q + qo, qld, T(1), dk + dko,
                      dkld);
    }
}

}  // namespace

template <class T>
MhaGrads MultiheadAttention<T>::backward(const TensorView& dout, const TensorView& dweights) {
  return backward_impl(dout, dweights, nullptr, false);
}

template <class T>
void MultiheadAttention<T>::backward_into(const TensorView& dout, T* dx, bool accumulate) {
  ATTN_CHECK(dx != nullptr, value, "dx", "is null, expected a [Mq, E] buffer");
  ATTN_CHECK(!saved_ || saved_->proj.fusion == detail::Fusion::qkv, value, "dx",
             "is the one input gradient, but the forward's query, key and value were different views, expected a "
             "self-attention forward (backward returns separate gradients)");
  backward_impl(dout, {}, dx, accumulate);
}

template <class T>
MhaGrads MultiheadAttention<T>::backward_impl(const TensorView& dout, const TensorView& dweights, T* dx,
                                              bool accumulate) {
  ATTN_CHECK(saved_ != nullptr, value, "dout",
             "is given, but no forward was saved, expected one forward before each backward (backward was called "
             "without a forward, or twice after one)");
  Saved& s = *saved_;
  detail::Projections<T>& p = s.proj;
  Scratch* kept = scratch_.get();  // buffers kept between steps (forward_into), or none
  const auto buffer = [&](Tensor Scratch::*t, std::int64_t rows, std::int64_t cols) {
    return kept ? detail::take(kept->*t, detail::dtype_of<T>(), {rows, cols})
                : Tensor(detail::dtype_of<T>(), {rows, cols});
  };
  ATTN_CHECK(dout.dtype == detail::dtype_of<T>(), dtype, "dout", "has dtype ", dtype_name(dout.dtype), ", expected ",
             dtype_name(detail::dtype_of<T>()));
  bool same = dout.rank == static_cast<int>(s.out_shape.size());
  for (int a = 0; same && a < dout.rank; ++a) same = dout.shape[a] == s.out_shape[static_cast<std::size_t>(a)];
  ATTN_CHECK(same, shape, "dout", "has shape ", dout.shape_string(), ", expected the forward's output shape ",
             detail::make_tensor(DType::i8, s.out_shape).view().shape_string());
  const bool bf = config_.batch_first;
  const std::int64_t Mq = p.dq.B * p.dq.L, Mk = p.dk.B * p.dk.L, kvw = Hkv_ * hd_;
  const DType dt = detail::dtype_of<T>();

  // 4'.
  const detail::Rows<T> rdo = detail::as_rows<T>(dout, "dout");
  Tensor dctx = buffer(&Scratch::dctx, Mq, E_);
  out_proj_.backward(s.ctx.template ptr<T>(), E_, rdo.data, rdo.ld, Mq, dctx.template ptr<T>(), E_, false,
                     s.ctx16.empty() ? nullptr : s.ctx16.data(), E_);

  // 3'.
  Tensor dq = buffer(&Scratch::dq, Mq, E_), dk = buffer(&Scratch::dk, Mk, kvw), dv = buffer(&Scratch::dv, Mk, kvw);
  const TensorView dqv = detail::head_view(dq.template ptr<T>(), E_, p.dq, Hq_, hd_, bf);
  const TensorView dkv = detail::head_view(dk.template ptr<T>(), kvw, p.dk, Hkv_, hd_, bf);
  const TensorView dvv = detail::head_view(dv.template ptr<T>(), kvw, p.dk, Hkv_, hd_, bf);
  const TensorView dctxv = detail::head_view(dctx.template ptr<T>(), E_, p.dq, Hq_, hd_, bf);
  const TensorView qv = detail::head_view(p.q, p.ldq, p.dq, Hq_, hd_, bf);
  const TensorView kv = detail::head_view(p.k, p.ldkv, p.dk, Hkv_, hd_, bf);
  const TensorView vv = detail::head_view(p.v, p.ldkv, p.dk, Hkv_, hd_, bf);
  const TensorView ctxv = detail::head_view(s.ctx.template ptr<T>(), E_, p.dq, Hq_, hd_, bf);
  if (config_.linear)
    linear_attention_backward({dqv, dkv, dvv}, dctxv, qv, kv, vv, ctxv, s.den, s.linear);
  else if (config_.stride >= 1)
    strided_attention_backward({dqv, dkv, dvv, {}}, dctxv, qv, kv, vv, ctxv, s.lse, s.strided);
  else
    sdpa_backward({dqv, dkv, dvv, {}}, dctxv, qv, kv, vv, ctxv, s.lse, s.params);

  // 3''.
  if (dweights.defined()) {
    ATTN_CHECK(s.probs.data(), value, "dweights",
               "is given, but the forward returned no weights, expected need_weights = true in that forward");
    ATTN_CHECK(dweights.dtype == dt, dtype, "dweights", "has dtype ", dtype_name(dweights.dtype), ", expected ",
               dtype_name(dt));
    bool fits = dweights.rank == static_cast<int>(s.weights_shape.size());
    for (int a = 0; fits && a < dweights.rank; ++a) fits = dweights.shape[a] == s.weights_shape[static_cast<std::size_t>(a)];
    ATTN_CHECK(fits, shape, "dweights", "has shape ", dweights.shape_string(), ", expected the returned weights' shape ",
               detail::make_tensor(DType::i8, s.weights_shape).view().shape_string());
    weights_backward<T>(dweights, s.probs, s.probs_pre, s.weights_averaged, p, Hq_, Hkv_, hd_, bf,
                        s.params.scale.value_or(1.0 / std::sqrt(static_cast<double>(hd_))), dq.template ptr<T>(), E_,
                        dk.template ptr<T>(), kvw);
  }

  // 2'.
  if (rotary_) {
    rotary_->backward(dqv, s.positions);
    rotary_->backward(dkv, s.positions);
  }

  // 1'. Under bf16 matmuls each input's dW GEMMs take the rounding its forward GEMM made (null: round).
  const auto kept16 = [](const std::vector<std::uint16_t>& x16) { return x16.empty() ? nullptr : x16.data(); };
  MhaGrads g;
  T* dxq = dx;
  if (!dxq) {
    g.dquery = detail::make_tensor(dt, detail::shape_with_last(s.query, E_));
    dxq = g.dquery.template ptr<T>();
  }
  if (p.fusion == detail::Fusion::qkv) {
    const std::uint16_t* xq16 = kept16(p.xq16);
    q_proj_.backward(p.xq.data, p.xq.ld, dq.template ptr<T>(), E_, Mq, dxq, E_, accumulate, xq16, E_);
    k_proj_.backward(p.xq.data, p.xq.ld, dk.template ptr<T>(), kvw, Mk, dxq, E_, true, xq16, E_);
    v_proj_.backward(p.xq.data, p.xq.ld, dv.template ptr<T>(), kvw, Mk, dxq, E_, true, xq16, E_);
  } else {
    q_proj_.backward(p.xq.data, p.xq.ld, dq.template ptr<T>(), E_, Mq, dxq, E_, false, kept16(p.xq16), E_);
    g.dkey = detail::make_tensor(dt, detail::shape_with_last(s.key, kdim_));
    T* dxk = g.dkey.template ptr<T>();
    const std::uint16_t* xk16 = kept16(p.xk16);
    k_proj_.backward(p.xk.data, p.xk.ld, dk.template ptr<T>(), kvw, Mk, dxk, kdim_, false, xk16, kdim_);
    if (p.fusion == detail::Fusion::kv) {
      v_proj_.backward(p.xk.data, p.xk.ld, dv.template ptr<T>(), kvw, Mk, dxk, kdim_, true, xk16, kdim_);
    } else {
      g.dvalue = detail::make_tensor(dt, detail::shape_with_last(s.value, vdim_));
      v_proj_.backward(p.xv.data, p.xv.ld, dv.template ptr<T>(), kvw, Mk, g.dvalue.template ptr<T>(), vdim_, false,
                       kept16(p.xv16), vdim_);
    }
  }
  if (kept) {
    kept->dctx = std::move(dctx);
    kept->dq = std::move(dq);
    kept->dk = std::move(dk);
    kept->dv = std::move(dv);
  }
  recycle_saved();
  return g;
}

template MhaGrads MultiheadAttention<float>::backward(const TensorView&, const TensorView&);
template MhaGrads MultiheadAttention<double>::backward(const TensorView&, const TensorView&);
template void MultiheadAttention<float>::backward_into(const TensorView&, float*, bool);
template void MultiheadAttention<double>::backward_into(const TensorView&, double*, bool);
template MhaGrads MultiheadAttention<float>::backward_impl(const TensorView&, const TensorView&, float*, bool);
template MhaGrads MultiheadAttention<double>::backward_impl(const TensorView&, const TensorView&, double*, bool);

}  // namespace attn::nn
