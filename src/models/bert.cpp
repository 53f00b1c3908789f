// attn::models::BertEncoder: loading a BERT checkpoint and the packed forward, fp32 or in the bf16
// mode (include/attn/models/bert.hpp, docs/embeddings.md).

#include "attn/models/bert.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/sdpa.hpp"
#include "models/batch_split.hpp"
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

// y [M, N] += x [M, K]·Wᵀ, W [N, K] row-major. y already holds the GEMM's bias or its residual, so
// OpenBLAS does not clear y (its beta = 0 pass) and no separate pass adds them.
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
// columns h·hd of each), as strided [1, H, T, hd] views: no copies. Elements of type `dtype`.
void attend(void* qkv, void* ctx, DType dtype, std::int64_t T, std::int64_t E, std::int64_t H, const SdpaParams& sp) {
  const std::int64_t hd = E / H, es = static_cast<std::int64_t>(dtype_size(dtype));
  auto* base = static_cast<char*>(qkv);
  const TensorView qv(base, dtype, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
  const TensorView kv(base + E * es, dtype, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
  const TensorView vv(base + 2 * E * es, dtype, {1, H, T, hd}, {T * 3 * E, hd, 3 * E, 1});
  const TensorView ov(ctx, dtype, {1, H, T, hd}, {T * E, hd, E, 1});
  sdpa_forward({ov, {}, {}}, qv, kv, vv, sp);
}

// The bf16 mode's attention: ctx [T, E] (bf16) of qkv [T, 3E] (bf16). The cpu backend runs bf16
// calls of at least kTileRows query rows on its tile path (AMX, P rounded to bf16) and smaller ones
// on its vector path (P in fp32; docs/amx.md, "When it runs"). So a smaller call gets a zero dummy
// sequence up to kTileRows rows: every sequence runs the same kernel whatever else is in its batch,
// and a text's embedding does not depend on the batch.
constexpr std::int64_t kTileRows = 16;
void attend_bf16(std::uint16_t* qkv, std::uint16_t* ctx, std::int64_t T, std::int64_t E, std::int64_t H,
                 const SdpaParams& sp) {
  if (T >= kTileRows) {
    attend(qkv, ctx, DType::bf16, T, E, H, sp);
    return;
  }
  std::vector<std::uint16_t> q(static_cast<std::size_t>(kTileRows * 3 * E), 0),
      o(static_cast<std::size_t>(kTileRows * E));
  std::memcpy(q.data(), qkv, static_cast<std::size_t>(T * 3 * E) * sizeof(std::uint16_t));
  SdpaParams padded = sp;
  padded.mask.cu_seqlens_q.push_back(kTileRows);
  padded.mask.cu_seqlens_k.push_back(kTileRows);
  attend(q.data(), o.data(), DType::bf16, kTileRows, E, H, padded);
  std::memcpy(ctx, o.data(), static_cast<std::size_t>(T * E) * sizeof(std::uint16_t));
}

}  // namespace

namespace detail {
BatchSplit split_batch(const std::vector<std::int64_t>& cu, int nt, std::int64_t E, std::int64_t F) {
  BatchSplit sp;
  const auto nseq = static_cast<std::int64_t>(cu.size()) - 1;
  if (nseq < nt) return sp;
  // The work of a sequence of n tokens: its GEMMs, 2n(4E² + 2EF) flops, and its attention, 4n²E.
  std::vector<double> cum(static_cast<std::size_t>(nseq) + 1, 0.0);
  for (std::int64_t s = 0; s < nseq; ++s) {
    const auto n = static_cast<double>(cu[static_cast<std::size_t>(s) + 1] - cu[static_cast<std::size_t>(s)]);
    cum[static_cast<std::size_t>(s) + 1] =
        cum[static_cast<std::size_t>(s)] + 2.0 * n * static_cast<double>(4 * E * E + 2 * E * F) + 4.0 * n * n * E;
  }
  const double total = cum.back();
  sp.seq.assign(static_cast<std::size_t>(nt) + 1, nseq);
  sp.seq[0] = 0;
  double worst = 0;
  for (int t = 1; t <= nt; ++t) {
    std::int64_t s = nseq;
    if (t < nt) {  // the boundary nearest to t/nt of the work, leaving every share at least one sequence
      const double target = total * t / nt;
      s = std::lower_bound(cum.begin(), cum.end(), target) - cum.begin();
      if (s > 0 && target - cum[static_cast<std::size_t>(s) - 1] < cum[static_cast<std::size_t>(s)] - target) --s;
      s = std::clamp<std::int64_t>(s, sp.seq[static_cast<std::size_t>(t) - 1] + 1, nseq - (nt - t));
      sp.seq[static_cast<std::size_t>(t)] = s;
    }
    worst = std::max(worst, cum[static_cast<std::size_t>(s)] - cum[static_cast<std::size_t>(sp.seq[t - 1])]);
  }
  sp.owned = worst <= BatchSplit::kImbalance * total / nt;
  return sp;
}
}  // namespace detail

namespace {

// Runs a forward's steps on nt threads, shared as `split` says; every step works on rows [r0, r1):
//   embed(r0, r1), then per layer l: qkv(l, r0, r1), attend(r0, r1, sdpa params) (owned: the
//   thread's own sequences on one thread; else all rows on all threads), rest(l, r0, r1).
// Row-split, the QKV GEMM of layer l runs in the region of layer l − 1's rest: two regions per
// layer. An exception of any step is rethrown after its region.
template <class Embed, class Qkv, class Attend, class Rest>
void drive(const std::vector<std::int64_t>& cu, int nt, std::size_t layers, const detail::BatchSplit& split,
           const Embed& embed, const Qkv& qkv, const Attend& attend, const Rest& rest) {
  const std::int64_t T = cu.back();
  std::exception_ptr error;
  std::mutex mu;
  const auto guarded = [&](const auto& body) {
    try {
      body();
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
    }
  };
  if (split.owned) {
#pragma omp parallel num_threads(nt)
    {
      guarded([&] {  // share t on thread t (on fewer threads, should OpenMP grant fewer, every share still runs)
        for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
          const std::int64_t s0 = split.seq[static_cast<std::size_t>(t)],
                             s1 = split.seq[static_cast<std::size_t>(t) + 1];
          const std::int64_t r0 = cu[static_cast<std::size_t>(s0)], r1 = cu[static_cast<std::size_t>(s1)];
          std::vector<std::int64_t> own(cu.begin() + s0, cu.begin() + s1 + 1);
          for (std::int64_t& c : own) c -= r0;
          const SdpaParams sp = packed_self_attention(own, 1);
          embed(r0, r1);
          for (std::size_t l = 0; l < layers; ++l) {
            qkv(l, r0, r1);
            attend(r0, r1, sp);
            rest(l, r0, r1);
          }
        }
      });
    }
  } else {
    const SdpaParams sp = packed_self_attention(cu, nt);
    for (std::size_t l = 0; l <= layers && !error; ++l) {  // region l: layer l − 1's rest, layer l's QKV
      if (l > 0) guarded([&] { attend(0, T, sp); });
      if (error) break;
#pragma omp parallel num_threads(nt)
      {
        guarded([&] {
          std::int64_t r0, r1;
          rows_of(T, omp_get_num_threads(), omp_get_thread_num(), r0, r1);
          if (l == 0)
            embed(r0, r1);
          else
            rest(l - 1, r0, r1);
          if (l < layers) qkv(l, r0, r1);
        });
      }
    }
  }
  if (error) std::rethrow_exception(error);
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
  std::unique_ptr<float[]> qkv, ctx, h, f, hidden;  // fp32 (h, hidden: both modes)
  std::unique_ptr<std::uint16_t[]> qkvb, ab, fb;    // bf16 mode
  std::vector<detail::Bf16Scratch> scratch;
  void reserve(std::int64_t T, std::int64_t E, std::int64_t F, bool bf16, int nt) {
    if (T > rows) {
      const auto n = [&](std::int64_t w) { return static_cast<std::size_t>(T * w); };
      h.reset(new float[n(E)]);
      hidden.reset(new float[n(E)]);
      qkv.reset(bf16 ? nullptr : new float[n(3 * E)]);
      ctx.reset(bf16 ? nullptr : new float[n(E)]);
      f.reset(bf16 ? nullptr : new float[n(F)]);
      qkvb.reset(bf16 ? new std::uint16_t[n(3 * E)] : nullptr);
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
    using detail::Bf16Epilogue;
    b->layers.push_back({detail::Bf16Matmul(l.wqkv.data(), 3 * E, E, Bf16Epilogue::bias_to_bf16, l.bqkv.data()),
                         detail::Bf16Matmul(l.wo.data(), E, E, Bf16Epilogue::bias_accumulate, l.bo.data()),
                         detail::Bf16Matmul(l.w1.data(), F, E, Bf16Epilogue::bias_gelu_to_bf16, l.b1.data()),
                         detail::Bf16Matmul(l.w2.data(), E, F, Bf16Epilogue::bias_accumulate, l.b2.data())});
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

// fp32: per layer, on each thread's rows (docs/embeddings.md §2)
//   qkv = b_qkv, += x·W_qkvᵀ;  ctx = attention;  x += ctx·W_oᵀ;  h = LayerNorm(x + b_o);
//   f = b₁, += h·W₁ᵀ, gelu in place;  h += f·W₂ᵀ;  x = LayerNorm(h + b₂)
// Each GEMM accumulates onto rows that hold its bias or its residual; the other bias is added by
// the LayerNorm pass, so no pass runs only for a bias or a residual.
void BertEncoder::forward_f32(detail::BertWorkspace& ws, const std::int32_t* ids, const std::vector<std::int64_t>& cu,
                              float* x, int nt) const {
  const BertConfig& c = config_;
  const std::int64_t E = c.hidden_size, F = c.intermediate_size, H = c.num_attention_heads;
  float *qkv = ws.qkv.get(), *ctx = ws.ctx.get(), *h = ws.h.get(), *f = ws.f.get();
  const nn::detail::SingleThreadedBlas blas;
  drive(
      cu, nt, layers_.size(), detail::split_batch(cu, nt, E, F),
      [&](std::int64_t r0, std::int64_t r1) { embed_rows(ids, cu, r0, r1, h, x, nullptr); },
      [&](std::size_t li, std::int64_t r0, std::int64_t r1) {
        const Layer& l = layers_[li];
        float* q = qkv + r0 * 3 * E;
        detail::fill_rows(q, l.bqkv.data(), nullptr, r1 - r0, 3 * E);
        matmul_t_acc(x + r0 * E, r1 - r0, E, l.wqkv.data(), 3 * E, q);
      },
      [&](std::int64_t r0, std::int64_t r1, const SdpaParams& sp) {
        attend(qkv + r0 * 3 * E, ctx + r0 * E, DType::f32, r1 - r0, E, H, sp);
      },
      [&](std::size_t li, std::int64_t r0, std::int64_t r1) {
        const Layer& l = layers_[li];
        const std::int64_t M = r1 - r0;
        float *xr = x + r0 * E, *hr = h + r0 * E, *fr = f + r0 * F;
        matmul_t_acc(ctx + r0 * E, M, E, l.wo.data(), E, xr);
        detail::add_layer_norm(xr, l.bo.data(), nullptr, l.ln1_w.data(), l.ln1_b.data(), c.layer_norm_eps, M, E, hr);
        detail::fill_rows(fr, l.b1.data(), nullptr, M, F);
        matmul_t_acc(hr, M, E, l.w1.data(), F, fr);
        detail::gelu(fr, M, F);
        matmul_t_acc(fr, M, F, l.w2.data(), E, hr);
        detail::add_layer_norm(hr, l.b2.data(), nullptr, l.ln2_w.data(), l.ln2_b.data(), c.layer_norm_eps, M, E, xr);
      });
}

// Embeddings of rows [r0, r1): word + position (within the sequence) + token type 0, then
// LayerNorm into x (and its bf16 rounding into xb when given); tmp [T, E] is scratch.
void BertEncoder::embed_rows(const std::int32_t* ids, const std::vector<std::int64_t>& cu, std::int64_t r0,
                             std::int64_t r1, float* tmp, float* x, std::uint16_t* xb) const {
  const std::int64_t E = config_.hidden_size;
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

// bf16 mode: the fp32 forward's steps with every GEMM on oneDNN (bf16 weights, fp32 accumulation)
// and its bias, residual and gelu in the GEMM's epilogue; q, k, v and the attention in bf16:
//   qkv = bf16(x·W_qkvᵀ + b);  ctx = bf16 attention (AMX tiles where the CPU has them);
//   x += ctx·W_oᵀ + b_o;  h = LayerNorm(x) (+ its bf16 rows);  f = bf16(gelu(h·W₁ᵀ + b₁));
//   h += f·W₂ᵀ + b₂;  x = LayerNorm(h) (+ its bf16 rows)
void BertEncoder::forward_bf16(detail::BertWorkspace& ws, const std::int32_t* ids, const std::vector<std::int64_t>& cu,
                               float* x, int nt) const {
  const BertConfig& c = config_;
  const std::int64_t E = c.hidden_size, F = c.intermediate_size, H = c.num_attention_heads;
  float* h = ws.h.get();
  // ab: the bf16 input of the next E-wide GEMM (x, then ctx, then h: each consumed before the next
  // is written, row by row on the same thread, or across the SDPA call's region); fb: gelu's output.
  std::uint16_t *qkvb = ws.qkvb.get(), *ab = ws.ab.get(), *fb = ws.fb.get();
  std::vector<detail::Bf16Scratch>& scratch = ws.scratch;
  const auto sc = [&]() -> detail::Bf16Scratch& { return scratch[static_cast<std::size_t>(omp_get_thread_num())]; };
  drive(
      cu, nt, layers_.size(), detail::split_batch(cu, nt, E, F),
      [&](std::int64_t r0, std::int64_t r1) { embed_rows(ids, cu, r0, r1, h, x, ab); },
      [&](std::size_t li, std::int64_t r0, std::int64_t r1) {
        bf16_->layers[li].qkv.to_bf16(ab + r0 * E, r1 - r0, qkvb + r0 * 3 * E, sc());
      },
      [&](std::int64_t r0, std::int64_t r1, const SdpaParams& sp) {
        attend_bf16(qkvb + r0 * 3 * E, ab + r0 * E, r1 - r0, E, H, sp);
      },
      [&](std::size_t li, std::int64_t r0, std::int64_t r1) {
        const Layer& l = layers_[li];
        const Bf16Layers::Layer& g = bf16_->layers[li];
        const std::int64_t M = r1 - r0;
        float *xr = x + r0 * E, *hr = h + r0 * E;
        std::uint16_t *ar = ab + r0 * E, *fbr = fb + r0 * F;
        detail::Bf16Scratch& s = sc();
        g.o.accumulate(ar, M, xr, s);
        detail::add_layer_norm(xr, nullptr, nullptr, l.ln1_w.data(), l.ln1_b.data(), c.layer_norm_eps, M, E, hr, ar);
        g.w1.to_bf16(ar, M, fbr, s);
        g.w2.accumulate(fbr, M, hr, s);
        detail::add_layer_norm(hr, nullptr, nullptr, l.ln2_w.data(), l.ln2_b.data(), c.layer_norm_eps, M, E, xr, ar);
      });
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
