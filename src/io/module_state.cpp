// State dicts of attn::nn modules: their named parameters as ParamSlots.

#include "attn/io/module_state.hpp"

namespace attn::io {

StateDict state_dict(const nn::Module& module) {
  StateDict sd;
  for (const nn::Parameter& p : module.parameters()) sd.insert_copy(p.name, p.value);
  return sd;
}

LoadReport load_state_dict(nn::Module& module, const StateDict& state, bool strict) {
  std::vector<ParamSlot> slots;
  for (const nn::Parameter& p : module.parameters()) slots.push_back({p.name, p.value});
  return load_into(slots, state, strict);
}

LoadReport load_state_dict(nn::Module& module, const StateDict& foreign, NameMap map, bool strict,
                           NameMapOptions options) {
  if (options.q_dim == 0)
    for (const nn::Parameter& p : module.parameters())
      if (p.name == "q_proj.weight") options.q_dim = p.value.shape[0];
  return load_state_dict(module, to_canonical(foreign, map, options), strict);
}

}  // namespace attn::io
