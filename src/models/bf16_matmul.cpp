// bf16 GEMMs of the BERT encoder with weights packed once (src/models/bf16_matmul.hpp,
// docs/embeddings.md §2). oneDNN's matmul primitive; the kernel is oneDNN's choice for the CPU.

#include "models/bf16_matmul.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "attn/error.hpp"
#include "nn/gemm_bf16.hpp"

#ifdef ATTN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace attn::models::detail {

#ifdef ATTN_HAVE_DNNL

namespace {

using dnnl::memory;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// OpenMP's thread count 1 for the guard's lifetime: oneDNN (OpenMP build) plans a primitive for
// omp_get_max_threads() threads and splits its work that way at execution, so a primitive meant to
// run on one thread of the encoder's team must be planned for one.
struct OneThreadPlanning {
  int saved = omp_get_max_threads();
  OneThreadPlanning() { omp_set_num_threads(1); }
  ~OneThreadPlanning() { omp_set_num_threads(saved); }
  OneThreadPlanning(const OneThreadPlanning&) = delete;
  OneThreadPlanning& operator=(const OneThreadPlanning&) = delete;
};

bool has_bias(Bf16Epilogue e) { return e != Bf16Epilogue::accumulate; }
bool bf16_out(Bf16Epilogue e) { return e == Bf16Epilogue::bias_to_bf16 || e == Bf16Epilogue::bias_gelu_to_bf16; }
bool sums(Bf16Epilogue e) { return e == Bf16Epilogue::accumulate || e == Bf16Epilogue::bias_accumulate; }

// `rows` rows of x (bf16) · w (bf16) with the epilogue: the bias as the matmul's bias argument,
// accumulation onto y as a sum post-op, gelu as an eltwise post-op (gelu_erf, the exact one), the
// bf16 output as the destination's type. oneDNN's scratchpad is the caller's.
dnnl::matmul::primitive_desc describe(std::int64_t rows, std::int64_t N, std::int64_t K, const memory::desc& w,
                                      Bf16Epilogue e) {
  const memory::desc src({rows, K}, memory::data_type::bf16, memory::dims{K, 1});
  const memory::desc dst({rows, N}, bf16_out(e) ? memory::data_type::bf16 : memory::data_type::f32, memory::dims{N, 1});
  dnnl::primitive_attr attr;
  dnnl::post_ops ops;
  if (sums(e)) ops.append_sum(1.0f);
  if (e == Bf16Epilogue::bias_gelu_to_bf16) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
  attr.set_post_ops(ops);
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (has_bias(e)) {
    const memory::desc bias({1, N}, memory::data_type::f32, memory::dims{N, 1});
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, bias, dst), attr, engine());
  }
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, dst), attr, engine());
}

memory::desc any_weights(std::int64_t N, std::int64_t K) {
  return memory::desc({K, N}, memory::data_type::bf16, memory::format_tag::any);
}

bool is_reference(const std::string& impl) { return impl.rfind("ref", 0) == 0; }

}  // namespace

struct Bf16Matmul::Impl {
  struct Prim {
    std::int64_t rows;
    memory::desc src, dst, scratch;
    dnnl::matmul mm;
  };
  memory::desc wdesc;
  std::vector<std::uint8_t> wdata;  // W as oneDNN's kernel reads it
  std::vector<float> bias;          // b [N] (the epilogues with a bias)
  memory::desc bdesc;
  std::vector<Prim> prims;  // ascending rows; the last has kBlockRows
  std::size_t scratch_bytes = 1;
  std::string impl;
};

