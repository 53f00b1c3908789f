// The portable decode chunk kernel (any CPU).
#include "cache/decode_includes.hpp"
#include "cpu/isa/vec_scalar.hpp"
#include "cache/decode_kernel.hpp"

namespace attn::kv {
namespace {
struct I8Scalar {
  static float load_i8(const std::int8_t* p) { return static_cast<float>(*p); }
};
void chunk(const DecodePlan& pl, const DecodeItem& it, float* acc, cpu::SoftmaxState* st, DecodeScratch& w) {
  DecodeKernel<cpu::isa::Scalar, I8Scalar>::run(pl, it, acc, st, w);
}
}  // namespace
extern const DecodeKernels kDecodeScalar{"scalar", chunk};
}  // namespace attn::kv
