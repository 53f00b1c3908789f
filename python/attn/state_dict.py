"""Name maps between foreign attention state dicts and attn's canonical names, and loading them
into ``attn.torch.MultiheadAttention`` (or ``torch.nn.MultiheadAttention``) with PyTorch-style
reports. The same maps as the C++ ones (include/attn/io/name_maps.hpp; docs/io.md has the tables).

Canonical names: ``q_proj.weight [Hq·hd, E]``, ``k_proj.weight [Hkv·hd, kdim]``,
``v_proj.weight [Hkv·hd, vdim]``, ``out_proj.weight [E, Hq·hd]``, each with ``.bias``;
``bias_k``/``bias_v`` (torch's add_bias_kv). Foreign names are those of the attention module
itself, after ``prefix`` ("encoder.layer.0.attention." for BERT, "model.layers.0.self_attn." for
LLaMA, "h.0.attn." for GPT-2):

- ``torch``: torch.nn.MultiheadAttention (in_proj_weight/in_proj_bias split in three; q_dim for
  attn's GQA module; q_proj_weight/k_proj_weight/v_proj_weight; out_proj.*; bias_k/bias_v)
- ``hf_bert``: BertAttention (self.query/key/value, output.dense)
- ``llama``: LlamaAttention (q_proj, k_proj, v_proj, o_proj; q/k rows already permuted for the
  half-split rotary convention); the rotary_emb.inv_freq buffer is dropped
- ``gpt2``: GPT2Attention (c_attn: Conv1D [in, out], transposed and split; c_proj); the causal-mask
  buffers bias/masked_bias are dropped
- ``wqkvo``: W_Q, W_K, W_V, W_O ([out, in]; also W_Q.weight), biases b_Q... (or W_Q.bias)

Maps are pure: they return new dicts of views (slices and transposes of the inputs, plus
concatenations where fusing), inputs untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["NAMES", "to_canonical", "from_canonical", "LoadReport", "load_state_dict", "export_state_dict"]

NAMES = ("torch", "hf_bert", "llama", "gpt2", "wqkvo")
_QKV = ("q_proj", "k_proj", "v_proj")


def _linear(q, k, v, o):
    return [(f"{f}.{s}", f"{c}.{s}") for f, c in ((q, "q_proj"), (k, "k_proj"), (v, "v_proj"), (o, "out_proj"))
            for s in ("weight", "bias")]


# renames: [(foreign, canonical)] (the first foreign alias is written back); fused: (weight, bias)
# keys of a fused QKV; conv1d: fused/c_proj weights are [in, out]; dropped: buffers.
_TABLES = {
    "torch": dict(renames=[("q_proj_weight", "q_proj.weight"), ("k_proj_weight", "k_proj.weight"),
                           ("v_proj_weight", "v_proj.weight"), ("out_proj.weight", "out_proj.weight"),
                           ("out_proj.bias", "out_proj.bias"), ("bias_k", "bias_k"), ("bias_v", "bias_v")],
                  fused=("in_proj_weight", "in_proj_bias"), conv1d=False, dropped=()),
    "hf_bert": dict(renames=_linear("self.query", "self.key", "self.value", "output.dense"), fused=None,
                    conv1d=False, dropped=()),
    "llama": dict(renames=_linear("q_proj", "k_proj", "v_proj", "o_proj"), fused=None, conv1d=False,
                  dropped=("rotary_emb.inv_freq",)),
    "gpt2": dict(renames=[("c_proj.bias", "out_proj.bias")], fused=("c_attn.weight", "c_attn.bias"), conv1d=True,
                 dropped=("bias", "masked_bias")),
    "wqkvo": dict(renames=[(f"W_{x}", f"{c}.weight") for x, c in zip("QKVO", _QKV + ("out_proj",))]
                  + [(f"b_{x}", f"{c}.bias") for x, c in zip("QKVO", _QKV + ("out_proj",))]
                  + [(f"W_{x}.{s}", f"{c}.{s}") for x, c in zip("QKVO", _QKV + ("out_proj",)) for s in ("weight", "bias")],
                  fused=None, conv1d=False, dropped=()),
}


# The wqkvo map's (foreign, canonical) pairs: the seeds' classes (attn.modules) rename with them.
WQKVO_RENAMES = tuple(_TABLES["wqkvo"]["renames"])


def _table(names):
    if names not in _TABLES:
        raise ValueError(f"names: is {names!r}, expected one of {', '.join(NAMES)}")
    return _TABLES[names]


def _torch_nn():
    import torch.nn
    return torch.nn


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def _cat(parts):
    if _is_torch(parts[0]):
        import torch
        return torch.cat(list(parts), 0)
    return np.concatenate(parts, 0)


def _qkv_rows(rows, q_dim, key):
    if q_dim == 0:
        if rows % 3:
            raise ValueError(f"{key}: has {rows} fused q/k/v rows, expected a multiple of 3 (give q_dim for GQA/MQA)")
        q_dim = rows // 3
    kv = (rows - q_dim) // 2
    if q_dim <= 0 or kv <= 0 or q_dim + 2 * kv != rows:
        raise ValueError(f"{key}: has {rows} fused q/k/v rows, expected q_dim = {q_dim} rows and two equal k/v "
                         "parts")
    return q_dim, kv, kv


def _put(out, name, value):
    if name in out:
        raise ValueError(f"name: = {name!r}, which the state dict already has, expected a new key")
    out[name] = value


def to_canonical(state_dict, names, *, prefix="", q_dim=0):
    """Foreign -> canonical {name: tensor}. q_dim: rows of Q in a fused QKV weight (0: a third; K
    and V share the rest). Keys under ``prefix`` the map does not know are kept
    (prefix stripped) so a strict load reports them; keys outside ``prefix`` are left out."""
    t = _table(names)
    out = {}
    for full, value in state_dict.items():
        if not full.startswith(prefix):
            continue
        key = full[len(prefix):]
        if not key or key in t["dropped"]:
            continue
        if t["fused"] and key in t["fused"]:
            is_bias = key == t["fused"][1]
            if value.ndim != (1 if is_bias else 2):
                raise ValueError(f"{full}: has shape {list(value.shape)}, expected rank {1 if is_bias else 2}")
            rows = value.T if t["conv1d"] and not is_bias else value
            begin = 0
            for part, n in zip(_QKV, _qkv_rows(rows.shape[0], q_dim, full)):
                _put(out, f"{part}.{'bias' if is_bias else 'weight'}", rows[begin:begin + n])
                begin += n
            continue
        if t["conv1d"] and key == "c_proj.weight":
            if value.ndim != 2:
                raise ValueError(f"{full}: has shape {list(value.shape)}, expected rank 2 [in, out]")
            _put(out, "out_proj.weight", value.T)
            continue
        _put(out, dict(t["renames"]).get(key, key), value)
    return out


def from_canonical(state_dict, names, *, prefix="", fused=None):
    """Canonical -> foreign {prefix + name: tensor}. torch: the fused in_proj_weight when ``fused``
    (default: when q, k and v weights have one input width and k, v one shape), q_proj_weight...
    otherwise; in_proj_bias
    whenever the biases are given. gpt2 needs all three of q, k, v. Unknown keys are kept."""
    t = _table(names)
    back = {}
    for f, c in t["renames"]:
        back.setdefault(c, f)
    w = [state_dict.get(f"{p}.weight") for p in _QKV]
    b = [state_dict.get(f"{p}.bias") for p in _QKV]
    fuse_w = fuse_b = False
    if t["fused"]:
        # torch fuses exactly when kdim = vdim = E: one input width (and, for GQA, equal k and v rows).
        same = (all(x is not None and x.ndim == 2 for x in w) and w[0].shape[1] == w[1].shape[1]
                and tuple(w[1].shape) == tuple(w[2].shape))
        fuse_w = any(x is not None for x in w) if t["conv1d"] else (same if fused is None else fused)
        if fuse_w and not all(x is not None for x in w):
            raise ValueError(f"state_dict: has some but not all of q_proj/k_proj/v_proj.weight, expected all three or none "
                             f"({names} fuses them in {t['fused'][0]})")
        if fuse_w and t["conv1d"] and len({x.shape[1] for x in w}) != 1:
            raise ValueError("state_dict: has q, k and v weights of different input widths, expected one width (gpt2 "
                             "fuses them in c_attn.weight)")
        if fuse_w and not same and not t["conv1d"]:
            raise ValueError("state_dict: has q, k and v weights of different input widths, expected one width (torch "
                             "fuses them in in_proj_weight)")
        fuse_b = any(x is not None for x in b)
        if fuse_b and not all(x is not None for x in b):
            raise ValueError(f"state_dict: has some but not all of q_proj.bias, k_proj.bias, v_proj.bias, expected "
                             f"all three or none ({names} stores them fused in {t['fused'][1]})")
    out = {}
    for name, value in state_dict.items():
        part, _, kind = name.partition(".")
        if part in _QKV and ((kind == "weight" and fuse_w) or (kind == "bias" and fuse_b)):
            key = prefix + t["fused"][kind == "bias"]
            if key not in out:
                stacked = _cat(w if kind == "weight" else b)
                out[key] = stacked.T if t["conv1d"] and kind == "weight" else stacked
            continue
        if t["conv1d"] and name == "out_proj.weight":
            _put(out, prefix + "c_proj.weight", value.T)
            continue
        _put(out, prefix + back.get(name, name), value)
    return out


@dataclass
class LoadReport:
    """What a load found: expected keys missing from the state dict, given keys not expected, and
    keys whose tensor has the wrong shape or a dtype that does not convert (name, expected, got)."""
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)

    @property
    def missing_keys(self):
        """torch's name for ``missing`` (``nn.Module.load_state_dict`` returns these two)."""
        return self.missing

    @property
    def unexpected_keys(self):
        return self.unexpected

    @property
    def ok(self):
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self):
        """The C++ report's text: "missing keys: a; unexpected keys: b; wrong shapes or dtypes: c
        expected [4, 4] float32, got [4, 2] float32"."""
        if self.ok:
            return "all keys matched"
        parts = []
        if self.missing:
            parts.append("missing keys: " + ", ".join(self.missing))
        if self.unexpected:
            parts.append("unexpected keys: " + ", ".join(self.unexpected))
        if self.mismatched:
            parts.append("wrong shapes or dtypes: " + ", ".join(f"{n} expected {e}, got {g}" for n, e, g in self.mismatched))
        return "; ".join(parts)


