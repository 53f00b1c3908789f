#pragma once
/// nn::MultiheadAttention (docs/nn.md): MHA (num_kv_heads = num_heads), GQA (num_kv_heads divides
/// num_heads) and MQA (num_kv_heads = 1), with an explicit forward and backward.
///   q = x_q·W_qᵀ + b_q [Lq, E]   k = x_k·W_kᵀ + b_k [Lk, Hkv·hd]   v = x_v·W_vᵀ + b_v [Lk, Hkv·hd]
///   (RoPE on q and k)  ctx = SDPA(q, k, v) per head   out = ctx·W_oᵀ + b_o
/// hd = embed_dim / num_heads. The SDPA runs through attn::sdpa_forward/sdpa_backward, reading the
/// projections in place as strided [B, H, L, hd] views. One fused QKV GEMM when query, key and
/// value are the same view (one fused KV GEMM when key and value are); separate ones otherwise.
///
/// Layouts: rank 3 is (B, L, E) when batch_first, else (L, B, E) (torch's default); rank 2 is
/// unbatched (L, E). Outputs and input gradients have the layout of their input, row-major.
/// Parameters (names fixed): q_proj.weight [E, E], k_proj.weight [Hkv·hd, kdim],
/// v_proj.weight [Hkv·hd, vdim], out_proj.weight [E, E], and `.bias` of each ([rows]) when bias.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "attn/kv_cache.hpp"
#include "attn/nn/linear.hpp"
#include "attn/nn/module.hpp"
#include "attn/nn/rotary.hpp"
#include "attn/linear_attention.hpp"
#include "attn/sdpa.hpp"
#include "attn/sparse_attention.hpp"
#include "attn/tensor.hpp"

