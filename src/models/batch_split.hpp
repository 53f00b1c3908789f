#pragma once
// How the BERT encoder's threads share one packed batch (docs/embeddings.md §2; src/models/bert.cpp).
//   owned: thread t runs the whole sequences [seq[t], seq[t + 1]) through every layer, attention
//          included (its own one-thread SDPA call): one parallel region per batch and no barrier
//          between the steps. Chosen when the sequences split into nt contiguous, non-empty shares
//          none of which has more than kImbalance times the even share of the work
//          (a sequence of n tokens: its GEMMs, 2n(4E² + 2EF) flops, and its attention, 4n²E).
//   else:  the rows split evenly between the threads and each layer's SDPA call runs on all of
//          them, between two parallel regions (one sentence, fewer sequences than threads, or
//          lengths too uneven to share).

#include <cstdint>
#include <vector>

namespace attn::models::detail {

struct BatchSplit {
  static constexpr double kImbalance = 1.1;
  bool owned = false;
  std::vector<std::int64_t> seq;  ///< owned: nt + 1 sequence boundaries, from 0 to nseq
};

/// cu: the batch's prefix sums (cu_seqlens); nt ≥ 1 threads; E, F the model's widths.
BatchSplit split_batch(const std::vector<std::int64_t>& cu, int nt, std::int64_t E, std::int64_t F);

}  // namespace attn::models::detail
