// naive_softmax.hpp: the row passes of the ISA table's active entry.
#include "naive_softmax.hpp"

#include "cpu/isa.hpp"

namespace attn::bench {

SoftmaxRowsFn best_softmax_rows(const char** name) {
  const cpu::CpuKernels& k = cpu::active_kernels();
  if (name) *name = k.name;
  return k.naive.softmax;
}

BwdRowFns best_bwd_rows() {
  const cpu::CpuKernels& k = cpu::active_kernels();
  return {k.naive.delta, k.naive.ds};
}

}  // namespace attn::bench
