#pragma once
/// make_attention(type, config): the attention module of a kind, by name (docs/nn.md).
/// Kinds that exist: "mha" (num_kv_heads = num_heads), "gqa" (config.num_kv_heads, dividing
/// num_heads), "mqa" (num_kv_heads = 1), "local" (sliding window: config.window ≥ 0, any
/// num_kv_heads; the same parameters as mha/gqa), "strided" (config.stride ≥ 1, with
/// config.window ≥ 0 as its local window and config.global_tokens: docs/sparse_attention.md) and
/// "linear" (config.feature_map, num_features: docs/linear_attention.md); any num_kv_heads and the
/// same parameters as mha/gqa. An unknown name is an attn::Error that lists the known kinds.
/// Parameter counts without biases: mha 4E², gqa E²(2 + 2·Hkv/Hq), mqa E²(2 + 2/Hq).

#include <memory>
#include <string>
#include <vector>

#include "attn/nn/multihead_attention.hpp"

namespace attn::nn {

/// The names make_attention accepts.
std::vector<std::string> attention_types();

/// "mha" ignores config.num_kv_heads unless it is 0 or num_heads (else attn::Error); "gqa" needs
/// it set; "mqa" needs it 0 or 1; "local" needs config.window ≥ 0 (the others but "strided" need
/// it −1); only "strided" takes a stride and only "linear" sets config.linear.
template <class T = float>
std::unique_ptr<MultiheadAttention<T>> make_attention(const std::string& type, MhaConfig config);

extern template std::unique_ptr<MultiheadAttention<float>> make_attention<float>(const std::string&, MhaConfig);
extern template std::unique_ptr<MultiheadAttention<double>> make_attention<double>(const std::string&, MhaConfig);

}  // namespace attn::nn
