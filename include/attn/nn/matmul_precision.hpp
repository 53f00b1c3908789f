#pragma once
/// The precision of the fp32 modules' GEMMs (docs/nn.md), after torch.set_float32_matmul_precision:
///   f32   (default) OpenBLAS sgemm, fp32 products.
///   bf16  the GEMM inputs (activations, weights, output gradients) are rounded to bf16 and
///         multiplied with fp32 accumulation on oneDNN's matmul (AMX tiles or AVX512_BF16 where the
///         CPU has them); outputs, weights and gradients stay fp32 (the weights are fp32 master
///         copies, rounded at every call, or once per weights version under a WeightCacheGuard:
///         attn/nn/weight_cache.hpp). About 3 significant decimal digits per product.
/// The setting is process-wide and read at every Linear forward/backward; f64 modules ignore it.

#include <string>

namespace attn::nn {

enum class MatmulPrecision { f32, bf16 };

/// "f32" / "bf16" -> MatmulPrecision; attn::Error naming `argument` and the accepted names otherwise.
MatmulPrecision matmul_precision_from_string(const std::string& name, const char* argument = "precision");
const char* matmul_precision_name(MatmulPrecision p);

MatmulPrecision float32_matmul_precision();
/// attn::Error (kind unsupported) for bf16 when libattn was built without oneDNN.
void set_float32_matmul_precision(MatmulPrecision p);

/// True when libattn was built with oneDNN (bf16 GEMMs available).
bool bf16_matmul_available();
/// oneDNN's implementation name for an M×K by K×N bf16 matmul on this CPU (e.g.
/// "brg:avx512_core_amx"), or why there is none.
std::string bf16_matmul_impl(long M, long N, long K);

/// Sets the precision for its lifetime, then restores the previous one.
class MatmulPrecisionGuard {
 public:
  explicit MatmulPrecisionGuard(MatmulPrecision p) : previous_(float32_matmul_precision()) {
    set_float32_matmul_precision(p);
  }
  ~MatmulPrecisionGuard() { set_float32_matmul_precision(previous_); }
  MatmulPrecisionGuard(const MatmulPrecisionGuard&) = delete;
  MatmulPrecisionGuard& operator=(const MatmulPrecisionGuard&) = delete;

 private:
  MatmulPrecision previous_;
};

}  // namespace attn::nn
