// Training checkpoints (include/attn/io/checkpoint.hpp): one state dict of parameters, buffers and
// optimizer moments, strict loading through load_into.

#include "attn/io/checkpoint.hpp"

#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/module_state.hpp"

namespace attn::io {
namespace {

constexpr const char* kOptimizerPrefix = "optimizer.";

std::vector<ParamSlot> slots_of(const nn::Module& module, const nn::AdamW* optimizer) {
  std::vector<ParamSlot> slots = module_slots(module);
  if (optimizer)
    for (const nn::Parameter& s : optimizer->state()) slots.push_back({kOptimizerPrefix + s.name, s.value});
  return slots;
}

}  // namespace

void save_checkpoint(const std::string& path, const nn::Module& module, const nn::AdamW* optimizer, Metadata metadata) {
  StateDict sd;
  for (const ParamSlot& s : slots_of(module, optimizer)) sd.insert_copy(s.name, s.dest);
  metadata["step"] = std::to_string(optimizer ? optimizer->steps() : 0);
  sd.metadata = std::move(metadata);
  save_state_dict(path, sd);
}

Metadata load_checkpoint(const std::string& path, nn::Module& module, nn::AdamW* optimizer) {
  StateDict file = load_state_dict(path);
  StateDict wanted;  // without the optimizer state when no optimizer is given
  for (const auto& [name, t] : file.items())
    if (optimizer || name.rfind(kOptimizerPrefix, 0) != 0) wanted.insert_copy(name, t.view());
  load_into(slots_of(module, optimizer), wanted, true);
  if (optimizer) {
    const auto it = file.metadata.find("step");
    ATTN_CHECK(it != file.metadata.end(), value, "path", path,
               " has no \"step\" in its metadata, expected a checkpoint");
    optimizer->set_steps(std::stoll(it->second));
  }
  return file.metadata;
}

}  // namespace attn::io
