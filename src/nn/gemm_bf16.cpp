// bf16 GEMMs of the nn modules on oneDNN's matmul primitive (src/nn/gemm_bf16.hpp, docs/nn.md).
// oneDNN picks its kernel for the CPU at run time (AMX brgemm, AVX512_BF16, or its reference
// implementation); one primitive per shape, strides and beta is created once and kept.

#include "nn/gemm_bf16.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "attn/error.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "cpu/isa.hpp"
#include "nn/round_bf16_kernel.hpp"

#ifdef ATTN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace attn::nn {

namespace {
std::atomic<MatmulPrecision>& precision_setting() {
  static std::atomic<MatmulPrecision> p{MatmulPrecision::f32};
  return p;
}
}  // namespace

MatmulPrecision matmul_precision_from_string(const std::string& name, const char* argument) {
  if (name == "f32") return MatmulPrecision::f32;
  if (name == "bf16") return MatmulPrecision::bf16;
  throw Error(ErrorKind::value, argument, attn::detail::concat("is \"", name, "\", expected \"f32\" or \"bf16\""));
}

const char* matmul_precision_name(MatmulPrecision p) { return p == MatmulPrecision::bf16 ? "bf16" : "f32"; }

MatmulPrecision float32_matmul_precision() { return precision_setting().load(std::memory_order_relaxed); }

void set_float32_matmul_precision(MatmulPrecision p) {
  ATTN_CHECK(p != MatmulPrecision::bf16 || bf16_matmul_available(), unsupported, "precision",
             "bf16 matmuls need oneDNN, and this libattn was built without it (install libdnnl-dev and reconfigure)");
  precision_setting().store(p, std::memory_order_relaxed);
}

#ifdef ATTN_HAVE_DNNL

bool bf16_matmul_available() { return true; }

namespace {

using dnnl::memory;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

struct Key {
  bool ta, tb, accumulate;
  std::int64_t M, N, K, lda, ldb, ldc;
  bool packed = false;  // B in the layout the kernel picks (ldb unused)
  bool bias = false;    // an fp32 [N] bias in the epilogue
  auto tie() const { return std::tie(ta, tb, accumulate, M, N, K, lda, ldb, ldc, packed, bias); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

struct Plan {
  memory::desc a, b, c, bias;
  dnnl::matmul mm;
  int layout = -1;  // packed: index into packed_layouts()
};

dnnl::matmul::primitive_desc describe(const Key& k, memory::desc& a, memory::desc& b, memory::desc& c,
                                      memory::desc& bias) {
  // (m, k) of op(A) lies at m·lda + k, or at k·lda + m when A is stored transposed; likewise B.
  a = memory::desc({k.M, k.K}, memory::data_type::bf16, k.ta ? memory::dims{1, k.lda} : memory::dims{k.lda, 1});
  b = k.packed
          ? memory::desc({k.K, k.N}, memory::data_type::bf16, memory::format_tag::any)
          : memory::desc({k.K, k.N}, memory::data_type::bf16, k.tb ? memory::dims{1, k.ldb} : memory::dims{k.ldb, 1});
  c = memory::desc({k.M, k.N}, memory::data_type::f32, memory::dims{k.ldc, 1});
  dnnl::primitive_attr attr;
  if (k.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  if (k.bias) {
    bias = memory::desc({1, k.N}, memory::data_type::f32, memory::dims{k.N, 1});
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, bias, c), attr, engine());
  }
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, engine());
}

// The distinct packed weight layouts planned so far (PackedLayout::id indexes them).
std::vector<memory::desc>& packed_layouts() {
  static std::vector<memory::desc> l;
  return l;
}

std::mutex& plans_mutex() {
  static std::mutex mu;
  return mu;
}

const Plan& plan_for(const Key& k) {
  static std::map<Key, Plan> plans;
  const std::lock_guard<std::mutex> lock(plans_mutex());
  auto it = plans.find(k);
  if (it == plans.end()) {
    Plan p;
    const auto pd = describe(k, p.a, p.b, p.c, p.bias);
    if (k.packed) {
      p.b = pd.weights_desc();
      // Packing pays only when the kernel reads a blocked layout (not a plain one, not the reference code).
      const bool blocked = p.b.data.format_kind == dnnl_blocked && p.b.data.format_desc.blocking.inner_nblks > 0;
      if (blocked && std::string(pd.impl_info_str()).rfind("ref", 0) != 0) {
        std::vector<memory::desc>& layouts = packed_layouts();
        auto same = std::find(layouts.begin(), layouts.end(), p.b);
        if (same == layouts.end()) same = layouts.insert(layouts.end(), p.b);
        p.layout = static_cast<int>(same - layouts.begin());
      }
    }
    p.mm = dnnl::matmul(pd);
    it = plans.emplace(k, std::move(p)).first;
  }
  return it->second;
}

// C = A·B (+ bias) by the plan's matmul on this thread, waiting for it (A bf16, B bf16 plain or
// packed, C and bias f32; bias only for a plan made with one).
void execute(const Plan& p, const std::uint16_t* A, const void* B, float* C, const float* bias) {
  memory a(p.a, engine(), const_cast<std::uint16_t*>(A)), b(p.b, engine(), const_cast<void*>(B)), c(p.c, engine(), C);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(p.bias, engine(), const_cast<float*>(bias)));
  dnnl::stream s(engine());
  p.mm.execute(s, args);
  s.wait();
}

}  // namespace

