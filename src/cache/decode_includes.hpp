#pragma once
// Everything decode_kernel.hpp includes, pulled in at baseline code generation before a per-ISA
// region opens (see cpu/isa/isa_begin.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cache/decode_plan.hpp"
#include "core/half.hpp"
