#pragma once
// Everything the kernel templates include, pulled in at baseline code generation before a
// per-ISA region opens (see isa_begin.hpp).
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "cache/decode_plan.hpp"
#include "core/float_io.hpp"
#include "core/half.hpp"
#include "core/philox.hpp"
#include "cpu/amx/exp2.hpp"
#include "cpu/amx/prepare.hpp"
#include "cpu/amx/tiles.hpp"  // (amx/fwd_tiles.hpp, templates only, is included inside the region: its calls inline)
#include "cpu/bwd_plan.hpp"
#include "cpu/fwd_plan.hpp"
#include "cpu/isa/kernels.hpp"
#include "cpu/isa/vec_traits.hpp"
#include "cpu/softmax_state.hpp"
#include "variants/pipeline.hpp"
