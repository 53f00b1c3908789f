#pragma once
/// attn::models::BertEncoder (docs/embeddings.md): a Hugging Face BERT checkpoint (config.json +
/// model.safetensors, the names of transformers' BertModel) run for inference in fp32 on packed
/// variable-length batches — the tokens of every sequence in one [T, E] buffer, T = Σ lengths, so
/// no GEMM row or attention score is spent on padding:
///   x = LayerNorm(word[ids] + position[p] + token_type[0])                   (p = 0..len−1 per sequence)
///   per layer (post-norm, as BERT):
///     q, k, v = x·[W_q; W_k; W_v]ᵀ + b            one GEMM onto rows that hold the bias
///     ctx     = SDPA(q, k, v) per sequence          attn::sdpa_forward with cu_seqlens (no mask, no padding)
///     h       = LayerNorm(x + b_o + ctx·W_oᵀ)       the GEMM accumulates onto x + b_o, then one norm pass
///     x       = LayerNorm(h + b₂ + gelu(h·W₁ᵀ + b₁)·W₂ᵀ)   GEMM onto b₁, exact gelu in place, GEMM onto h + b₂
/// Each thread runs whole sequences of the batch through every layer (or, when the sequences do
/// not share evenly, its share of the rows), its GEMMs on single-threaded OpenBLAS and their
/// element-wise passes while the rows are in its cache.
/// bf16 mode (precision bf16): the four GEMMs of a layer take bf16 operands with fp32 accumulation
/// on oneDNN (AMX / AVX512_BF16 where the CPU has them), with the bias, the residual and gelu in
/// the GEMM's epilogue; q, k, v and the attention are bf16 (attn's bf16 SDPA: AMX tiles where the
/// CPU has them). The weights are rounded to bf16 once, at load. Embeddings, LayerNorm, residuals
/// and pooling stay fp32.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/nn/matmul_precision.hpp"

namespace attn::models {

namespace detail {
struct BertWorkspace;      // the forward's buffers (src/models/bert.cpp)
struct BertWorkspacePool;  // kept between calls: no allocation per batch
}  // namespace detail

/// The fields of a BERT config.json that the encoder uses.
struct BertConfig {
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;  ///< E
  std::int64_t num_hidden_layers = 0;
  std::int64_t num_attention_heads = 0;  ///< H; divides E
  std::int64_t intermediate_size = 0;    ///< F
  std::int64_t max_position_embeddings = 0;
  std::int64_t type_vocab_size = 0;
  double layer_norm_eps = 1e-12;

  /// Reads `path`: model_type must be "bert" and hidden_act "gelu" (exact), position_embedding_type
  /// absent or "absolute"; every size ≥ 1. attn::Error naming the file and the field otherwise.
  static BertConfig from_file(const std::string& path);
};

class BertEncoder {
 public:
  /// Loads `dir`/config.json and `dir`/model.safetensors (tensor names of transformers' BertModel,
  /// with or without a "bert." prefix). attn::Error naming the file for a missing or unreadable
  /// file, naming the tensor for a missing one, a wrong shape or a dtype other than F32.
  /// precision bf16: attn::Error (kind unsupported, argument "precision") when libattn_models has
  /// no oneDNN, or when oneDNN has no bf16 kernel for this CPU (it would run its reference code).
  explicit BertEncoder(const std::string& dir, nn::MatmulPrecision precision = nn::MatmulPrecision::f32);
  /// From a config and the file's path (the config given, not read).
  BertEncoder(const BertConfig& config, const std::string& safetensors_path,
              nn::MatmulPrecision precision = nn::MatmulPrecision::f32);

  const BertConfig& config() const { return config_; }
  std::int64_t dim() const { return config_.hidden_size; }
  nn::MatmulPrecision precision() const { return bf16_ ? nn::MatmulPrecision::bf16 : nn::MatmulPrecision::f32; }
  /// What runs the GEMMs: "openblas sgemm", or oneDNN's implementation name in bf16 mode
  /// (e.g. "onednn brg:avx512_core_amx_bf16").
  std::string gemm_impl() const;

  /// Hidden states of the last layer: hidden [T, E] (row-major) for the packed token ids `ids`
  /// [T] of the sequences [cu_seqlens[s], cu_seqlens[s + 1]) (cu_seqlens starts at 0, ends at T,
  /// every sequence at least 1 and at most max_position_embeddings long). Token types are 0.
  /// threads: 0 = omp_get_max_threads().
  void forward(const std::int32_t* ids, const std::vector<std::int64_t>& cu_seqlens, float* hidden,
               int threads = 0) const;

  /// forward() then the mean of each sequence's hidden states: pooled [nseq, E].
  void mean_pooled(const std::int32_t* ids, const std::vector<std::int64_t>& cu_seqlens, float* pooled,
                   int threads = 0) const;

  /// One layer's weights, as the checkpoint holds them ([out, in] matrices), q/k/v stacked.
  struct Layer {
    std::vector<float> wqkv, bqkv;  // [3E, E], [3E]
    std::vector<float> wo, bo;      // [E, E], [E]
    std::vector<float> ln1_w, ln1_b;
    std::vector<float> w1, b1;  // [F, E], [F]
    std::vector<float> w2, b2;  // [E, F], [E]
    std::vector<float> ln2_w, ln2_b;
  };

 private:
  void load(const std::string& safetensors_path);
  void to_bf16();
  int check(const std::int32_t* ids, const std::vector<std::int64_t>& cu_seqlens, int threads) const;
  void embed_rows(const std::int32_t* ids, const std::vector<std::int64_t>& cu_seqlens, std::int64_t r0,
                  std::int64_t r1, float* tmp, float* x, std::uint16_t* xb) const;
  void forward_f32(detail::BertWorkspace& ws, const std::int32_t* ids, const std::vector<std::int64_t>& cu_seqlens,
                   float* x, int nt) const;
  void forward_bf16(detail::BertWorkspace& ws, const std::int32_t* ids, const std::vector<std::int64_t>& cu_seqlens,
                    float* x, int nt) const;

  struct Bf16Layers;  // the GEMM weights in bf16 (bf16 mode), src/models/bert.cpp

  BertConfig config_;
  std::vector<float> word_, position_, token_type_, emb_ln_w_, emb_ln_b_;
  std::vector<Layer> layers_;
  std::shared_ptr<const Bf16Layers> bf16_;
  std::shared_ptr<detail::BertWorkspacePool> pool_;
};

}  // namespace attn::models
