"""attn.io: safetensors through attn's C++ reader and writer — round trips of every dtype and rank,
files of the Python safetensors package read by attn and the other way round, zero copies,
copy-on-write, and corrupt files as ValueError."""

import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as st_load_np
from safetensors.numpy import save_file as st_save_np
from safetensors.torch import load_file as st_load_pt
from safetensors.torch import save_file as st_save_pt

import attn.io

NUMPY_DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                np.uint32, np.uint64, np.bool_, np.complex64]
SHAPES = [(), (7,), (3, 5), (2, 1, 3), (2, 3, 1, 5), (1, 2, 1, 2, 3), (0, 4)]


def numpy_tensors(rng):
    out = {}
    for d in NUMPY_DTYPES:
        for s in SHAPES:
            x = np.asarray(rng.standard_normal(s) * 50)
            out[f"{np.dtype(d).name}_{len(s)}_{'x'.join(map(str, s))}"] = np.asarray((x > 0) if d is np.bool_ else x.astype(d))
    return out


def test_numpy_round_trip_and_the_safetensors_package_both_ways(tmp_path):
    tensors = numpy_tensors(np.random.default_rng(0))
    meta = {"format": "np", "note": "ünïcode ✓"}
    ours = tmp_path / "ours.safetensors"
    attn.io.save_safetensors(ours, tensors, metadata=meta)
    back, m = attn.io.load_safetensors(ours, return_metadata=True)
    theirs_read = st_load_np(str(ours))  # attn wrote it, the safetensors package reads it
    assert m == meta
    for name, x in tensors.items():
        for got in (back[name], theirs_read[name]):
            assert got.dtype == x.dtype and got.shape == x.shape, name
            np.testing.assert_array_equal(got, x)
    theirs = tmp_path / "theirs.safetensors"
    st_save_np(tensors, str(theirs), metadata=meta)  # the safetensors package wrote it, attn reads it
    back2, m2 = attn.io.load_safetensors(theirs, return_metadata=True)
    assert m2 == meta and set(back2) == set(tensors)
    for name, x in tensors.items():
        np.testing.assert_array_equal(back2[name], x)


def test_torch_dtypes_both_ways(tmp_path):
    g = torch.Generator().manual_seed(1)
    tensors = {"bf16": torch.randn(3, 4, generator=g).bfloat16(), "f16": torch.randn(5, generator=g).half(),
               "f32": torch.randn(2, 3, 4, generator=g), "f64": torch.randn(2, generator=g, dtype=torch.float64),
               "i64": torch.arange(6).reshape(2, 3), "bool": torch.tensor([True, False, True]),
               "i8": torch.arange(-4, 4, dtype=torch.int8), "scalar": torch.tensor(2.5)}
    if hasattr(torch, "float8_e4m3fn"):
        tensors["f8"] = torch.randn(4, generator=g).to(torch.float8_e4m3fn)
    ours = tmp_path / "ours.safetensors"
    attn.io.save_safetensors(ours, tensors)
    for got in (attn.io.load_safetensors(ours, framework="torch"), st_load_pt(str(ours))):
        for name, x in tensors.items():
            assert got[name].dtype == x.dtype and got[name].shape == x.shape, name
            assert torch.equal(got[name].view(torch.uint8) if x.dtype.itemsize == 1 and x.is_floating_point()
                               else got[name], x.view(torch.uint8) if x.dtype.itemsize == 1 and x.is_floating_point()
                               else x), name
    theirs = tmp_path / "theirs.safetensors"
    st_save_pt(tensors, str(theirs))
    got = attn.io.load_safetensors(theirs, framework="torch")
    assert torch.equal(got["bf16"], tensors["bf16"]) and torch.equal(got["i64"], tensors["i64"])
    with pytest.raises(TypeError, match="^tensor 'bf16': has dtype BF16, which numpy does not have, expected"):
        attn.io.load_safetensors(theirs)


def test_strided_inputs_are_written_row_major(tmp_path):
    x = torch.randn(4, 6)
    a = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    p = tmp_path / "s.safetensors"
    attn.io.save_safetensors(p, {"t": x.T, "a": a})
    got = st_load_pt(str(p))
    assert torch.equal(got["t"], x.T.contiguous())
    np.testing.assert_array_equal(got["a"].numpy(), a)


def test_arrays_are_views_of_a_copy_on_write_mapping(tmp_path):
    p = tmp_path / "m.safetensors"
    attn.io.save_safetensors(p, {"a": np.arange(8, dtype=np.float32), "b": np.ones(4, np.float64)})
    raw = p.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    got = attn.io.load_safetensors(p)
    # One mapping: b (8-byte elements, written first) starts the data section, a follows it.
    assert got["a"].ctypes.data - got["b"].ctypes.data == 32
    assert got["b"].ctypes.data % 8 == 0
    t = attn.io.load_safetensors(p, framework="torch")
    assert t["a"].untyped_storage().nbytes() == 32  # a view of the 32 bytes, not a copy of the file
    got["a"][0] = 100.0  # writable; the file does not change
    assert p.read_bytes() == raw
    assert struct.unpack("<f", raw[8 + n + 32:8 + n + 36])[0] == 0.0
    del t
    a = got["a"]
    del got
    import gc
    gc.collect()
    assert a[0] == 100.0 and a[7] == 7.0  # the array keeps the mapping alive


def write_raw(path, header, data=b"", length=None):
    h = header.encode() if isinstance(header, str) else header
    path.write_bytes(struct.pack("<Q", len(h) if length is None else length) + h + data)
    return path


@pytest.mark.parametrize("header,data,length,message", [
    ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
     bytes(12), None, r'tensors "a" \[0, 8\) and "b" \[4, 12\) overlap'),
    ('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', bytes(8), None,
     r'tensor "a": shape \[3\] of F32 needs 12 bytes, but data_offsets \[0, 8\] cover 8'),
    ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', bytes(4), None, "reach past the data section"),
    ("{}", b"", 1 << 40, "is above the limit"),
    ("{}", b"", 1000, "reaches past the end of the file"),
    (b'{"\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4), None, "not valid UTF-8"),
    ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}', bytes(4), None, "not valid JSON"),
])
def test_corrupt_files_raise_value_error(tmp_path, header, data, length, message):
    p = write_raw(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(ValueError, match=message):
        attn.io.load_safetensors(p)


def test_unknown_dtype_and_bad_arguments(tmp_path):
    p = write_raw(tmp_path / "q.safetensors", '{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}', bytes(4))
    with pytest.raises(ValueError, match='tensor "a": has unknown dtype "Q7"'):
        attn.io.load_safetensors(p)
    with pytest.raises(OSError, match="cannot open"):
        attn.io.load_safetensors(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="framework"):
        attn.io.load_safetensors(p, framework="jax")
    with pytest.raises(TypeError, match="^metadata: has the entry .a.: 1, expected str keys and str values"):
        attn.io.save_safetensors(tmp_path / "x.safetensors", {"a": np.ones(1)}, metadata={"a": 1})
    with pytest.raises(ValueError, match="reserved"):
        attn.io.save_safetensors(tmp_path / "x.safetensors", {"__metadata__": np.ones(1)})
