#pragma once
/// Training checkpoints as safetensors (docs/io.md): a module's parameters under their canonical
/// names, the AdamW state as "optimizer.exp_avg.<name>" / "optimizer.exp_avg_sq.<name>", and
/// __metadata__ with "step" (the optimizer's step count) plus the caller's entries (e.g. the model
/// config), so that a run resumed from a checkpoint continues exactly as the uninterrupted run.

#include <string>

#include "attn/io/state_dict.hpp"
#include "attn/nn/module.hpp"
#include "attn/nn/optim.hpp"

namespace attn::io {

/// Writes module (and optimizer state, when given) to `path`; `metadata` is stored with "step".
void save_checkpoint(const std::string& path, const nn::Module& module, const nn::AdamW* optimizer = nullptr,
                     Metadata metadata = {});
/// Loads a checkpoint strictly (every parameter, and the optimizer state when `optimizer` is given,
/// must be there with its shape: one attn::Error lists what is not) and returns its metadata.
Metadata load_checkpoint(const std::string& path, nn::Module& module, nn::AdamW* optimizer = nullptr);

}  // namespace attn::io