Bf16Matmul::Bf16Matmul(const float* W, std::int64_t N, std::int64_t K, Bf16Epilogue epilogue, const float* b)
    : impl_(std::make_unique<Impl>()), N_(N), K_(K), epilogue_(epilogue) {
  ATTN_CHECK(N >= 1 && K >= 1, value, "W", "is [", N, ", ", K, "], expected a non-empty matrix");
  ATTN_CHECK((b != nullptr) == has_bias(epilogue), value, "b", b ? "is given" : "is null", ", expected ",
             has_bias(epilogue) ? "the bias [N] of this epilogue" : "null (this epilogue has no bias)");
  Impl& d = *impl_;
  if (b) d.bias.assign(b, b + N);
  d.bdesc = memory::desc({1, N}, memory::data_type::f32, memory::dims{N, 1});
  try {
    const OneThreadPlanning one;
    const auto full = describe(kBlockRows, N, K, any_weights(N, K), epilogue);
    d.impl = full.impl_info_str();
    ATTN_CHECK(!is_reference(d.impl), unsupported, "precision",
               "bf16: oneDNN has no bf16 matmul kernel for this CPU (it would run its reference code, \"", d.impl,
               "\", far slower than fp32); it needs AVX-512 (AVX512_BF16 or AMX for bf16 in hardware), use fp32");
    d.wdesc = full.weights_desc();
    for (std::int64_t rows = 16; rows < kBlockRows; rows += 16) {
      try {
        const auto pd = describe(rows, N, K, d.wdesc, epilogue);
        if (is_reference(pd.impl_info_str()) || !(pd.weights_desc() == d.wdesc)) continue;
        d.prims.push_back({rows, pd.src_desc(), pd.dst_desc(), pd.scratchpad_desc(), dnnl::matmul(pd)});
      } catch (const dnnl::error&) {  // no kernel for this block with these packed weights: padded to a larger one
      }
    }
    d.prims.push_back({kBlockRows, full.src_desc(), full.dst_desc(), full.scratchpad_desc(), dnnl::matmul(full)});
    for (const auto& p : d.prims) d.scratch_bytes = std::max(d.scratch_bytes, p.scratch.get_size());
  } catch (const dnnl::error& e) {
    throw Error(ErrorKind::unsupported, "precision",
                attn::detail::concat("bf16: oneDNN has no bf16 matmul kernel for this CPU (it cannot plan [",
                                     kBlockRows, ", ", K, "] x [", K, ", ", N, "]: ", e.what(),
                                     "); it needs AVX-512 (AVX512_BF16 or AMX for bf16 in hardware), use fp32"));
  }
  // W [N, K] fp32 -> bf16 row-major (= the {K, N} matrix Wᵀ with strides {1, K}) -> oneDNN's layout.
  std::vector<std::uint16_t> plain(static_cast<std::size_t>(N * K));
  nn::detail::round_rows_to_bf16(W, N, K, K, plain.data(), K);
  d.wdata.resize(d.wdesc.get_size());
  memory src(memory::desc({K, N}, memory::data_type::bf16, memory::dims{1, K}), engine(), plain.data());
  memory dst(d.wdesc, engine(), d.wdata.data());
  dnnl::stream s(engine());
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
}

void Bf16Matmul::accumulate(const std::uint16_t* x, std::int64_t M, float* y, Bf16Scratch& scratch) const {
  ATTN_CHECK(!bf16_out(epilogue_), value, "y",
             "is fp32, expected bf16 rows (this GEMM's epilogue writes bf16: to_bf16)");
  run(x, M, y, scratch);
}

void Bf16Matmul::to_bf16(const std::uint16_t* x, std::int64_t M, std::uint16_t* yb, Bf16Scratch& scratch) const {
  ATTN_CHECK(bf16_out(epilogue_), value, "yb",
             "is bf16, expected fp32 rows (this GEMM's epilogue accumulates: accumulate)");
  run(x, M, yb, scratch);
}

