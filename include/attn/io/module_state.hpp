#pragma once
/// State dicts of attn::nn modules (docs/io.md): their parameters under the canonical names
/// (q_proj.weight, ...), saved and loaded by name with the strict / non-strict report of
/// state_dict.hpp, from canonical or foreign names (name_maps.hpp).

#include "attn/io/name_maps.hpp"
#include "attn/io/state_dict.hpp"
#include "attn/nn/module.hpp"

namespace attn::io {

/// Copies of every parameter of `module`, in its parameters() order.
StateDict state_dict(const nn::Module& module);
/// Loads canonical names into the module's parameters (load_into on its parameters()).
LoadReport load_state_dict(nn::Module& module, const StateDict& state, bool strict = true);
/// The same from a foreign state dict: to_canonical(foreign, map, options), then the load. For
/// fused QKV weights, options.q_dim = 0 takes the module's q_proj.weight rows when it has one.
LoadReport load_state_dict(nn::Module& module, const StateDict& foreign, NameMap map, bool strict = true,
                           NameMapOptions options = {});

}  // namespace attn::io
