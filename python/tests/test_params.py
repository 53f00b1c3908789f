"""The one parameter table (python/src/params.cpp, read by attn._params): the core binding, the
torch ops' schemas and attn.torch's signatures all come from it, and every entry reaches the core
by name with its value."""

import inspect

import numpy as np
import pytest

import attn
from attn import _core

torch = pytest.importorskip("torch")
import attn.torch as at  # noqa: E402
from attn import _params  # noqa: E402

TABLE = _core.sdpa_params()
NAMES = [row[0] for row in TABLE]
CALLBACKS = {"mask_mod", "score_mod", "score_mod_grad"}


def test_table_is_well_formed():
    assert len(NAMES) == len(set(NAMES))
    assert {n for n, t, _, _ in TABLE if t == "callback"} == CALLBACKS
    for name, type_, default, doc in TABLE:
        assert name.isidentifier() and doc, name
        assert _params.op_type(_params.BY_NAME[name]) is not None or type_ == "callback", name


@pytest.mark.parametrize("op, head, extra", [
    (torch.ops.attn.sdpa_fwd.default, ["q", "k", "v"], ["need_probs"]),
    (torch.ops.attn.sdpa_bwd.default, ["dout", "q", "k", "v", "out", "lse", "dlse"], ["need_dbias"]),
])
def test_op_schemas_are_the_table(op, head, extra):
    args = op._schema.arguments
    names = [a.name for a in args]
    assert names[:len(head)] == head
    table = [n for n in NAMES if n not in CALLBACKS]
    assert sorted(names[len(head):]) == sorted(table + extra)  # every entry, nothing else
    for a in args[len(head):]:
        if a.name in extra:
            continue
        name, type_, default, _ = TABLE[NAMES.index(a.name)]
        carried = type_ in ("int[]", "float[]", "array", "u64")
        assert a.kwarg_only != carried, a.name  # tensors positional (autograd needs them so), values by keyword
        assert a.default_value == (None if carried or type_ == "int|int[2]" else default), a.name


def test_core_binding_walks_the_table():
    doc = attn.sdpa_forward.__doc__
    for name in NAMES:
        assert f"  {name}: " in doc, name
    q = np.random.randn(1, 2, 5, 8).astype(np.float32)
    out = np.empty_like(q)
    with pytest.raises(ValueError, match="caussal: is not a parameter"):
        attn.sdpa_forward(out, q, q, q, caussal=True)
    with pytest.raises(TypeError, match="window_left: is a str, expected int"):  # ErrorKind::type
        attn.sdpa_forward(out, q, q, q, window_left="3")
    # Every default of the table, given explicitly, is the call without it.
    want = np.empty_like(q)
    attn.sdpa_forward(want, q, q, q)
    defaults = {n: d for n, _, d, _ in TABLE}
    attn.sdpa_forward(out, q, q, q, **defaults)
    np.testing.assert_array_equal(out, want)


def test_torch_signature_lists_the_table():
    sig = inspect.signature(at.scaled_dot_product_attention)
    own = {"bool_mask", "bias", "causal", "dropout_p", "scale"}  # torch's own arguments set these
    extras = [n for n in NAMES if n not in CALLBACKS | own]
    kw = [p.name for p in sig.parameters.values() if p.kind == inspect.Parameter.KEYWORD_ONLY]
    assert kw == ["return_lse"] + extras
    assert sig.parameters["alignment"].default == "top_left"  # PyTorch's rule in attn.torch
    assert sig.parameters["dropout_seed"].default is None and sig.parameters["num_threads"].default is None
    with pytest.raises(TypeError, match="mask_mod: is not a parameter"):
        q = torch.randn(1, 1, 2, 4)
        at.scaled_dot_product_attention(q, q, q, mask_mod=lambda b, h, i, j: True)


def distinct_value(i, type_):
    """A non-default value of each type, and what the core must receive for it."""
    if type_ == "bool":
        return True, True
    if type_ == "int":
        return 7 + i, 7 + i
    if type_ in ("float", "float?"):
        return 0.5 + i, 0.5 + i
    if type_ in ("str", "str?"):
        return f"value{i}", f"value{i}"
    if type_ == "int[]":
        return [i, i + 1, 3], [i, i + 1, 3]
    if type_ == "float[]":
        return [i + 0.25], [i + 0.25]
    if type_ == "u64":
        return 2**64 - 1 - i, 2**64 - 1 - i  # the top bit survives the int64 tensor in the op
    if type_ == "int|int[2]":
        return (i, i + 2), (i, i + 2)
    if type_ == "array":
        t = torch.full((1, 1, 3, 4), float(i))
        return t, t
    raise AssertionError(f"no test value for type {type_}: add one")


def test_every_entry_reaches_the_core_by_name(monkeypatch):
    """Forward and backward receive each parameter under its name with its value (an index off by
    one in any packing would swap two of them)."""
    given, expected = {}, {}
    for i, (name, type_, _, _) in enumerate(TABLE):
        if type_ != "callback":
            given[name], expected[name] = distinct_value(i, type_)
    seen = {}

    def fake_forward(out, q, k, v, lse=None, probs=None, **kw):
        out.zero_()
        lse.zero_()
        seen["forward"] = kw

    def fake_backward(dq, dk, dv, dout, q, k, v, out, lse, dbias=None, dlse=None, **kw):
        for t in (dq, dk, dv):
            t.zero_()
        seen["backward"] = kw

    monkeypatch.setattr(at._core, "sdpa_forward", fake_forward)
    monkeypatch.setattr(at._core, "sdpa_backward", fake_backward)
    q = torch.randn(1, 1, 3, 8, requires_grad=True)
    out, _, _ = at._attention(q, q, q, **given)
    out.sum().backward()
    for which in ("forward", "backward"):
        got = seen[which]
        assert sorted(got) == sorted(expected), which
        for name, want in expected.items():
            if isinstance(want, torch.Tensor):
                assert got[name] is want or torch.equal(got[name], want), (which, name)
            else:
                assert got[name] == want and type(got[name]) is type(want), (which, name, got[name])