void Bf16Matmul::run(const std::uint16_t* x, std::int64_t M, void* y, Bf16Scratch& scratch) const {
  if (M <= 0) return;
  const Impl& d = *impl_;
  const std::size_t ysize = bf16_out(epilogue_) ? sizeof(std::uint16_t) : sizeof(float);
  auto* yb = static_cast<std::uint8_t*>(y);
  if (scratch.pad.size() < d.scratch_bytes) scratch.pad.resize(d.scratch_bytes);
  dnnl::stream s(engine());
  const memory w(d.wdesc, engine(), const_cast<std::uint8_t*>(d.wdata.data()));
  const memory bias = d.bias.empty() ? memory() : memory(d.bdesc, engine(), const_cast<float*>(d.bias.data()));
  const auto exec = [&](const Impl::Prim& p, const std::uint16_t* xs, void* ys) {
    const memory a(p.src, engine(), const_cast<std::uint16_t*>(xs)), c(p.dst, engine(), ys),
        pad(p.scratch, engine(), scratch.pad.data());
    if (d.bias.empty())
      p.mm.execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, pad}});
    else
      p.mm.execute(s, {{DNNL_ARG_SRC, a},
                       {DNNL_ARG_WEIGHTS, w},
                       {DNNL_ARG_BIAS, bias},
                       {DNNL_ARG_DST, c},
                       {DNNL_ARG_SCRATCHPAD, pad}});
  };
  const Impl::Prim& full = d.prims.back();
  const auto row_bytes = static_cast<std::size_t>(N_) * ysize;
  std::int64_t m = 0;
  for (; m + kBlockRows <= M; m += kBlockRows) exec(full, x + m * K_, yb + static_cast<std::size_t>(m) * row_bytes);
  const std::int64_t r = M - m;
  if (r > 0) {
    const Impl::Prim& p =
        *std::find_if(d.prims.begin(), d.prims.end(), [&](const Impl::Prim& q) { return q.rows >= r; });
    std::uint8_t* yr = yb + static_cast<std::size_t>(m) * row_bytes;
    if (p.rows == r) {
      exec(p, x + m * K_, yr);
    } else {  // r rows through zero-padded scratch rows (y's rows copied in when the GEMM sums onto them)
      scratch.x.assign(static_cast<std::size_t>(p.rows * K_), 0);
      scratch.y.resize(static_cast<std::size_t>(p.rows) * row_bytes);
      std::memcpy(scratch.x.data(), x + m * K_, static_cast<std::size_t>(r * K_) * sizeof(std::uint16_t));
      if (sums(epilogue_)) std::memcpy(scratch.y.data(), yr, static_cast<std::size_t>(r) * row_bytes);
      exec(p, scratch.x.data(), scratch.y.data());
      s.wait();
      std::memcpy(yr, scratch.y.data(), static_cast<std::size_t>(r) * row_bytes);
    }
  }
  s.wait();
}

const std::string& Bf16Matmul::impl() const { return impl_->impl; }

std::string bf16_matmul_probe(std::int64_t N, std::int64_t K) {
  try {
    const OneThreadPlanning one;
    return describe(Bf16Matmul::kBlockRows, N, K, any_weights(N, K), Bf16Epilogue::accumulate).impl_info_str();
  } catch (const dnnl::error& e) {
    return std::string("none (oneDNN: ") + e.what() + ")";
  }
}

#else  // no oneDNN

struct Bf16Matmul::Impl {
  std::string impl = "none";
};

Bf16Matmul::Bf16Matmul(const float*, std::int64_t N, std::int64_t K, Bf16Epilogue epilogue, const float*)
    : N_(N), K_(K), epilogue_(epilogue) {
  throw Error(ErrorKind::unsupported, "precision",
              "bf16: needs oneDNN, and this libattn_models was built without it (install libdnnl-dev and "
              "reconfigure), use fp32");
}

void Bf16Matmul::accumulate(const std::uint16_t*, std::int64_t, float*, Bf16Scratch&) const {}
void Bf16Matmul::to_bf16(const std::uint16_t*, std::int64_t, std::uint16_t*, Bf16Scratch&) const {}
void Bf16Matmul::run(const std::uint16_t*, std::int64_t, void*, Bf16Scratch&) const {}

const std::string& Bf16Matmul::impl() const { return impl_->impl; }

std::string bf16_matmul_probe(std::int64_t, std::int64_t) { return "none (libattn_models built without oneDNN)"; }

#endif

Bf16Matmul::~Bf16Matmul() = default;
Bf16Matmul::Bf16Matmul(Bf16Matmul&&) noexcept = default;
Bf16Matmul& Bf16Matmul::operator=(Bf16Matmul&&) noexcept = default;

}  // namespace attn::models::detail
