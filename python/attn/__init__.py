"""attn: exact, fast attention for CPUs (Python bindings of the C++ library).

Arrays are numpy arrays or CPU torch tensors (f32, f64, bf16, f16; bool masks); they cross by
DLPack or the buffer protocol without copies and with their strides, so outputs are written in
place. Logical layouts (docs/contract.md §2): q [B, Hq, Nq, D], k [B, Hkv, Nk, D], v [B, Hkv, Nk, Dv],
out [B, Hq, Nq, Dv], lse [B, Hq, Nq] (float64 for float64 inputs, float32 otherwise). Invalid
calls raise ValueError (TypeError for dtype problems) with the C++ library's message.

    import numpy as np, attn
    q = np.random.randn(1, 4, 128, 64).astype(np.float32); k = q.copy(); v = q.copy()
    out = np.empty_like(q)
    attn.sdpa_forward(out, q, k, v, causal=True)

PyTorch drop-ins (autograd, torch.compile): ``attn.torch.scaled_dot_product_attention`` and
``attn.torch.MultiheadAttention``.
"""

from . import _blas_env  # noqa: F401  (OPENBLAS_CORETYPE, before _core loads OpenBLAS)
from ._core import KvCache, decode, explain, explain_backward, sdpa_backward, sdpa_forward
from ._core import version as _core_version

__version__ = "0.1.0"
__all__ = ["sdpa_forward", "sdpa_backward", "explain", "explain_backward", "KvCache", "decode"]


def library_version() -> str:
    """The version of the C++ library the extension was built from."""
    return _core_version()
