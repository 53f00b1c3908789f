"""attn's sdpa parameters for the torch ops, generated from the one table of them.

The table is ``kParams`` in ``python/src/params.cpp``, read here through
``attn._core.sdpa_params()`` as (name, type, default, doc); the core binding parses its keyword
arguments by walking the same table. From it this module builds the ``torch.library`` schemas of
``attn::sdpa_fwd``/``attn::sdpa_bwd`` (``OpArgs``), binds an op's arguments by name, and converts
values user -> op argument -> core keyword by type. Adding a parameter is one entry in the table
(plus its kernel support); nothing here lists parameters.

A torch.library op takes Tensors only positionally (its autograd formula needs that), so the
table's tensor-carried entries come, in table order, after the op's own tensors; the others are
keyword-only. Callbacks (type ``callback``: mask_mod, score_mod) have no schema type: they are
not in the ops, only in the core binding (``attn.sdpa_forward``). See docs/architecture.md.
"""

from __future__ import annotations

import json
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch

from . import _core

Tensor = torch.Tensor


class Param(NamedTuple):
    name: str
    type: str
    default: object
    doc: str


TABLE: Tuple[Param, ...] = tuple(Param(*row) for row in _core.sdpa_params())
BY_NAME: Dict[str, Param] = {p.name: p for p in TABLE}

# The op schema type of each table type (None: not expressible in a schema).
_OP_TYPE = {
    "bool": "bool", "int": "int", "float": "float", "float?": "float?", "str": "str", "str?": "str?",
    "int[]": "Tensor?", "float[]": "Tensor?", "array": "Tensor?", "u64": "Tensor?", "int|int[2]": "int[]?",
    "callback": None,
}


def op_type(p: Param) -> Optional[str]:
    if p.type not in _OP_TYPE:
        raise TypeError(f"{p.name}: has table type {p.type!r}, expected one with a torch op type (add it to _OP_TYPE)")
    return _OP_TYPE[p.type]


OP_PARAMS: Tuple[Param, ...] = tuple(p for p in TABLE if op_type(p) is not None)
"""The table's entries that the torch ops carry (all but the callbacks)."""


def _literal(v: object) -> str:
    if v is None or isinstance(v, bool):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


class OpArgs:
    """The arguments of one op: ``head`` (the op's own leading arguments, positional), then the
    table's tensor-carried entries (positional, ``Tensor? name=None``), then the table's other
    entries and ``extra`` (the op's own flags) keyword-only. Defaults are the table's (None where
    the op carries a value as a tensor: the core then applies the table's default)."""

    def __init__(self, head: Sequence[Tuple[str, str]], extra: Sequence[Tuple[str, str, object]], returns: str):
        tensors = [(op_type(p), p.name, None) for p in OP_PARAMS if op_type(p) == "Tensor?"]
        values = [(op_type(p), p.name, p.default if op_type(p) == p.type else None)
                  for p in OP_PARAMS if op_type(p) != "Tensor?"]
        keyword = values + list(extra)
        self.positional: Tuple[str, ...] = tuple(n for _, n in head) + tuple(n for _, n, _ in tensors)
        self.defaults: Dict[str, object] = {n: d for _, n, d in tensors + keyword}
        args = [f"{t} {n}" for t, n in head] + [f"{t} {n}={_literal(d)}" for t, n, d in tensors]
        kwargs = [f"{t} {n}={_literal(d)}" for t, n, d in keyword]
        self.schema = f"({', '.join(args)}, *, {', '.join(kwargs)}) -> {returns}"

    def bind(self, args: tuple, kwargs: dict) -> dict:
        """An op call's arguments by name, defaults filled in."""
        named = dict(self.defaults)
        named.update(zip(self.positional, args))
        named.update(kwargs)
        return named

    def split(self, named: dict) -> Tuple[tuple, dict]:
        """(args, kwargs) for calling the op from arguments by name."""
        unknown = set(named) - set(self.positional) - set(self.defaults)
        if unknown:
            raise TypeError(f"{sorted(unknown)[0]}: is not an argument of this op (expected one of "
                            f"{', '.join(self.positional + tuple(self.defaults))})")
        args = tuple(named.get(n, self.defaults.get(n)) for n in self.positional)
        return args, {n: v for n, v in named.items() if n not in self.positional}


def _index_tensor(x) -> Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.int64)
    return torch.tensor([int(i) for i in x], dtype=torch.int64)


def _float_tensor(x) -> Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.tensor([float(s) for s in x], dtype=torch.float64)


def _u64_tensor(x) -> Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.int64).reshape(())
    x = int(x)
    if not 0 <= x < 2**64:
        raise ValueError(f"= {x}, expected an int in [0, 2^64)")
    return torch.tensor(x - 2**64 if x >= 2**63 else x, dtype=torch.int64)


def _pair(x) -> list:
    if isinstance(x, int):
        return [x, x]
    return [int(i) for i in x]


# user value -> op argument, by table type (None stays None: the table's default applies).
_TO_OP = {"int[]": _index_tensor, "float[]": _float_tensor, "u64": _u64_tensor, "int|int[2]": _pair,
          "float": float, "float?": float, "int": int, "bool": bool}
# op argument -> core keyword, by table type.
_TO_CORE = {"int[]": lambda t: t.tolist(), "float[]": lambda t: t.tolist(),
            "u64": lambda t: int(t) & (2**64 - 1), "int|int[2]": tuple}


def to_op(params: dict, where: str) -> dict:
    """User-level values (sequences or tensors for int[]/float[], ints for u64) as op arguments.
    `where` names the API for the error on an unknown name."""
    out = {}
    for name, value in params.items():
        p = BY_NAME.get(name)
        if p is None or op_type(p) is None:
            raise TypeError(f"{name}: is not a parameter of {where} (expected one of "
                            f"{', '.join(q.name for q in OP_PARAMS)})")
        convert = _TO_OP.get(p.type)
        try:
            out[name] = value if value is None or convert is None else convert(value)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: {e}" if str(e).startswith("=") else f"{name}: is {value!r}, expected {p.type}") from e
    return out


def to_core(named: dict) -> dict:
    """The table's entries among an op's bound arguments as the core binding's keywords (None
    left out: the binding applies the table's default)."""
    out = {}
    for p in OP_PARAMS:
        value = named.get(p.name)
        if value is not None:
            convert = _TO_CORE.get(p.type)
            out[p.name] = value if convert is None else convert(value)
    return out