def _describe(x):
    dtype = str(x.dtype).replace("torch.", "")
    return f"{list(x.shape)} {dtype}"


def _is_floating(x):
    if _is_torch(x):
        return x.is_floating_point()
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def _converts(src, dst):
    import torch
    same = torch.as_tensor(src).dtype == dst.dtype if not _is_torch(src) else src.dtype == dst.dtype
    return same or (_is_floating(src) and dst.is_floating_point())


def _slots(module):
    """Canonical name -> the parameter memory of an (attn or torch) MultiheadAttention, or of a
    module with q_proj/k_proj/v_proj/out_proj linear layers (attn.modules' classes)."""
    if isinstance(getattr(module, "q_proj", None), _torch_nn().Linear):
        return {f"{part}.{kind}": getattr(getattr(module, part), kind) for part in _QKV + ("out_proj",)
                for kind in ("weight", "bias") if getattr(getattr(module, part), kind) is not None}
    E = module.embed_dim
    kv = getattr(module, "kv_dim", E)
    slots = {}
    if module.in_proj_weight is not None:
        w = module.in_proj_weight
        slots.update({"q_proj.weight": w[:E], "k_proj.weight": w[E:E + kv], "v_proj.weight": w[E + kv:]})
    else:
        slots.update({"q_proj.weight": module.q_proj_weight, "k_proj.weight": module.k_proj_weight,
                      "v_proj.weight": module.v_proj_weight})
    if module.in_proj_bias is not None:
        b = module.in_proj_bias
        slots.update({"q_proj.bias": b[:E], "k_proj.bias": b[E:E + kv], "v_proj.bias": b[E + kv:]})
    slots["out_proj.weight"] = module.out_proj.weight
    if module.out_proj.bias is not None:
        slots["out_proj.bias"] = module.out_proj.bias
    for name in ("bias_k", "bias_v"):
        if getattr(module, name, None) is not None:
            slots[name] = getattr(module, name)
    return slots


