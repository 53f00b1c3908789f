#pragma once
// Everything chunk_kernel.hpp includes, pulled in at baseline code generation before a per-ISA
// region opens (src/cpu/isa/isa_begin.hpp explains why).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/float_io.hpp"
#include "linear/cpu_plan.hpp"
