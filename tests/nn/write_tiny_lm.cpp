// Writes a tiny random LLaMA-style model directory (config.json + model.safetensors) for the
// `attn generate` smoke test: byte vocabulary 256 + BOS (256) + EOS (257), 2 layers, E = 32,
// 4 query heads, 2 kv heads, seeded weights (the modules' own initialisation).
//   attn_write_tiny_lm DIR [SEED] [tied]

#include <attn/error.hpp>
#include <attn/io/module_state.hpp>
#include <attn/io/state_dict.hpp>
#include <attn/nn/llama.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [SEED] [tied]\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    const std::uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0;
    const bool tied = argc > 3 && std::string(argv[3]) == "tied";
    std::filesystem::create_directories(dir);
    const std::string config =
        std::string("{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n") +
        "  \"vocab_size\": 258,\n  \"hidden_size\": 32,\n  \"intermediate_size\": 64,\n"
        "  \"num_hidden_layers\": 2,\n  \"num_attention_heads\": 4,\n  \"num_key_value_heads\": 2,\n"
        "  \"rms_norm_eps\": 1e-05,\n  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": 512,\n"
        "  \"bos_token_id\": 256,\n  \"eos_token_id\": 257,\n  \"tie_word_embeddings\": " +
        (tied ? "true" : "false") + ",\n  \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}\n}\n";
    std::ofstream(dir / "config.json") << config;
    const attn::nn::LlamaForCausalLM model(attn::nn::parse_llama_config(config), seed);
    attn::io::save_state_dict((dir / "model.safetensors").string(), attn::io::state_dict(model));
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "attn_write_tiny_lm: %s\n", e.what());
    return 1;
  }
  return 0;
}