def load_state_dict(module, state_dict, names="torch", strict=True, *, prefix=""):
    """Loads a foreign state dict (names: "torch" | "hf_bert" | "llama" | "gpt2" | "wqkvo") into an
    ``attn.torch.MultiheadAttention`` (or ``torch.nn.MultiheadAttention``, or one of the seeds'
    classes ``MultiHeadAttention``/``MultiQueryAttention``/``GroupQueryAttention``) and returns a
    LoadReport. strict: any missing, unexpected or mismatched key raises one ValueError listing all
    of them and nothing is loaded. Non-strict: what fits is copied, the rest is in the report (unlike
    torch, a wrong shape does not raise). Values may be torch tensors or numpy arrays; floating
    dtypes convert to the module's."""
    import torch
    canonical = to_canonical(state_dict, names, prefix=prefix, q_dim=module.embed_dim)
    slots = _slots(module)
    report = LoadReport()
    for name, dest in slots.items():
        if name not in canonical:
            report.missing.append(name)
            continue
        src = canonical[name]
        if tuple(src.shape) != tuple(dest.shape) or not _converts(src, dest):
            report.mismatched.append((name, _describe(dest), _describe(src)))
    report.unexpected = [name for name in canonical if name not in slots]
    if strict and not report.ok:
        raise ValueError("state_dict: " + report.describe() + ", expected exactly the module's keys with their shapes "
                         "and dtypes (strict load)")
    bad = {n for n, _, _ in report.mismatched}
    with torch.no_grad():
        for name, dest in slots.items():
            if name in canonical and name not in bad:
                dest.copy_(torch.as_tensor(np.asarray(canonical[name]) if not _is_torch(canonical[name])
                                           else canonical[name]))
    return report


def export_state_dict(module, names="torch", *, prefix=""):
    """The module's parameters under a foreign map's names (detached views; torch fuses
    in_proj_weight exactly when the module does)."""
    canonical = {name: p.detach() for name, p in _slots(module).items()}
    fused = module.in_proj_weight is not None
    return from_canonical(canonical, names, prefix=prefix, fused=fused if names == "torch" else None)
