// attn_gemm_probe [n] [reps]: the GEMMs a bf16 nn::Linear could run on, n x n x n, on the OpenMP /
// OpenBLAS threads of the environment (OMP_NUM_THREADS): oneDNN matmul bf16 x bf16 -> f32 and
// -> bf16 (AMX or AVX512_BF16 where the CPU has them; the implementation oneDNN picked is printed),
// and OpenBLAS sgemm fp32 (Debian's OpenBLAS 0.3.21 has no sbgemm). W is [out, in] row-major as
// nn::Linear stores it (y = x·Wᵀ). Medians of `reps` runs after a warm-up. torch's bf16 GEMM (MKL)
// is timed by `python -c` beside it; see docs/nn.md. Last, nn::Linear<float> forward (M = n rows,
// n -> n) in fp32 and with bf16 matmuls: the GEMM plus rounding x and W to bf16 at every call.

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "attn/nn/linear.hpp"
#include "attn/nn/matmul_precision.hpp"

namespace {

template <class F>
double median_s(F&& f, int reps) {
  f();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 2048;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 9;
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  for (auto dst : {memory::data_type::f32, memory::data_type::bf16}) {
    const memory::desc a_md({n, n}, memory::data_type::bf16, memory::format_tag::ab);
    const memory::desc w_md({n, n}, memory::data_type::bf16, memory::format_tag::ba);  // Wᵀ of W [out, in]
    const memory::desc c_md({n, n}, dst, memory::format_tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, w_md, c_md), eng);
    memory A(a_md, eng), W(w_md, eng), C(c_md, eng);
    auto* a = static_cast<unsigned short*>(A.get_data_handle());
    auto* w = static_cast<unsigned short*>(W.get_data_handle());
    for (long i = 0; i < n * n; ++i) {
      a[i] = static_cast<unsigned short>(0x3f00 + (i % 97));  // bf16 values in [0.5, 1)
      w[i] = static_cast<unsigned short>(0x3f00 + (i % 89));
    }
    const dnnl::matmul mm(pd);
    const double t = median_s(
        [&] {
          mm.execute(s, {{DNNL_ARG_SRC, A}, {DNNL_ARG_WEIGHTS, W}, {DNNL_ARG_DST, C}});
          s.wait();
        },
        reps);
    const dnnl_version_t* v = dnnl_version();
    std::printf("oneDNN %d.%d.%d matmul bf16 x bf16 -> %s %ldx%ldx%ld: %.2f ms, %.0f GFLOP/s (impl %s)\n", v->major,
                v->minor, v->patch, dst == memory::data_type::f32 ? "f32" : "bf16", n, n, n, t * 1e3, flops / t * 1e-9,
                pd.impl_info_str());
  }
  std::vector<float> a(static_cast<std::size_t>(n * n), 0.5f), b(a.size(), 0.25f), c(a.size());
  const int ni = static_cast<int>(n);
  openblas_set_num_threads(omp_get_max_threads());
  const double t = median_s(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, ni, ni, 1.0f, a.data(), ni, b.data(), ni, 0.0f,
                    c.data(), ni);
      },
      reps);
  std::printf("openblas sgemm fp32 %ldx%ldx%ld: %.2f ms, %.0f GFLOP/s (core %s, %d threads)\n", n, n, n, t * 1e3,
              flops / t * 1e-9, openblas_get_corename(), openblas_get_num_threads());
  attn::nn::Linear<float> lin(n, n, false, 1);
  for (auto p : {attn::nn::MatmulPrecision::f32, attn::nn::MatmulPrecision::bf16}) {
    const attn::nn::MatmulPrecisionGuard guard(p);
    const double tl = median_s([&] { lin.forward(a.data(), n, n, c.data(), n); }, reps);
    std::printf("nn::Linear<float> forward %ldx%ld -> %ld, %s matmuls: %.2f ms, %.0f GFLOP/s\n", n, n, n,
                attn::nn::matmul_precision_name(p), tl * 1e3, flops / tl * 1e-9);
  }
  return 0;
}
