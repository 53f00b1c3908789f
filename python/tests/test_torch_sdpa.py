"""attn.torch.scaled_dot_product_attention against torch.nn.functional.scaled_dot_product_attention."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from attn.torch import scaled_dot_product_attention as attn_sdpa  # noqa: E402

TOL = {torch.float64: 1e-9, torch.float32: 2e-5}
GRAD_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}  # f64 inputs carry an f64 lse (docs/contract.md §8)


def make(B, Hq, Hkv, L, S, E, dtype, bshd=False):
    def t(H, N):
        if bshd:  # torch users' common layout: [B, N, H, E] transposed to [B, H, N, E]
            return torch.randn(B, N, H, E, dtype=dtype).transpose(1, 2).requires_grad_()
        return torch.randn(B, H, N, E, dtype=dtype, requires_grad=True)
    return t(Hq, L), t(Hkv, S), t(Hkv, S)


def masks(kind, B, H, L, S, dtype):
    if kind is None:
        return None
    if kind == "bool_2d":
        m = torch.rand(L, S) < 0.7
    elif kind == "bool_b11s":  # key padding
        m = torch.ones(B, 1, 1, S, dtype=torch.bool)
        m[..., S - 3:] = False
        return m
    elif kind == "bool_4d":
        m = torch.rand(B, H, L, S) < 0.6
    else:  # float_4d / float_2d
        shape = (B, H, L, S) if kind == "float_4d" else (L, S)
        return torch.randn(shape, dtype=dtype)
    m[..., 0] = True  # no fully masked rows (torch gives NaN there, attn 0)
    return m


def check(got, want, tol):
    err = (got - want).abs().max().item()
    assert err < tol * max(1.0, want.abs().max().item()), f"max abs error {err:.3g}"


CASES = [
    # B, Hq, Hkv, L, S, E, mask, causal, gqa
    (2, 3, 3, 17, 17, 16, None, False, False),
    (1, 2, 2, 9, 23, 8, None, True, False),
    (2, 4, 2, 13, 13, 16, "bool_2d", False, True),
    (2, 2, 2, 10, 12, 8, "bool_b11s", True, False),
    (1, 4, 1, 8, 19, 32, "bool_4d", False, True),
    (2, 2, 2, 11, 7, 16, "float_4d", False, False),
    (1, 4, 2, 6, 6, 8, "float_2d", True, True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}H{c[1]}x{c[2]}L{c[3]}S{c[4]}E{c[5]}-{c[6]}-causal{int(c[7])}")
def test_matches_torch_outputs_and_gradients(case, dtype):
    B, Hq, Hkv, L, S, E, mask_kind, causal, gqa = case
    q, k, v = make(B, Hq, Hkv, L, S, E, dtype, bshd=B == 2)
    mask = masks(mask_kind, B, Hq, L, S, dtype)
    if mask is not None and mask.is_floating_point():
        mask.requires_grad_()
    got = attn_sdpa(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
    if causal and mask is not None:  # torch refuses both; attn applies both
        causal_keep = torch.ones(L, S, dtype=torch.bool).tril()
        tmask = mask & causal_keep if mask.dtype == torch.bool else mask.masked_fill(~causal_keep, float("-inf"))
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=tmask, enable_gqa=gqa)
    else:
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
    assert got.shape == want.shape and got.dtype == dtype
    assert got.stride() == torch.empty_like(q[..., :1].expand(*q.shape[:-1], v.shape[-1])).stride()  # q's order
    check(got, want, TOL[dtype])
    dout = torch.randn_like(want)
    inputs = (q, k, v) + ((mask,) if mask is not None and mask.requires_grad else ())
    g_got = torch.autograd.grad(got, inputs, dout)
    g_want = torch.autograd.grad(want, inputs, dout)
    for a, b in zip(g_got, g_want):
        assert a.shape == b.shape
        check(a, b, GRAD_TOL[dtype])


def test_scale_rank3_and_rank5_inputs():
    q, k, v = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 7, 8, dtype=torch.float64), torch.randn(3, 7, 4, dtype=torch.float64)
    check(attn_sdpa(q, k, v, scale=0.3), F.scaled_dot_product_attention(q, k, v, scale=0.3), 1e-12)
    q5, k5 = torch.randn(2, 3, 2, 5, 8, dtype=torch.float64), torch.randn(2, 3, 2, 6, 8, dtype=torch.float64)
    mask = torch.rand(3, 2, 5, 6) < 0.8
    mask[..., 0] = True
    check(attn_sdpa(q5, k5, k5, attn_mask=mask), F.scaled_dot_product_attention(q5, k5, k5, attn_mask=mask), 1e-12)


def test_extras_window_lengths_lse():
    q, k, v = (torch.randn(2, 2, 12, 8, dtype=torch.float64) for _ in range(3))
    out, lse = attn_sdpa(q, k, v, window_left=3, is_causal=True, return_lse=True)
    i = torch.arange(12)
    keep = (i[None, :] <= i[:, None]) & (i[None, :] >= i[:, None] - 3)
    check(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), 1e-12)
    s = (q @ k.transpose(-1, -2)) / 8 ** 0.5
    check(lse.double(), s.masked_fill(~keep, float("-inf")).logsumexp(-1), 1e-6)
    out = attn_sdpa(q, k, v, k_lengths=[12, 5])
    kp = torch.ones(2, 1, 1, 12, dtype=torch.bool)
    kp[1, ..., 5:] = False
    check(out, F.scaled_dot_product_attention(q, k, v, attn_mask=kp), 1e-12)
    slopes = [0.5, 0.25]
    alibi = -torch.tensor(slopes, dtype=torch.float64)[:, None, None] * (i[:, None] - i[None, :]).abs()
    check(attn_sdpa(q, k, v, alibi_slopes=slopes), F.scaled_dot_product_attention(q, k, v, attn_mask=alibi), 1e-12)


@pytest.mark.parametrize("use_out", [True, False], ids=["out_and_lse", "lse_only"])
def test_lse_gradient(use_out):
    # GQA (4 query heads on 2 kv heads), causal with a longer key side: torch's math is the oracle.
    q = torch.randn(2, 4, 7, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, 9, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 2, 9, 5, dtype=torch.float64, requires_grad=True)
    w_out, w_lse = torch.randn(2, 4, 7, 5, dtype=torch.float64), torch.randn(2, 4, 7, dtype=torch.float64)
    out, lse = attn_sdpa(q, k, v, is_causal=True, enable_gqa=True, return_lse=True)
    loss = (lse * w_lse).sum() + ((out * w_out).sum() if use_out else 0.0)
    got = torch.autograd.grad(loss, (q, k, v), allow_unused=True)
    kr, vr = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    keep = torch.ones(7, 9, dtype=torch.bool).tril()  # top-left causal, torch's is_causal
    s = ((q @ kr.transpose(-1, -2)) / 8 ** 0.5).masked_fill(~keep, float("-inf"))
    lse_ref = s.logsumexp(-1)
    out_ref = torch.softmax(s, -1) @ vr
    check(lse, lse_ref, 1e-12)
    loss_ref = (lse_ref * w_lse).sum() + ((out_ref * w_out).sum() if use_out else 0.0)
    want = torch.autograd.grad(loss_ref, (q, k, v), allow_unused=True)
    for name, a, b in zip("qkv", got, want):
        if b is None:  # v does not reach lse
            assert a is None or a.abs().max().item() == 0.0, name
            continue
        check(a, b, 1e-10)  # fp64 end to end: the f64 lse keeps the gradients fp64-exact


def test_bad_inputs_raise_value_error():
    q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        attn_sdpa(q, k, k)
    with pytest.raises(ValueError, match="expected a divisor of"):
        attn_sdpa(q, torch.randn(1, 3, 5, 8), torch.randn(1, 3, 5, 8), enable_gqa=True)
    with pytest.raises(ValueError, match="does not broadcast"):
        attn_sdpa(q, q, q, attn_mask=torch.ones(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="dropout_p"):
        attn_sdpa(q, q, q, dropout_p=1.0)
    with pytest.raises(TypeError, match="dtype"):
        attn_sdpa(q, q.double(), q)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int64])
def test_integer_attn_mask_names_its_dtype(dtype):
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(TypeError, match=rf"attn_mask: has dtype {dtype}, expected torch.bool .* or a floating dtype"):
        attn_sdpa(q, q, q, attn_mask=torch.ones(5, 5, dtype=dtype))


def dropped_probs(q, k, p, seed):
    """The post-dropout probabilities attn used: v = identity makes out = P∘M/(1-p)."""
    B, H, L, E = q.shape
    S = k.shape[2]
    eye = torch.eye(S, dtype=q.dtype).expand(B, H, S, S)
    torch.manual_seed(seed)
    return attn_sdpa(q, k, eye, dropout_p=p)


def test_dropout_keep_rate_reproducibility_and_gradients():
    p, seed = 0.3, 1234
    q, k, v = (torch.randn(1, 2, 24, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    A = dropped_probs(q.detach(), k.detach(), p, seed)
    keep = A != 0
    assert abs(keep.double().mean().item() - (1 - p)) < 0.05
    torch.manual_seed(seed)
    out = attn_sdpa(q, k, v, dropout_p=p)
    torch.manual_seed(seed)
    assert torch.equal(out, attn_sdpa(q, k, v, dropout_p=p))  # manual_seed reproduces
    assert not torch.equal(out, attn_sdpa(q, k, v, dropout_p=p))  # the generator moved on
    # Same mask, explicit math: softmax(S)∘M/(1-p)·V, differentiated by torch.
    P = torch.softmax((q @ k.transpose(-1, -2)) / 8 ** 0.5, dim=-1)
    want = (P * keep / (1 - p)) @ v
    check(out, want, 1e-12)
    dout = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), dout), torch.autograd.grad(want, (q, k, v), dout)):
        check(a, b, 1e-6)


def test_gradcheck_fp64():
    q = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 1, 6, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 1, 6, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    fn = lambda q, k, v, b: attn_sdpa(q, k, v, attn_mask=b, is_causal=True, enable_gqa=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v, bias), atol=1e-5, rtol=1e-4)


def test_torch_compile_fullgraph_and_export():
    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))

    def f(q, k, v):
        return attn_sdpa(q * 2, k, v, is_causal=True).sum(-1)

    try:
        compiled = torch.compile(f, fullgraph=True)
        got = compiled(q, k, v)
    except Exception as e:  # noqa: BLE001
        if "compiler" in str(e).lower() or "inductor" in type(e).__name__.lower():
            pytest.skip(f"torch.compile backend unavailable: {e}")
        raise
    check(got, f(q, k, v), 1e-6)
    qg = q.clone().requires_grad_()
    compiled(qg, k, v).sum().backward()
    qe = q.clone().requires_grad_()
    f(qe, k, v).sum().backward()
    check(qg.grad, qe.grad, 1e-5)

    class M(torch.nn.Module):
        def forward(self, q, k, v):
            return f(q, k, v)

    ep = torch.export.export(M(), (q, k, v))
    assert "attn.sdpa_fwd" in str(ep.graph)
    check(ep.module()(q, k, v), f(q, k, v), 1e-6)


@pytest.mark.parametrize("extra", ["causal", "bias_and_lengths", "bool_mask_and_probs"])
def test_opcheck(extra):
    from attn.torch import _FWD, _sdpa_fwd

    q, k, v = (torch.randn(1, 2, 5, 8, requires_grad=True) for _ in range(3))
    named = {
        "causal": dict(causal=True, alignment="top_left"),
        "bias_and_lengths": dict(bias=torch.randn(1, 2, 5, 5, requires_grad=True), k_lengths=torch.tensor([4])),
        "bool_mask_and_probs": dict(bool_mask=torch.rand(5, 5) < 0.7, need_probs=True, window_left=2),
    }[extra]
    args, kwargs = _FWD.split(dict(q=q, k=k, v=v, **named))  # by name: no positions written here
    torch.library.opcheck(_sdpa_fwd, args, kwargs)