std::string bf16_matmul_impl(long M, long N, long K) {
  try {
    memory::desc a, b, c, bias;
    return describe(Key{false, true, false, M, N, K, K, K, N}, a, b, c, bias).impl_info_str();
  } catch (const dnnl::error& e) {
    return std::string("none (oneDNN: ") + e.what() + ")";
  }
}

namespace detail {

void gemm_bf16(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
               std::int64_t lda, const std::uint16_t* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc,
               const float* bias) {
  ATTN_CHECK(beta == 0.0f || beta == 1.0f, value, "beta", "= ", beta, ", expected 0 or 1");
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t j = 0; j < N; ++j)
        C[i * ldc + j] = (beta == 0.0f ? 0.0f : C[i * ldc + j]) + (bias ? bias[j] : 0.0f);
    return;
  }
  try {
    Key key{trans_a, trans_b, beta != 0.0f, M, N, K, lda, ldb, ldc};
    key.bias = bias != nullptr;
    execute(plan_for(key), A, B, C, bias);
  } catch (const dnnl::error& e) {
    throw Error(ErrorKind::unsupported, "matmul", attn::detail::concat("oneDNN bf16 matmul ", M, "x", K, " by ", K, "x", N, " failed: ", e.what()));
  }
}

namespace {
Key packed_key(bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t lda, float beta,
               std::int64_t ldc, bool bias) {
  return Key{false, trans_b, beta != 0.0f, M, N, K, lda, 0, ldc, true, bias};
}
}  // namespace

PackedLayout packed_layout_bf16(bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t lda,
                                float beta, std::int64_t ldc, bool bias) {
  if (M <= 0 || N <= 0 || K <= 0) return {};
  try {
    const Plan& p = plan_for(packed_key(trans_b, M, N, K, lda, beta, ldc, bias));
    if (p.layout < 0) return {};
    return {p.layout, p.b.get_size()};
  } catch (const dnnl::error&) {
    return {};  // no packed plan: the plain one
  }
}

void pack_weights_bf16(bool trans_b, std::int64_t N, std::int64_t K, const std::uint16_t* W, std::int64_t ldw,
                       const PackedLayout& layout, std::uint8_t* dst) {
  memory::desc to;
  {
    const std::lock_guard<std::mutex> lock(plans_mutex());
    to = packed_layouts().at(static_cast<std::size_t>(layout.id));
  }
  try {
    const memory::desc from({K, N}, memory::data_type::bf16, trans_b ? memory::dims{1, ldw} : memory::dims{ldw, 1});
    memory src(from, engine(), const_cast<std::uint16_t*>(W)), out(to, engine(), dst);
    dnnl::stream s(engine());
    dnnl::reorder(src, out).execute(s, src, out);
    s.wait();
  } catch (const dnnl::error& e) {
    throw Error(ErrorKind::unsupported, "matmul",
                attn::detail::concat("oneDNN reorder of a bf16 weight ", N, "x", K, " failed: ", e.what()));
  }
}

