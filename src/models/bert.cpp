// attn::models::BertEncoder: loading a BERT checkpoint and the packed fp32 forward
// (include/attn/models/bert.hpp, docs/embeddings.md).

#include "attn/models/bert.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/sdpa.hpp"
#include "models/rows.hpp"
#include "nn/gemm.hpp"

namespace attn::models {
namespace {

std::string shape_string(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Reads tensors of one file, checking each one's presence, dtype and shape against the config.
struct Reader {
  const io::SafetensorsFile& file;
  std::string prefix;  // "" or "bert."

  std::vector<float> get(const std::string& name, std::vector<std::int64_t> shape) const {
    const std::string full = prefix + name;
    const io::SafetensorsEntry* e = file.find(full);
    ATTN_CHECK(e != nullptr, value, file.source(), "has no tensor \"", full, "\", expected it (a BERT checkpoint with ",
               "the tensor names of transformers' BertModel)");
    ATTN_CHECK(e->dtype == "F32", dtype, full, "has dtype ", e->dtype, " in ", file.source(), ", expected F32");
    ATTN_CHECK(e->shape == shape, shape, full, "has shape ", shape_string(e->shape), " in ", file.source(),
               ", expected ", shape_string(shape), " (from config.json)");
    std::vector<float> out(static_cast<std::size_t>(e->numel()));
    std::memcpy(out.data(), e->data, static_cast<std::size_t>(e->nbytes()));  // the mapping may be unaligned
    return out;
  }
};

void append(std::vector<float>& dst, const std::vector<float>& src) { dst.insert(dst.end(), src.begin(), src.end()); }

// y [M, N] += x [M, K]·Wᵀ, W [N, K] row-major. The callers first write the bias (and the residual)
// into y, so OpenBLAS neither clears y (its beta = 0 pass) nor needs a separate bias pass.
void matmul_t_acc(const float* x, std::int64_t M, std::int64_t K, const float* W, std::int64_t N, float* y) {
  nn::detail::gemm<float>(false, true, M, N, K, 1.0f, x, K, W, K, 1.0f, y, N);
}

}  // namespace

BertEncoder::BertEncoder(const std::string& dir)
    : BertEncoder(BertConfig::from_file((std::filesystem::path(dir) / "config.json").string()),
                  (std::filesystem::path(dir) / "model.safetensors").string()) {}

BertEncoder::BertEncoder(const BertConfig& config, const std::string& safetensors_path) : config_(config) {
  load(safetensors_path);
}

void BertEncoder::load(const std::string& path) {
  ATTN_CHECK(std::filesystem::exists(path), system, path, "does not exist, expected the model's weights there");
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  const BertConfig& c = config_;
  const std::int64_t E = c.hidden_size, F = c.intermediate_size;
  const bool prefixed = file.find("embeddings.word_embeddings.weight") == nullptr &&
                        file.find("bert.embeddings.word_embeddings.weight") != nullptr;
  const Reader r{file, prefixed ? "bert." : ""};
  word_ = r.get("embeddings.word_embeddings.weight", {c.vocab_size, E});
  position_ = r.get("embeddings.position_embeddings.weight", {c.max_position_embeddings, E});
  token_type_ = r.get("embeddings.token_type_embeddings.weight", {c.type_vocab_size, E});
  emb_ln_w_ = r.get("embeddings.LayerNorm.weight", {E});
  emb_ln_b_ = r.get("embeddings.LayerNorm.bias", {E});
  layers_.resize(static_cast<std::size_t>(c.num_hidden_layers));
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    Layer& l = layers_[static_cast<std::size_t>(i)];
    for (const char* m : {"query", "key", "value"}) {
      append(l.wqkv, r.get(p + "attention.self." + m + ".weight", {E, E}));
      append(l.bqkv, r.get(p + "attention.self." + m + ".bias", {E}));
    }
    l.wo = r.get(p + "attention.output.dense.weight", {E, E});
    l.bo = r.get(p + "attention.output.dense.bias", {E});
    l.ln1_w = r.get(p + "attention.output.LayerNorm.weight", {E});
    l.ln1_b = r.get(p + "attention.output.LayerNorm.bias", {E});
    l.w1 = r.get(p + "intermediate.dense.weight", {F, E});
    l.b1 = r.get(p + "intermediate.dense.bias", {F});
    l.w2 = r.get(p + "output.dense.weight", {E, F});
    l.b2 = r.get(p + "output.dense.bias", {E});
    l.ln2_w = r.get(p + "output.LayerNorm.weight", {E});
    l.ln2_b = r.get(p + "output.LayerNorm.bias", {E});
  }
}

void BertEncoder::forward(const std::int32_t* ids, const std::vector<std::int64_t>& cu, float* hidden,
                          int threads) const {
  const BertConfig& c = config_;
  const std::int64_t E = c.hidden_size, F = c.intermediate_size, H = c.num_attention_heads, hd = E / H;
  ATTN_CHECK(cu.size() >= 2 && cu.front() == 0, value, "cu_seqlens", "has ", cu.size(), " entries starting at ",
             cu.empty() ? -1 : cu.front(), ", expected ≥ 2 entries starting at 0");
  const std::int64_t T = cu.back(), nseq = static_cast<std::int64_t>(cu.size()) - 1;
  for (std::int64_t s = 0; s < nseq; ++s) {
    const std::int64_t len = cu[static_cast<std::size_t>(s) + 1] - cu[static_cast<std::size_t>(s)];
    ATTN_CHECK(len >= 1 && len <= c.max_position_embeddings, value, "cu_seqlens", "sequence ", s, " has length ", len,
               ", expected 1 ≤ length ≤ max_position_embeddings = ", c.max_position_embeddings);
  }
  for (std::int64_t t = 0; t < T; ++t)
    ATTN_CHECK(ids[t] >= 0 && ids[t] < c.vocab_size, value, "ids", "ids[", t, "] = ", ids[t], ", expected 0 ≤ id < ",
               c.vocab_size, " (vocab_size)");
  const int nt = static_cast<int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>(threads > 0 ? threads : omp_get_max_threads(), T)));
  const auto rows_of = [&](int t, std::int64_t& r0, std::int64_t& r1) {  // thread t's rows [r0, r1)
    r0 = T * t / nt;
    r1 = T * (t + 1) / nt;
  };
  std::vector<float> qkv(static_cast<std::size_t>(T * 3 * E)), ctx(static_cast<std::size_t>(T * E)),
      h(static_cast<std::size_t>(T * E)), f(static_cast<std::size_t>(T * F)), tmp(static_cast<std::size_t>(T * E));
  float* x = hidden;
  const nn::detail::SingleThreadedBlas blas;

  // Embeddings: word + position (within the sequence) + token type 0, then LayerNorm.
