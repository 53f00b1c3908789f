"""safetensors files for numpy arrays and torch tensors, through attn's C++ reader and writer.

``load_safetensors`` memory-maps the file copy-on-write and validates it completely (header length,
UTF-8, JSON, dtypes, shapes, offsets: no overlaps, no holes; docs/io.md) before returning arrays
that are views of the mapping: no copies, and writing to them never changes the file. A bad file
raises ValueError naming the tensor and the problem (TypeError when the problem is a dtype).

    import attn.io
    weights = attn.io.load_safetensors("model.safetensors", framework="torch")
    attn.io.save_safetensors("copy.safetensors", weights, metadata={"format": "pt"})
"""

from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["load_safetensors", "save_safetensors"]

# safetensors dtype <-> numpy dtype (None: numpy has none; the bytes come as the carrier below).
_NUMPY = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "F16": np.float16,
          "I32": np.int32, "U32": np.uint32, "F32": np.float32, "C64": np.complex64, "F64": np.float64,
          "I64": np.int64, "U64": np.uint64, "BF16": None, "F8_E5M2": None, "F8_E4M3": None, "F8_E8M0": None}


def _torch_dtypes():
    import torch
    table = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "F16": torch.float16,
             "BF16": torch.bfloat16, "I32": torch.int32, "F32": torch.float32, "C64": torch.complex64,
             "F64": torch.float64, "I64": torch.int64}
    for name, attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"), ("F8_E5M2", "float8_e5m2"),
                       ("F8_E4M3", "float8_e4m3fn"), ("F8_E8M0", "float8_e8m0fnu")):
        if hasattr(torch, attr):
            table[name] = getattr(torch, attr)
    return table


def load_safetensors(path, framework="numpy", *, return_metadata=False):
    """Every tensor of the file, as {name: array} in file order (views of the mapping, no copies).

    framework: "numpy" (BF16 and F8 tensors raise TypeError: numpy has no such dtype) or "torch"
    (every dtype torch has; torch tensors share the mapping's memory). With return_metadata=True,
    returns (tensors, metadata) where metadata is the file's ``__metadata__`` dict.
    """
    if framework not in ("numpy", "torch", "np", "pt"):
        raise ValueError(f"framework: = {framework!r}, expected 'numpy' or 'torch'")
    f = _core.SafetensorsFile(str(path))
    out = {}
    entries, metadata = f.tensors(), f.metadata()
    del f  # the arrays keep the mapping alive
    table = _NUMPY if framework in ("numpy", "np") else _torch_dtypes()
    bad = next(((name, dtype) for name, dtype, _, _ in entries if table.get(dtype) is None), None)
    if bad is not None:
        del entries  # an exception's frame must not keep the mapping alive
        hint = "; use framework='torch'" if framework in ("numpy", "np") else ""
        raise TypeError(f"tensor {bad[0]!r}: has dtype {bad[1]}, which {framework} does not have, expected a dtype it "
                        f"has{hint}")
    if framework in ("numpy", "np"):
        for name, _, _, array in entries:
            out[name] = array
    else:
        import torch
        for name, dtype, shape, array in entries:
            if not array.flags.aligned:  # a writer that did not pad: torch needs aligned memory
                array = array.copy()
            t = torch.from_numpy(array)
            if t.dtype != table[dtype]:  # BF16 carried as uint16, F8 as uint8: same bytes
                t = t.view(table[dtype])
            out[name] = t.reshape(shape)
    return (out, metadata) if return_metadata else out


def _record(name, value):
    """(name, safetensors dtype, shape, C-contiguous array over the same bytes) for the writer."""
    if not isinstance(name, str):
        raise TypeError(f"tensors: has a name of type {type(name).__name__}, expected str names")
    if type(value).__module__.startswith("torch"):
        import torch
        t = value.detach()
        if t.device.type != "cpu":
            raise ValueError(f"tensor {name!r}: is on {t.device}, expected a CPU tensor (move it with .cpu())")
        table = {v: k for k, v in _torch_dtypes().items()}
        if t.dtype not in table:
            raise TypeError(f"tensor {name!r}: has dtype {t.dtype}, which safetensors does not have, expected one "
                            f"of {', '.join(str(d) for d in table)}")
        t = t.contiguous()
        carrier = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        flat = t.reshape(-1)
        raw = flat.view(carrier).numpy() if t.dtype not in (torch.bool, torch.complex64) else flat.numpy()
        return name, table[t.dtype], list(t.shape), raw
    a = np.asarray(value)
    names = {np.dtype(v): k for k, v in _NUMPY.items() if v is not None}
    if a.dtype not in names:
        raise TypeError(f"tensor {name!r}: has dtype {a.dtype}, which safetensors does not have, expected one of "
                        f"{', '.join(str(d) for d in names)}")
    return name, names[a.dtype], list(a.shape), np.ascontiguousarray(a).reshape(-1)


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: numpy array or CPU torch tensor} (any strides, any rank; contiguous ones are
    not copied) with attn's C++ writer; ``metadata`` ({str: str}) becomes ``__metadata__``."""
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata: has the entry {k!r}: {v!r}, expected str keys and str values")
    records = [_record(name, value) for name, value in tensors.items()]
    _core.save_safetensors(str(path), records, metadata)
