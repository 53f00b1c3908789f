#pragma once
/// State dicts of attn::nn modules (docs/io.md): their parameters and buffers under the canonical
/// names (q_proj.weight, ..., FAVOR+'s self_attn.projection), saved and loaded by name with the
/// strict / non-strict report of state_dict.hpp, from canonical or foreign names (name_maps.hpp).

#include <vector>

#include "attn/io/name_maps.hpp"
#include "attn/io/state_dict.hpp"
#include "attn/nn/module.hpp"

namespace attn::io {

/// The module's parameters() then its buffers() as load_into's slots.
std::vector<ParamSlot> module_slots(const nn::Module& module);
/// Copies of every parameter of `module`, in its parameters() order, then of every buffer.
StateDict state_dict(const nn::Module& module);
/// Loads canonical names into the module's parameters and buffers (load_into on module_slots).
LoadReport load_state_dict(nn::Module& module, const StateDict& state, bool strict = true);
/// The same from a foreign state dict: to_canonical(foreign, map, options), then the load. For
/// fused QKV weights, options.q_dim = 0 takes the module's q_proj.weight rows when it has one.
LoadReport load_state_dict(nn::Module& module, const StateDict& foreign, NameMap map, bool strict = true,
                           NameMapOptions options = {});

}  // namespace attn::io