#pragma omp parallel num_threads(nt)
  {
    std::int64_t r0, r1;
    rows_of(omp_get_thread_num(), r0, r1);
    std::int64_t s = std::upper_bound(cu.begin(), cu.end(), r0) - cu.begin() - 1;
    for (std::int64_t t = r0; t < r1; ++t) {
      while (t >= cu[static_cast<std::size_t>(s) + 1]) ++s;
      const std::int64_t p = t - cu[static_cast<std::size_t>(s)];
      const float *w = word_.data() + ids[t] * E, *pe = position_.data() + p * E;
      float* xt = tmp.data() + t * E;
      for (std::int64_t e = 0; e < E; ++e) xt[e] = w[e] + pe[e];
    }
    detail::add_layer_norm(tmp.data() + r0 * E, token_type_.data(), nullptr, emb_ln_w_.data(), emb_ln_b_.data(),
                           c.layer_norm_eps, r1 - r0, E, x + r0 * E);
  }

  SdpaParams sp;
  sp.mask.cu_seqlens_q = cu;
  sp.mask.cu_seqlens_k = cu;
  sp.num_threads = nt;
  for (const Layer& l : layers_) {
#pragma omp parallel num_threads(nt)
    {
      std::int64_t r0, r1;
      rows_of(omp_get_thread_num(), r0, r1);
      float* q = qkv.data() + r0 * 3 * E;
      detail::fill_rows(q, l.bqkv.data(), nullptr, r1 - r0, 3 * E);
      matmul_t_acc(x + r0 * E, r1 - r0, E, l.wqkv.data(), 3 * E, q);
    }
    float* base = qkv.data();
    const TensorView qv(base, DType::f32, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
    const TensorView kv(base + E, DType::f32, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
    const TensorView vv(base + 2 * E, DType::f32, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
    const TensorView ov(ctx.data(), DType::f32, {1, H, T, hd}, {T * E, hd, E, 1});
    sdpa_forward({ov, {}, {}}, qv, kv, vv, sp);
#pragma omp parallel num_threads(nt)
    {
      std::int64_t r0, r1;
      rows_of(omp_get_thread_num(), r0, r1);
      const std::int64_t M = r1 - r0;
      float *xr = x + r0 * E, *hr = h.data() + r0 * E, *tr = tmp.data() + r0 * E, *fr = f.data() + r0 * F;
      detail::fill_rows(tr, l.bo.data(), xr, M, E);  // x + b_o, then += ctx·W_oᵀ
      matmul_t_acc(ctx.data() + r0 * E, M, E, l.wo.data(), E, tr);
      detail::add_layer_norm(tr, nullptr, nullptr, l.ln1_w.data(), l.ln1_b.data(), c.layer_norm_eps, M, E, hr);
      detail::fill_rows(fr, l.b1.data(), nullptr, M, F);
      matmul_t_acc(hr, M, E, l.w1.data(), F, fr);
      detail::gelu(fr, M, F);
      detail::fill_rows(tr, l.b2.data(), hr, M, E);  // h + b₂, then += gelu(·)·W₂ᵀ
      matmul_t_acc(fr, M, F, l.w2.data(), E, tr);
      detail::add_layer_norm(tr, nullptr, nullptr, l.ln2_w.data(), l.ln2_b.data(), c.layer_norm_eps, M, E, xr);
    }
  }
}

void BertEncoder::mean_pooled(const std::int32_t* ids, const std::vector<std::int64_t>& cu, float* pooled,
                              int threads) const {
  const std::int64_t E = config_.hidden_size;
  const std::int64_t T = cu.empty() ? 0 : cu.back(), nseq = static_cast<std::int64_t>(cu.size()) - 1;
  std::vector<float> hidden(static_cast<std::size_t>(std::max<std::int64_t>(T, 1) * E));
  forward(ids, cu, hidden.data(), threads);
  for (std::int64_t s = 0; s < nseq; ++s) {
    const std::int64_t b = cu[static_cast<std::size_t>(s)], e = cu[static_cast<std::size_t>(s) + 1];
    float* out = pooled + s * E;
    std::fill(out, out + E, 0.0f);
    for (std::int64_t t = b; t < e; ++t) {
      const float* row = hidden.data() + t * E;
      for (std::int64_t k = 0; k < E; ++k) out[k] += row[k];
    }
    const float inv = 1.0f / static_cast<float>(e - b);
    for (std::int64_t k = 0; k < E; ++k) out[k] *= inv;
  }
}

}  // namespace attn::models
