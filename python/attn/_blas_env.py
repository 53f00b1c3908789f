"""OpenBLAS's kernel for this CPU, chosen before attn._core (and with it libopenblas) loads.

OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons (an Emerald Rapids KVM guest is taken
for a Prescott, its SSE3 kernel); OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded. This
sets it, when the user has not, to the kernel `attn bench` forces too (bench/env.cpp:
Cooperlake with AVX-512 BF16, SkylakeX with AVX-512, Haswell with AVX2), from /proc/cpuinfo.
A process that loaded libopenblas before importing attn keeps its choice (docs/embeddings.md).
"""

import os


def _best_core() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
            else:
                return ""
    except OSError:
        return ""
    if "avx512_bf16" in flags:
        return "Cooperlake"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return ""


if "OPENBLAS_CORETYPE" not in os.environ:
    _core = _best_core()
    if _core:
        os.environ["OPENBLAS_CORETYPE"] = _core
