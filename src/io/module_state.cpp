// State dicts of attn::nn modules: their named parameters and buffers as ParamSlots.

#include "attn/io/module_state.hpp"

namespace attn::io {

std::vector<ParamSlot> module_slots(const nn::Module& module) {
  std::vector<ParamSlot> slots;
  for (const nn::Parameter& p : module.parameters()) slots.push_back({p.name, p.value});
  for (const nn::Buffer& b : module.buffers()) slots.push_back({b.name, b.value});
  return slots;
}

StateDict state_dict(const nn::Module& module) {
  StateDict sd;
  for (const ParamSlot& s : module_slots(module)) sd.insert_copy(s.name, s.dest);
  return sd;
}

LoadReport load_state_dict(nn::Module& module, const StateDict& state, bool strict) {
  return load_into(module_slots(module), state, strict);
}

LoadReport load_state_dict(nn::Module& module, const StateDict& foreign, NameMap map, bool strict,
                           NameMapOptions options) {
  if (options.q_dim == 0)
    for (const nn::Parameter& p : module.parameters())
      if (p.name == "q_proj.weight") options.q_dim = p.value.shape[0];
  return load_state_dict(module, to_canonical(foreign, map, options), strict);
}

}  // namespace attn::io
