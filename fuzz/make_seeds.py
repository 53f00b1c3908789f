"""Writes the seed corpus of the safetensors fuzz target (fuzz/corpus/): files written by the
Python safetensors package (every dtype attn has, ranks 0 to 5, metadata, empty tensors) and a few
hand-made corrupt files. Run from the repository root: python fuzz/make_seeds.py"""

import os
import struct

import numpy as np
from safetensors.numpy import save

out = os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)


def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


write("every_dtype.safetensors", save({
    "f32": rng.standard_normal((2, 3)).astype(np.float32), "f64": rng.standard_normal(3),
    "f16": rng.standard_normal((1, 2, 2)).astype(np.float16), "i8": np.arange(-3, 4, dtype=np.int8),
    "i32": np.arange(5, dtype=np.int32), "i64": np.arange(2, dtype=np.int64),
    "bool": np.array([True, False, True]), "u8": np.arange(4, dtype=np.uint8)}))
write("ranks.safetensors", save({
    "scalar": np.array(1.5, np.float32), "r5": np.ones((1, 2, 1, 2, 1), np.float32),
    "empty": np.zeros((0, 3), np.float32)}, metadata={"format": "pt", "note": "seed"}))
write("attention.safetensors", save({
    "in_proj_weight": rng.standard_normal((12, 4)).astype(np.float32),
    "in_proj_bias": np.zeros(12, np.float32), "out_proj.weight": np.eye(4, dtype=np.float32),
    "out_proj.bias": np.zeros(4, np.float32)}))


def raw(header, data=b"", length=None):
    h = header.encode("utf-8", "surrogateescape") if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if length is None else length) + h + data


write("overlap.bin", raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                         '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', bytes(12)))
write("hole.bin", raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', bytes(8)))
write("bad_size.bin", raw('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', bytes(8)))
write("length_past_eof.bin", raw('{}', length=1 << 40))
write("not_utf8.bin", raw(b'{"\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)))
write("unknown_dtype.bin", raw('{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}', bytes(4)))
write("truncated.bin", save({"x": np.ones(8, np.float32)})[:-5])
