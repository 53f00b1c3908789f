// nn::MultiheadAttention backward (docs/nn.md): the forward's passes in reverse, explicit (no autograd).
//   4'. dctx = dout·W_o;  dW_o += doutᵀ·ctx;  db_o += Σ_rows dout
//   3'. dq, dk, dv = attn::sdpa_backward(dctx, q, k, v, ctx, lse) (same mask, dropout seed and offset)
//   2'. RoPE's transposed rotation on dq and dk
//   1'. dx = dq·W_q (+ dk·W_k + dv·W_v for inputs shared by a fused group);  dW += dᵀ·x;  db += Σ_rows d
// dq, dk, dv live in separate buffers (sdpa_backward's outputs must not share memory), so a fused
// group's input gradient accumulates three GEMMs instead of one.

#include "nn/mha_impl.hpp"

namespace attn::nn {

template <class T>
MhaGrads MultiheadAttention<T>::backward(const TensorView& dout) {
  ATTN_CHECK(saved_ != nullptr, value, "dout",
             "is given, but no forward was saved, expected one forward before each backward (backward was called "
             "without a forward, or twice after one)");
  Saved& s = *saved_;
  detail::Projections<T>& p = s.proj;
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
  Tensor dctx(dt, {Mq, E_});
  out_proj_.backward(s.ctx.template ptr<T>(), E_, rdo.data, rdo.ld, Mq, dctx.template ptr<T>(), E_);

  // 3'.
  Tensor dq(dt, {Mq, E_}), dk(dt, {Mk, kvw}), dv(dt, {Mk, kvw});
  const TensorView dqv = detail::head_view(dq.template ptr<T>(), E_, p.dq, Hq_, hd_, bf);
  const TensorView dkv = detail::head_view(dk.template ptr<T>(), kvw, p.dk, Hkv_, hd_, bf);
  const TensorView dvv = detail::head_view(dv.template ptr<T>(), kvw, p.dk, Hkv_, hd_, bf);
  sdpa_backward({dqv, dkv, dvv, {}}, detail::head_view(dctx.template ptr<T>(), E_, p.dq, Hq_, hd_, bf),
                detail::head_view(p.q, p.ldq, p.dq, Hq_, hd_, bf), detail::head_view(p.k, p.ldkv, p.dk, Hkv_, hd_, bf),
                detail::head_view(p.v, p.ldkv, p.dk, Hkv_, hd_, bf),
                detail::head_view(s.ctx.template ptr<T>(), E_, p.dq, Hq_, hd_, bf), s.lse, s.params);

  // 2'.
  if (rotary_) {
    rotary_->backward(dqv, s.positions);
    rotary_->backward(dkv, s.positions);
  }

  // 1'.
  MhaGrads g;
  g.dquery = detail::make_tensor(dt, detail::shape_with_last(s.query, E_));
  T* dxq = g.dquery.template ptr<T>();
  q_proj_.backward(p.xq.data, p.xq.ld, dq.template ptr<T>(), E_, Mq, dxq, E_);
  if (p.fusion == detail::Fusion::qkv) {
    k_proj_.backward(p.xq.data, p.xq.ld, dk.template ptr<T>(), kvw, Mk, dxq, E_, true);
    v_proj_.backward(p.xq.data, p.xq.ld, dv.template ptr<T>(), kvw, Mk, dxq, E_, true);
  } else {
    g.dkey = detail::make_tensor(dt, detail::shape_with_last(s.key, kdim_));
    T* dxk = g.dkey.template ptr<T>();
    k_proj_.backward(p.xk.data, p.xk.ld, dk.template ptr<T>(), kvw, Mk, dxk, kdim_);
    if (p.fusion == detail::Fusion::kv) {
      v_proj_.backward(p.xk.data, p.xk.ld, dv.template ptr<T>(), kvw, Mk, dxk, kdim_, true);
    } else {
      g.dvalue = detail::make_tensor(dt, detail::shape_with_last(s.value, vdim_));
      v_proj_.backward(p.xv.data, p.xv.ld, dv.template ptr<T>(), kvw, Mk, g.dvalue.template ptr<T>(), vdim_);
    }
  }
  saved_.reset();
  return g;
}

template MhaGrads MultiheadAttention<float>::backward(const TensorView&);
template MhaGrads MultiheadAttention<double>::backward(const TensorView&);

}  // namespace attn::nn
