#pragma once
/// Name maps between foreign attention state dicts and attn's canonical parameter names
///   q_proj.weight [Hq·hd, E], k_proj.weight [Hkv·hd, kdim], v_proj.weight [Hkv·hd, vdim],
///   out_proj.weight [E, Hq·hd], each with .bias [rows]; bias_k, bias_v [1, 1, Hkv·hd] (torch).
/// Pure functions on StateDicts (tensors are copied, inputs untouched). Foreign names are those of
/// the attention module itself, after `prefix` (e.g. "encoder.layer.0.attention." for BERT,
/// "model.layers.0.self_attn." for LLaMA, "h.0.attn." for GPT-2). docs/io.md has the tables.
///
///   torch   torch.nn.MultiheadAttention: in_proj_weight [3E, E] (or [E + 2·Ekv, E] with q_dim = E)
///           split in three, q_proj_weight/k_proj_weight/v_proj_weight (kdim/vdim != E),
///           in_proj_bias, out_proj.weight/bias, bias_k/bias_v
///   hf_bert Hugging Face BertAttention: self.query/key/value, output.dense (+ .weight/.bias)
///   llama   Hugging Face LlamaAttention: q_proj, k_proj, v_proj, o_proj (q/k rows already in the
///           half-split rotary order); rotary_emb.inv_freq (a buffer) is dropped
///   gpt2    Hugging Face GPT2Attention: c_attn (Conv1D, weight [E, 3E] = [in, out], split and
///           transposed), c_proj; the causal-mask buffers bias/masked_bias are dropped
///   wqkvo   W_Q, W_K, W_V, W_O ([out, in]; also accepted as W_Q.weight), biases b_Q.. (or W_Q.bias)

#include <cstdint>
#include <string>
#include <string_view>

#include "attn/io/state_dict.hpp"

namespace attn::io {

enum class NameMap { torch, hf_bert, llama, gpt2, wqkvo };

/// "torch", "hf_bert", "llama", "gpt2", "wqkvo" -> NameMap; attn::Error listing them otherwise.
NameMap parse_name_map(std::string_view name);
const char* name_map_name(NameMap map);

struct NameMapOptions {
  /// Only keys starting with it are mapped (it is stripped); other keys are left out.
  std::string prefix;
  /// Rows of Q in a fused QKV weight (torch in_proj_weight, GPT-2 c_attn); K and V share the rest
  /// equally. 0 = a third. Loading into a module, this is its embed_dim (so an MHA weight in a GQA
  /// module splits Q right and shows K and V as mis-shaped).
  std::int64_t q_dim = 0;
};

/// Foreign -> canonical. Keys under the prefix that the map does not know are kept (prefix
/// stripped) so that a strict load reports them as unexpected. Throws attn::Error naming the key
/// for tensors of the wrong rank or a fused weight that does not split.
StateDict to_canonical(const StateDict& foreign, NameMap map, const NameMapOptions& options = {});
/// Canonical -> foreign (prefix prepended). torch writes the fused in_proj_weight when q, k and v
/// weights have one input width (and k, v one shape), q_proj_weight/k_proj_weight/v_proj_weight
/// otherwise; gpt2 needs q, k
/// and v weights of one input width. Unknown keys are kept (prefix prepended).
StateDict from_canonical(const StateDict& canonical, NameMap map, const NameMapOptions& options = {});

}  // namespace attn::io