namespace attn::nn {

struct MhaConfig {
  std::int64_t embed_dim = 0;     ///< E
  std::int64_t num_heads = 1;     ///< Hq; divides E
  std::int64_t num_kv_heads = 0;  ///< Hkv; divides Hq; 0 = num_heads
  std::int64_t kdim = 0;          ///< key input width; 0 = E
  std::int64_t vdim = 0;          ///< value input width; 0 = E
  bool bias = true;
  double dropout = 0.0;                ///< attention-probability dropout while training, in [0, 1)
  bool batch_first = false;            ///< rank-3 inputs are (B, L, E) when true, (L, B, E) when false
  std::optional<RotaryConfig> rotary;  ///< RoPE on q and k after projection
  /// Local (sliding-window) attention: ≥ 0 hides keys further than `window` positions from the
  /// query (|i − j| > window; with is_causal only i − window ≤ j ≤ i remain), on top of any mask;
  /// −1 = none. With Lq ≠ Lk the window needs MhaOptions::causal_alignment (which end lines up).
  /// Cached decoding counts the window back from each new token. make_attention("local") sets it.
  std::int64_t window = -1;
  std::uint64_t seed = 0;              ///< weight initialisation and dropout (Philox key)
  /// Strided sparse attention (include/attn/sparse_attention.hpp, docs/sparse_attention.md): ≥ 1
  /// replaces the SDPA by strided_attention_forward/backward with this stride s, the window above
  /// as its local window (−1 = none) and `global_tokens`; key_lengths work, attn_mask,
  /// need_weights, dropout and cached decoding do not (attn::Error). 0 = off.
  /// make_attention("strided") sets it.
  std::int64_t stride = 0;
  std::int64_t global_tokens = 0;  ///< strided only: keys j < g seen by all, queries i < g see all
  /// Linear attention (include/attn/linear_attention.hpp, docs/linear_attention.md) instead of the
  /// softmax: out_i = φ(q_i)ᵀS / (φ(q_i)ᵀz + eps) with `feature_map`; is_causal, causal_alignment and
  /// key_lengths work, attn_mask, need_weights, windows, dropout and cached decoding do not
  /// (attn::Error). FAVOR+'s projection [m, head_dim] is drawn once from `seed` (a constant, not a
  /// parameter). make_attention("linear") sets it.
  bool linear = false;
  FeatureMap feature_map = FeatureMap::elu;
  std::int64_t num_features = 0;  ///< FAVOR+ m; 0 = ⌈hd·ln hd⌉ (the Performer default; 1 for hd = 1)
  double linear_eps = 1e-6;       ///< added to every denominator (> 0)
};

/// Per-call options. Masks follow attn's C++ contract (docs/contract.md): bool true = attend.
struct MhaOptions {
  /// bool (true = attend) or float (added to the scores before the softmax; −inf hides), any
  /// dtype attn accepts, broadcast by PyTorch's right-aligned rules to [B, num_heads, Lq, Lk]
  /// ([Lq, Lk], [B, 1, Lq, Lk], [B, 1, 1, Lk], [num_heads, Lq, Lk] ...).
  TensorView attn_mask;
  /// Per-batch-row key lengths (padding on the right), size B; empty = Lk for every row.
  std::vector<std::int64_t> key_lengths;
  /// Query i sees keys j ≤ i + off. When Lq = Lk, off = 0. When Lq ≠ Lk, causal_alignment must be
  /// given: top_left (off = 0, PyTorch's is_causal) or bottom_right (off = Lk − Lq, the last query
  /// sees every key: decoding with a prefix).
  bool is_causal = false;
  std::optional<Alignment> causal_alignment;
  /// Return the attention weights (post-dropout, as PyTorch): [B, Lq, Lk] averaged over heads,
  /// or [B, num_heads, Lq, Lk] when !average_attn_weights (unbatched: no B axis).
  bool need_weights = false;
  bool average_attn_weights = true;
  /// RoPE position offsets (see RotaryEmbedding): q and k token n of row b sit at offsets[b] + n.
  std::vector<std::int64_t> positions;
  /// Dropout: Philox counter offset of this call (key = MhaConfig::seed), so that every call is
  /// reproducible; backward uses the forward's.
  std::uint64_t dropout_offset = 0;
};

struct MhaOutput {
  Tensor out;      ///< layout of query: (B, Lq, E), (Lq, B, E) or (Lq, E)
  Tensor weights;  ///< when need_weights (dtype T)
};

/// Gradients of the inputs of the last forward. When query, key and value were the same view
/// (fused QKV), dquery holds the whole gradient of that input and dkey, dvalue are empty; when only
/// key and value were (fused KV), dkey holds theirs and dvalue is empty.
struct MhaGrads {
  Tensor dquery, dkey, dvalue;
};

/// T = float (f32; the fast cpu SDPA) or double (f64; the reference SDPA, for gradient checks).
template <class T>
class MultiheadAttention : public Module {
 public:
  /// Throws attn::Error for num_heads not dividing embed_dim, num_kv_heads not dividing num_heads,
  /// sizes < 1, dropout outside [0, 1) or an invalid rotary config. Weights Xavier-uniform (each
  /// matrix on its own fans, from `seed`), biases zero.
  explicit MultiheadAttention(const MhaConfig& config);
  ~MultiheadAttention() override;
  MultiheadAttention(MultiheadAttention&&) noexcept;
  MultiheadAttention& operator=(MultiheadAttention&&) noexcept;

  const MhaConfig& config() const { return config_; }
  std::int64_t embed_dim() const { return E_; }
  std::int64_t num_heads() const { return Hq_; }
  std::int64_t num_kv_heads() const { return Hkv_; }
  std::int64_t head_dim() const { return hd_; }
  Linear<T>& q_proj() { return q_proj_; }
  Linear<T>& k_proj() { return k_proj_; }
  Linear<T>& v_proj() { return v_proj_; }
  Linear<T>& out_proj() { return out_proj_; }
  const Linear<T>& q_proj() const { return q_proj_; }
  const Linear<T>& k_proj() const { return k_proj_; }
  const Linear<T>& v_proj() const { return v_proj_; }
  const Linear<T>& out_proj() const { return out_proj_; }
  const RotaryEmbedding* rotary() const { return rotary_ ? &*rotary_ : nullptr; }
  /// FAVOR+ projection ω [m, head_dim] f32 of a linear module with feature_map favor (else empty).
  const TensorView& feature_projection() const { return projection_.view(); }
  /// Dropout acts only while training (default true, as torch).
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

