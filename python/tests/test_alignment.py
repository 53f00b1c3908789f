"""Alignment when Nq != Nk (docs/contract.md §5): the core binding has no default for causal,
windowed and ALiBi calls; attn.torch keeps PyTorch's top-left; a square call needs nothing."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import attn  # noqa: E402
from attn.torch import scaled_dot_product_attention as attn_sdpa  # noqa: E402


def _arrays(L, S, H=2, E=8):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, H, L, E))
    k = rng.standard_normal((1, H, S, E))
    v = rng.standard_normal((1, H, S, E))
    return q, k, v, np.empty_like(q)


def _naive(q, k, v, off):
    """Causal attention with the diagonal at j = i + off, in numpy."""
    s = np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(q.shape[-1])
    i = np.arange(q.shape[2])[:, None]
    j = np.arange(k.shape[2])[None, :]
    s = np.where(j <= i + off, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("kwargs", [dict(causal=True), dict(window_left=2), dict(window_right=1),
                                    dict(alibi_slopes=[0.5, 0.25])], ids=["causal", "window_left", "window_right", "alibi"])
def test_core_binding_needs_alignment_when_nq_differs_from_nk(kwargs):
    q, k, v, out = _arrays(3, 5)
    with pytest.raises(ValueError, match=r"params\.mask\.alignment: .*top_left.*bottom_right"):
        attn.sdpa_forward(out, q, k, v, **kwargs)
    with pytest.raises(ValueError, match=r"params\.mask\.alignment"):
        attn.sdpa_forward(out, q, k, v, alignment=None, **kwargs)


def test_core_binding_square_and_plain_calls_need_no_alignment():
    q, k, v, out = _arrays(4, 4)
    attn.sdpa_forward(out, q, k, v, causal=True)
    np.testing.assert_allclose(out, _naive(q, k, v, 0), atol=1e-12)
    q, k, v, out = _arrays(3, 5)
    attn.sdpa_forward(out, q, k, v)  # no causal, window or ALiBi: the offset is unused


@pytest.mark.parametrize("alignment,off", [("top_left", 0), ("bottom_right", 2)])
def test_core_binding_explicit_alignment(alignment, off):
    q, k, v, out = _arrays(3, 5)
    attn.sdpa_forward(out, q, k, v, causal=True, alignment=alignment)
    np.testing.assert_allclose(out, _naive(q, k, v, off), atol=1e-12)


def test_attn_torch_keeps_pytorch_top_left():
    q, k, v = (torch.randn(2, 3, n, 8, dtype=torch.float64) for n in (5, 9, 9))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(attn_sdpa(q, k, v, is_causal=True), want, atol=1e-12, rtol=0)
    got = attn_sdpa(q, k, v, is_causal=True, alignment="bottom_right")
    keep = torch.ones(5, 9, dtype=torch.bool).tril(4)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), atol=1e-12, rtol=0)


def test_linear_core_binding_needs_alignment_when_nq_differs_from_nk():
    q, k, v, out = (x.astype(np.float32) for x in _arrays(3, 5))
    den = np.empty(q.shape[:3], np.float32)
    with pytest.raises(ValueError, match=r"params\.mask\.alignment: .*top_left.*bottom_right"):
        attn._core.linear_attention_forward(out, q, k, v, den, causal=True)
    for alignment in ("top_left", "bottom_right"):
        attn._core.linear_attention_forward(out, q, k, v, den, causal=True, alignment=alignment)
    with pytest.raises(ValueError, match=r"^alignment: = 'diagonal', expected 'top_left' or 'bottom_right'"):
        attn._core.linear_attention_forward(out, q, k, v, den, causal=True, alignment="diagonal")
    q, k, v, out = (x.astype(np.float32) for x in _arrays(4, 4))
    attn._core.linear_attention_forward(out, q, k, v, np.empty(q.shape[:3], np.float32), causal=True)


def test_attn_torch_linear_attention_states_its_bottom_right_alignment():
    from attn.torch import linear_attention
    q, k, v = (torch.randn(1, 2, n, 8, dtype=torch.float64) for n in (3, 5, 5))
    got = linear_attention(q, k, v, "elu", True)
    fq, fk = (torch.nn.functional.elu(x) + 1 for x in (q, k))
    keep = torch.ones(3, 5, dtype=torch.bool).tril(2)  # bottom-right: j <= i + S - L
    w = (fq @ fk.transpose(-1, -2)) * keep
    want = (w @ v) / (w.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_torch_op_schema_has_no_default_alignment():
    # The op's schema carries the table's default (None); only attn.torch's functions and modules
    # add PyTorch's top-left (in _attention), so a direct op call must state it.
    assert "str? alignment=None" in str(torch.ops.attn.sdpa_fwd.default._schema)
    q, k, v = (torch.randn(1, 2, n, 8, dtype=torch.float64) for n in (3, 5, 5))
    with pytest.raises(ValueError, match=r"params\.mask\.alignment: .*top_left.*bottom_right"):
        torch.ops.attn.sdpa_fwd(q, k, v, causal=True)
    out, _, _ = torch.ops.attn.sdpa_fwd(q, k, v, causal=True, alignment="top_left")
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-12, rtol=0)
