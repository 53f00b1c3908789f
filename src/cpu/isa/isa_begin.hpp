// Opens a per-ISA code region. Included by isa/<isa>.cpp after every shared header (so std and
// attn's baseline inline functions keep baseline code generation — a linker picking their copy
// from this file can then never run an instruction the CPU lacks) and before the ISA's traits and
// the kernel templates, which get the target attribute. ATTN_ISA_TARGET is the target string.
// No include guard: each ISA file includes it once.
#undef ATTN_DO_PRAGMA
#undef ATTN_TARGET_PUSH
#define ATTN_DO_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define ATTN_TARGET_PUSH(t) ATTN_DO_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
ATTN_TARGET_PUSH(ATTN_ISA_TARGET)
#elif defined(__GNUC__)
#define ATTN_TARGET_PUSH(t) ATTN_DO_PRAGMA(GCC target(t))
#pragma GCC push_options
ATTN_TARGET_PUSH(ATTN_ISA_TARGET)
#endif