  /// query [.., Lq, .., E], key [.., Lk, .., kdim], value [.., Lk, .., vdim] (dtype T, any
  /// strides). Keeps what backward needs (projections, ctx, lse) and views of the inputs and the
  /// mask: they must stay alive and unchanged until backward.
  MhaOutput forward(const TensorView& query, const TensorView& key, const TensorView& value,
                    const MhaOptions& options = {});
  /// dout (shape of the forward's out) -> input gradients; adds every weight's and bias's gradient.
  /// When the forward had need_weights, `dweights` (the shape of the returned weights, dtype T, any
  /// strides) is the gradient of the loss with respect to those weights too (they are
  /// differentiable, as in PyTorch); not given = zero. With attention dropout active, such a
  /// forward runs the SDPA twice to keep the softmax before dropout as well.
  MhaGrads backward(const TensorView& dout, const TensorView& dweights = {});
  /// Frees what forward kept for backward (gradient checkpointing recomputes it instead), and the
  /// buffers kept between steps (below).
  void release_saved();

  /// forward without need_weights, writing out [Mq, E] (rows in query's memory order, row stride
  /// E) into `out` instead of a new tensor: the encoder layers' path, which saves a fresh [Mq, E]
  /// buffer and its copy per call. The projection, ctx and lse buffers, and backward's dctx, dq,
  /// dk, dv, are kept between calls of the same sizes (no fresh pages per training step).
  void forward_into(const TensorView& query, const TensorView& key, const TensorView& value,
                    const MhaOptions& options, T* out);
  /// backward of a self-attention forward (query, key and value the same view), writing dquery
  /// [Mq, E] into `dx` (row stride E), or adding it there when `accumulate`.
  void backward_into(const TensorView& dout, T* dx, bool accumulate);

  /// A cache for incremental decoding: [batch, num_kv_heads, capacity, head_dim].
  KvCache make_cache(std::int64_t batch, std::int64_t capacity, DType dtype = DType::f32,
                     KvLayout layout = KvLayout::contiguous) const;
  /// One decoding step (inference: no dropout, no backward): projects query/key/value (this
  /// step's L new tokens per row), applies RoPE at positions cache.length(b) + n, appends K/V to
  /// the cache and runs attn::decode (bottom-right causal: query n of row b sees its row's cached
  /// keys up to and including its own position). attn_mask / key_lengths / need_weights are not
  /// supported here (attn::Error).
  Tensor forward_cached(const TensorView& query, const TensorView& key, const TensorView& value, KvCache& cache,
                        const MhaOptions& options = {});
  /// Cross-attention memory projected once: K/V of memory [.., Ls, .., kdim] (kdim = vdim) as a
  /// read-only cache (attn::project_cross_kv), row b keeping its first src_lengths[b] tokens.
  KvCache project_kv(const TensorView& memory, const std::vector<std::int64_t>& src_lengths = {},
                     DType dtype = DType::f32) const;
  /// Attention of query to a project_kv cache (every cached key visible; no RoPE: an attn::Error
  /// when the module has rotary).
  Tensor forward_cross_cached(const TensorView& query, const KvCache& memory_kv) const;

  std::vector<Child> children() const override;
  /// "projection" (FAVOR+'s ω) of a linear module with feature_map favor; none otherwise.
  std::vector<Buffer> buffers() const override;

  struct Saved;
  struct Scratch;

 private:
  MhaOutput forward_impl(const TensorView& query, const TensorView& key, const TensorView& value,
                         const MhaOptions& options, T* out);
  MhaGrads backward_impl(const TensorView& dout, const TensorView& dweights, T* dx, bool accumulate);
  /// Returns the saved forward's buffers to the scratch and drops the rest.
  void recycle_saved();

  MhaConfig config_;
  std::int64_t E_ = 0, Hq_ = 0, Hkv_ = 0, hd_ = 0, kdim_ = 0, vdim_ = 0;
  Tensor params_, grads_;  // W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o (contiguous in this order)
  Linear<T> q_proj_, k_proj_, v_proj_, out_proj_;
  std::optional<RotaryEmbedding> rotary_;
  Tensor projection_;  // FAVOR+ ω [m, hd] (linear with feature_map favor), f32
  bool training_ = true;
  std::unique_ptr<Saved> saved_;
  std::unique_ptr<Scratch> scratch_;  // buffers kept between steps (forward_into)
};

extern template class MultiheadAttention<float>;
extern template class MultiheadAttention<double>;

}  // namespace attn::nn
