// attn::models::BertEncoder: loading a BERT checkpoint and the packed forward, fp32 or in the bf16
// mode (include/attn/models/bert.hpp, docs/embeddings.md).

#include "attn/models/bert.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/sdpa.hpp"
#include "models/bf16_matmul.hpp"
#include "models/rows.hpp"
#include "nn/gemm.hpp"
#include "nn/gemm_bf16.hpp"

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

// Thread t's rows [r0, r1) of T rows split between nt threads.
void rows_of(std::int64_t T, int nt, int t, std::int64_t& r0, std::int64_t& r1) {
  r0 = T * t / nt;
  r1 = T * (t + 1) / nt;
}

void release(std::vector<float>& v) { std::vector<float>().swap(v); }

// The SDPA parameters of self-attention within each packed sequence [cu[s], cu[s + 1]).
SdpaParams packed_self_attention(const std::vector<std::int64_t>& cu, int nt) {
  SdpaParams sp;
  sp.mask.cu_seqlens_q = cu;
  sp.mask.cu_seqlens_k = cu;
  sp.num_threads = nt;
  return sp;
}

// ctx [T, E] = attention of q, k, v, the three E-wide column blocks of qkv [T, 3E] (head h at
// columns h·hd of each), as strided [1, H, T, hd] views: no copies.
void attend(float* qkv, float* ctx, std::int64_t T, std::int64_t E, std::int64_t H, const SdpaParams& sp) {
  const std::int64_t hd = E / H;
  const TensorView qv(qkv, DType::f32, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
  const TensorView kv(qkv + E, DType::f32, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
  const TensorView vv(qkv + 2 * E, DType::f32, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
  const TensorView ov(ctx, DType::f32, {1, H, T, hd}, {T * E, hd, E, 1});
  sdpa_forward({ov, {}, {}}, qv, kv, vv, sp);
}

}  // namespace

// bf16 mode: each layer's four GEMM weights, rounded to bf16 once and packed for oneDNN.
struct BertEncoder::Bf16Layers {
  struct Layer {
    detail::Bf16Matmul qkv, o, w1, w2;
  };
  std::vector<Layer> layers;
};

// The forward's buffers, uninitialised and grown on demand, so that a batch allocates (and zeroes)
// nothing: every element is written before it is read. A call takes the pool's workspace, or makes
// its own when another call holds it (two threads encoding at once).
namespace detail {
struct BertWorkspace {
  std::int64_t rows = 0;
  std::unique_ptr<float[]> qkv, ctx, h, f, tmp, hidden;
  std::unique_ptr<std::uint16_t[]> ab, fb;
  std::vector<detail::Bf16Scratch> scratch;
  void reserve(std::int64_t T, std::int64_t E, std::int64_t F, bool bf16, int nt) {
    if (T > rows) {
      const auto n = [&](std::int64_t w) { return static_cast<std::size_t>(T * w); };
      qkv.reset(new float[n(3 * E)]);
      ctx.reset(new float[n(E)]);
      h.reset(new float[n(E)]);
      f.reset(new float[n(F)]);
      tmp.reset(new float[n(E)]);
      hidden.reset(new float[n(E)]);
      ab.reset(bf16 ? new std::uint16_t[n(E)] : nullptr);
      fb.reset(bf16 ? new std::uint16_t[n(F)] : nullptr);
      rows = T;
    }
    if (scratch.size() < static_cast<std::size_t>(nt)) scratch.resize(static_cast<std::size_t>(nt));
  }
};

struct BertWorkspacePool {
  std::mutex mu;
  std::unique_ptr<BertWorkspace> spare;
};
}  // namespace detail

namespace {
// A workspace from the pool for the lease's lifetime (returned after, the larger one kept).
struct Lease {
  detail::BertWorkspacePool* pool;
  std::unique_ptr<detail::BertWorkspace> ws;
  explicit Lease(detail::BertWorkspacePool* p) : pool(p) {
    {
      const std::lock_guard<std::mutex> lock(pool->mu);
      ws = std::move(pool->spare);
    }
    if (!ws) ws = std::make_unique<detail::BertWorkspace>();
  }
  ~Lease() {
    const std::lock_guard<std::mutex> lock(pool->mu);
    if (!pool->spare || pool->spare->rows < ws->rows) pool->spare = std::move(ws);
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
};
}  // namespace

BertEncoder::BertEncoder(const std::string& dir, nn::MatmulPrecision precision)
    : BertEncoder(BertConfig::from_file((std::filesystem::path(dir) / "config.json").string()),
                  (std::filesystem::path(dir) / "model.safetensors").string(), precision) {}

BertEncoder::BertEncoder(const BertConfig& config, const std::string& safetensors_path, nn::MatmulPrecision precision)
    : config_(config), pool_(std::make_shared<detail::BertWorkspacePool>()) {
  load(safetensors_path);
  if (precision == nn::MatmulPrecision::bf16) to_bf16();
}

void BertEncoder::to_bf16() {
  const std::int64_t E = config_.hidden_size, F = config_.intermediate_size;
  auto b = std::make_shared<Bf16Layers>();
  for (Layer& l : layers_) {
    b->layers.push_back({detail::Bf16Matmul(l.wqkv.data(), 3 * E, E), detail::Bf16Matmul(l.wo.data(), E, E),
                         detail::Bf16Matmul(l.w1.data(), F, E), detail::Bf16Matmul(l.w2.data(), E, F)});
    release(l.wqkv);  // the fp32 GEMM weights are not used again
    release(l.wo);
    release(l.w1);
    release(l.w2);
  }
  bf16_ = std::move(b);
}

std::string BertEncoder::gemm_impl() const {
  if (!bf16_ || bf16_->layers.empty()) return "openblas sgemm";
  return "onednn " + bf16_->layers.front().w1.impl();
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

// Validates a call; the thread count to use.
int BertEncoder::check(const std::int32_t* ids, const std::vector<std::int64_t>& cu, int threads) const {
  const BertConfig& c = config_;
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
  return nt;
}

void BertEncoder::forward(const std::int32_t* ids, const std::vector<std::int64_t>& cu, float* hidden,
                          int threads) const {
  const int nt = check(ids, cu, threads);
  const Lease lease(pool_.get());
  lease.ws->reserve(cu.back(), config_.hidden_size, config_.intermediate_size, bf16_ != nullptr, nt);
  if (bf16_)
    forward_bf16(*lease.ws, ids, cu, hidden, nt);
  else
    forward_f32(*lease.ws, ids, cu, hidden, nt);
}

void BertEncoder::forward_f32(detail::BertWorkspace& ws, const std::int32_t* ids, const std::vector<std::int64_t>& cu,
                              float* x, int nt) const {
  const BertConfig& c = config_;
  const std::int64_t E = c.hidden_size, F = c.intermediate_size, H = c.num_attention_heads, T = cu.back();
  float *qkv = ws.qkv.get(), *ctx = ws.ctx.get(), *h = ws.h.get(), *f = ws.f.get(), *tmp = ws.tmp.get();
  const nn::detail::SingleThreadedBlas blas;
  embed(ids, cu, tmp, x, nullptr, nt);

  const SdpaParams sp = packed_self_attention(cu, nt);
  for (const Layer& l : layers_) {
#pragma omp parallel num_threads(nt)
    {
      std::int64_t r0, r1;
      rows_of(T, nt, omp_get_thread_num(), r0, r1);
      float* q = qkv + r0 * 3 * E;
      detail::fill_rows(q, l.bqkv.data(), nullptr, r1 - r0, 3 * E);
      matmul_t_acc(x + r0 * E, r1 - r0, E, l.wqkv.data(), 3 * E, q);
    }
    attend(qkv, ctx, T, E, H, sp);
#pragma omp parallel num_threads(nt)
    {
      std::int64_t r0, r1;
      rows_of(T, nt, omp_get_thread_num(), r0, r1);
      const std::int64_t M = r1 - r0;
      float *xr = x + r0 * E, *hr = h + r0 * E, *tr = tmp + r0 * E, *fr = f + r0 * F;
      detail::fill_rows(tr, l.bo.data(), xr, M, E);  // x + b_o, then += ctx·W_oᵀ
      matmul_t_acc(ctx + r0 * E, M, E, l.wo.data(), E, tr);
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

// Embeddings: word + position (within the sequence) + token type 0, then LayerNorm into x (and its
// bf16 rounding into xb when given); tmp [T, E] is scratch.
void BertEncoder::embed(const std::int32_t* ids, const std::vector<std::int64_t>& cu, float* tmp, float* x,
                        std::uint16_t* xb, int nt) const {
  const std::int64_t E = config_.hidden_size, T = cu.back();
#pragma omp parallel num_threads(nt)
  {
    std::int64_t r0, r1;
    rows_of(T, nt, omp_get_thread_num(), r0, r1);
    std::int64_t s = std::upper_bound(cu.begin(), cu.end(), r0) - cu.begin() - 1;
    for (std::int64_t t = r0; t < r1; ++t) {
      while (t >= cu[static_cast<std::size_t>(s) + 1]) ++s;
      const std::int64_t p = t - cu[static_cast<std::size_t>(s)];
      const float *w = word_.data() + ids[t] * E, *pe = position_.data() + p * E;
      float* xt = tmp + t * E;
      for (std::int64_t e = 0; e < E; ++e) xt[e] = w[e] + pe[e];
    }
    detail::add_layer_norm(tmp + r0 * E, token_type_.data(), nullptr, emb_ln_w_.data(), emb_ln_b_.data(),
                           config_.layer_norm_eps, r1 - r0, E, x + r0 * E, xb ? xb + r0 * E : nullptr);
  }
}

// bf16 mode: the fp32 forward's passes, each GEMM on oneDNN with the bf16 weights, its input
// rounded to bf16 by the pass that writes it (LayerNorm, gelu) or just before (ctx).
void BertEncoder::forward_bf16(detail::BertWorkspace& ws, const std::int32_t* ids, const std::vector<std::int64_t>& cu,
                               float* x, int nt) const {
  const BertConfig& c = config_;
  const std::int64_t E = c.hidden_size, F = c.intermediate_size, H = c.num_attention_heads, T = cu.back();
  float *qkv = ws.qkv.get(), *ctx = ws.ctx.get(), *h = ws.h.get(), *f = ws.f.get(), *tmp = ws.tmp.get();
  // ab: the bf16 input of the next E-wide GEMM (x, then ctx, then h: each consumed before the next
  // is written, row by row on the same thread); fb: gelu's output.
  std::uint16_t *ab = ws.ab.get(), *fb = ws.fb.get();
  std::vector<detail::Bf16Scratch>& scratch = ws.scratch;
  embed(ids, cu, tmp, x, ab, nt);

  const SdpaParams sp = packed_self_attention(cu, nt);
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const Bf16Layers::Layer& g = bf16_->layers[li];
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num();
      std::int64_t r0, r1;
      rows_of(T, nt, t, r0, r1);
      float* q = qkv + r0 * 3 * E;
      detail::fill_rows(q, l.bqkv.data(), nullptr, r1 - r0, 3 * E);
      g.qkv.accumulate(ab + r0 * E, r1 - r0, q, scratch[static_cast<std::size_t>(t)]);
    }
    attend(qkv, ctx, T, E, H, sp);
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num();
      detail::Bf16Scratch& sc = scratch[static_cast<std::size_t>(t)];
      std::int64_t r0, r1;
      rows_of(T, nt, t, r0, r1);
      const std::int64_t M = r1 - r0;
      float *xr = x + r0 * E, *hr = h + r0 * E, *tr = tmp + r0 * E, *fr = f + r0 * F;
      std::uint16_t *ar = ab + r0 * E, *fbr = fb + r0 * F;
      detail::to_bf16(ctx + r0 * E, M * E, ar);
      detail::fill_rows(tr, l.bo.data(), xr, M, E);  // x + b_o, then += ctx·W_oᵀ
      g.o.accumulate(ar, M, tr, sc);
      detail::add_layer_norm(tr, nullptr, nullptr, l.ln1_w.data(), l.ln1_b.data(), c.layer_norm_eps, M, E, hr, ar);
      detail::fill_rows(fr, l.b1.data(), nullptr, M, F);
      g.w1.accumulate(ar, M, fr, sc);
      detail::gelu_to_bf16(fr, M, F, fbr);
      detail::fill_rows(tr, l.b2.data(), hr, M, E);  // h + b₂, then += gelu(·)·W₂ᵀ
      g.w2.accumulate(fbr, M, tr, sc);
      detail::add_layer_norm(tr, nullptr, nullptr, l.ln2_w.data(), l.ln2_b.data(), c.layer_norm_eps, M, E, xr, ar);
    }
  }
}

void BertEncoder::mean_pooled(const std::int32_t* ids, const std::vector<std::int64_t>& cu, float* pooled,
                              int threads) const {
  const std::int64_t E = config_.hidden_size;
  const int nt = check(ids, cu, threads);
  const std::int64_t nseq = static_cast<std::int64_t>(cu.size()) - 1;
  const Lease lease(pool_.get());
  detail::BertWorkspace& ws = *lease.ws;
  ws.reserve(cu.back(), E, config_.intermediate_size, bf16_ != nullptr, nt);
  float* hidden = ws.hidden.get();
  if (bf16_)
    forward_bf16(ws, ids, cu, hidden, nt);
  else
    forward_f32(ws, ids, cu, hidden, nt);
  for (std::int64_t s = 0; s < nseq; ++s) {
    const std::int64_t b = cu[static_cast<std::size_t>(s)], e = cu[static_cast<std::size_t>(s) + 1];
    float* out = pooled + s * E;
    std::fill(out, out + E, 0.0f);
    for (std::int64_t t = b; t < e; ++t) {
      const float* row = hidden + t * E;
      for (std::int64_t k = 0; k < E; ++k) out[k] += row[k];
    }
    const float inv = 1.0f / static_cast<float>(e - b);
    for (std::int64_t k = 0; k < E; ++k) out[k] *= inv;
  }
}

}  // namespace attn::models
