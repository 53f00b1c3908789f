#pragma once
/// Reuse of the bf16 weight copies of the bf16 matmuls (MatmulPrecision::bf16, docs/nn.md "bf16
/// weight copies"). Every fp32 Linear rounds its fp32 master weight W to bf16 for its GEMMs. By
/// default it does so at every forward and backward call, so a weight written through a raw
/// parameter pointer is always seen. While a WeightCacheGuard is alive, each module instead keeps
/// one bf16 copy of its weights and reuses it until the process-wide weights version changes:
///   - every library path that writes weights bumps it: AdamW::step, io::load_into (so
///     load_state_dict and load_checkpoint), and the modules' constructors start without a copy;
///   - code that writes weights itself (through Parameter::value or Linear::weight()) must call
///     mark_weights_changed() after the write and before the next forward.
/// The rounding is the same either way (round to nearest even), so cached and per-call rounding
/// give the same bits. set_weight_cache_verification(true) (or ATTN_VERIFY_WEIGHT_CACHE=1 in the
/// environment) re-rounds W at every use of a kept copy and throws an attn::Error when they differ:
/// a weight written without mark_weights_changed() is then caught instead of served stale.

#include <cstdint>

namespace attn::nn {

/// The weights version: a process-wide counter that every write of weights by the library bumps.
std::uint64_t weights_version();
/// Tells the library that weights were written outside it: every cached bf16 copy is stale.
void mark_weights_changed();
/// True while at least one WeightCacheGuard is alive (never with ATTN_WEIGHT_CACHE=off in the
/// environment, which times the per-call rounding).
bool weight_cache_enabled();
/// Checks every reuse of a kept copy against W (costs a rounding pass: for debugging).
void set_weight_cache_verification(bool on);
bool weight_cache_verification();

/// Enables the reuse of bf16 weight copies for its lifetime (process-wide; guards nest).
class WeightCacheGuard {
 public:
  WeightCacheGuard();
  ~WeightCacheGuard();
  WeightCacheGuard(const WeightCacheGuard&) = delete;
  WeightCacheGuard& operator=(const WeightCacheGuard&) = delete;
};

}  // namespace attn::nn
