// LlamaForCausalLM::from_pretrained (docs/generation.md): a Hugging Face model directory
// (save_pretrained with safe_serialization) — config.json and one model.safetensors — loaded
// strictly by name (attn/io/state_dict.hpp: one error lists every missing, unexpected or
// mis-shaped tensor), floating dtypes converted to f32.

#include <filesystem>

#include "attn/error.hpp"
#include "attn/io/module_state.hpp"
#include "attn/io/state_dict.hpp"
#include "attn/nn/llama.hpp"

namespace attn::nn {

LlamaForCausalLM LlamaForCausalLM::from_pretrained(const std::string& dir) {
  namespace fs = std::filesystem;
  ATTN_CHECK(fs::is_directory(dir), value, "model_dir", "\"", dir,
             "\" is not a directory, expected a directory with config.json and model.safetensors");
  const fs::path config_path = fs::path(dir) / "config.json";
  const fs::path weights_path = fs::path(dir) / "model.safetensors";
  ATTN_CHECK(fs::exists(config_path), value, "model_dir", config_path.string(),
             " does not exist, expected a Hugging Face config.json in the model directory");
  ATTN_CHECK(fs::exists(weights_path), value, "model_dir", weights_path.string(), " does not exist, expected ",
             fs::exists(fs::path(dir) / "model.safetensors.index.json")
                 ? "one model.safetensors (sharded checkpoints are not supported)"
                 : "the weights as model.safetensors (save_pretrained(..., safe_serialization=True))");
  const LlamaConfig config = load_llama_config(config_path.string());
  LlamaForCausalLM model(config);
  io::StateDict file = io::load_state_dict(weights_path.string());
  if (config.tie_word_embeddings && file.contains("lm_head.weight")) {  // the tied copy: embed_tokens wins
    io::StateDict kept;
    kept.metadata = file.metadata;
    for (auto& [name, tensor] : file.items())
      if (name != "lm_head.weight") kept.insert_copy(name, tensor.view());
    file = std::move(kept);
  }
  try {
    io::load_state_dict(model, file, true);
  } catch (const Error& e) {
    throw Error(e.kind(), weights_path.string(),
                detail::concat("does not fit config.json (", e.what(), ")"));
  }
  return model;
}

}  // namespace attn::nn