void gemm_bf16_packed(bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const std::uint16_t* A,
                      std::int64_t lda, const std::uint8_t* Wp, const PackedLayout& layout, float beta, float* C,
                      std::int64_t ldc, const float* bias) {
  ATTN_CHECK(beta == 0.0f || beta == 1.0f, value, "beta", "= ", beta, ", expected 0 or 1");
  try {
    const Plan& p = plan_for(packed_key(trans_b, M, N, K, lda, beta, ldc, bias != nullptr));
    ATTN_CHECK(p.layout == layout.id, value, "layout", "= ", layout.id, ", expected ", p.layout,
               " (the layout packed_layout_bf16 gives for this GEMM)");
    execute(p, A, Wp, C, bias);
  } catch (const dnnl::error& e) {
    throw Error(
        ErrorKind::unsupported, "matmul",
        attn::detail::concat("oneDNN bf16 matmul ", M, "x", K, " by packed ", K, "x", N, " failed: ", e.what()));
  }
}

}  // namespace detail

#else  // no oneDNN

bool bf16_matmul_available() { return false; }
std::string bf16_matmul_impl(long, long, long) { return "none (libattn built without oneDNN)"; }

namespace detail {
void gemm_bf16(bool, bool, std::int64_t, std::int64_t, std::int64_t, const std::uint16_t*, std::int64_t,
               const std::uint16_t*, std::int64_t, float, float*, std::int64_t, const float*) {
  throw Error(ErrorKind::unsupported, "precision", attn::detail::concat("bf16 matmuls need oneDNN, and this libattn was built without it"));
}
PackedLayout packed_layout_bf16(bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, float, std::int64_t,
                                bool) {
  return {};
}
void pack_weights_bf16(bool, std::int64_t, std::int64_t, const std::uint16_t*, std::int64_t, const PackedLayout&,
                       std::uint8_t*) {
  throw Error(ErrorKind::unsupported, "precision", "bf16 matmuls need oneDNN, and this libattn was built without it");
}
void gemm_bf16_packed(bool, std::int64_t, std::int64_t, std::int64_t, const std::uint16_t*, std::int64_t,
                      const std::uint8_t*, const PackedLayout&, float, float*, std::int64_t, const float*) {
  throw Error(ErrorKind::unsupported, "precision", "bf16 matmuls need oneDNN, and this libattn was built without it");
}
}  // namespace detail

#endif

namespace detail {

#if ATTN_ISA_AVX512
extern const RoundRowsFn kRoundBf16Avx512;
#endif
#if ATTN_ISA_AVX2
extern const RoundRowsFn kRoundBf16Avx2;
#endif
extern const RoundRowsFn kRoundBf16Scalar;

// The rounding loop of the ISA the cpu backend runs (cpu/isa.hpp, so ATTN_ISA and the tests' ISA
// override pick it): amx and avx512bf16 run on AVX-512 CPUs, amx_emu and scalar on the baseline.
void round_rows_to_bf16(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld_src,
                        std::uint16_t* dst, std::int64_t ld_dst) {
  const std::string name = cpu::active_kernels().name;
  RoundRowsFn fn = kRoundBf16Scalar;
#if ATTN_ISA_AVX512
  if ((name == "amx" || name == "avx512bf16" || name == "avx512") && cpu::isa_supported("avx512"))
    fn = kRoundBf16Avx512;
#endif
#if ATTN_ISA_AVX2
  if (name == "avx2") fn = kRoundBf16Avx2;
#endif
  fn(src, rows, cols, ld_src, dst, ld_dst);
}
}  // namespace detail

}  // namespace attn::nn
