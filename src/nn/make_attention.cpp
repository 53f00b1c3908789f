// nn::make_attention: attention modules by kind name (docs/nn.md).

#include "attn/nn/make_attention.hpp"

#include "attn/error.hpp"

namespace attn::nn {

std::vector<std::string> attention_types() { return {"mha", "gqa", "mqa", "local", "strided", "linear"}; }

template <class T>
std::unique_ptr<MultiheadAttention<T>> make_attention(const std::string& type, MhaConfig config) {
  if (type == "linear") {
    config.linear = true;
    return std::make_unique<MultiheadAttention<T>>(config);
  }
  ATTN_CHECK(!config.linear, value, "config.linear", "is true with type \"", type,
             "\", expected false (use type \"linear\" for linear attention)");
  if (type == "strided") {
    ATTN_CHECK(config.stride >= 1, value, "config.stride", "= ", config.stride,
               " with type \"strided\", expected the stride s ≥ 1 (query i sees the keys j with (i − j) mod s = 0)");
    ATTN_CHECK(config.window >= -1, value, "config.window", "= ", config.window,
               " with type \"strided\", expected −1 (no local window) or ≥ 0");
    return std::make_unique<MultiheadAttention<T>>(config);
  }
  ATTN_CHECK(config.stride == 0 && config.global_tokens == 0, value, "config.stride", "= ", config.stride,
             " (global_tokens = ", config.global_tokens, ") with type \"", type,
             "\", expected 0 (use type \"strided\" for strided attention)");
  if (type == "local") {
    ATTN_CHECK(config.window >= 0, value, "config.window", "= ", config.window,
               " with type \"local\", expected the window (keys within that distance of the query are visible, ≥ 0)");
    return std::make_unique<MultiheadAttention<T>>(config);
  }
  if (type == "mha") {
    ATTN_CHECK(config.num_kv_heads == 0 || config.num_kv_heads == config.num_heads, value, "config.num_kv_heads",
               "num_kv_heads = ", config.num_kv_heads,
               " with type \"mha\", expected 0 or num_heads = ", config.num_heads, " (use \"gqa\" for fewer kv heads)");
    config.num_kv_heads = config.num_heads;
  } else if (type == "gqa") {
    ATTN_CHECK(config.num_kv_heads >= 1, value, "config.num_kv_heads", "= ", config.num_kv_heads,
               " with type \"gqa\", expected the number of kv heads (a divisor of num_heads = ", config.num_heads, ")");
  } else if (type == "mqa") {
    ATTN_CHECK(config.num_kv_heads == 0 || config.num_kv_heads == 1, value, "config.num_kv_heads",
               "num_kv_heads = ", config.num_kv_heads, " with type \"mqa\", expected 0 or 1");
    config.num_kv_heads = 1;
  } else {
    throw Error(
        ErrorKind::value, "type",
        ::attn::detail::concat("= \"", type,
                               "\", expected one of mha, gqa, mqa, local, strided, linear"));
  }
  ATTN_CHECK(config.window == -1, value, "config.window", "= ", config.window, " with type \"", type,
             "\", expected −1 (use type \"local\" for a sliding window)");
  return std::make_unique<MultiheadAttention<T>>(config);
}

template std::unique_ptr<MultiheadAttention<float>> make_attention<float>(const std::string&, MhaConfig);
template std::unique_ptr<MultiheadAttention<double>> make_attention<double>(const std::string&, MhaConfig);

}  // namespace attn::nn
