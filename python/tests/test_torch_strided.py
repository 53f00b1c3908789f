"""attn.torch.strided_attention and StridedAttention against torch's SDPA given the equivalent
dense bool mask (built here from the documented rule), forward and backward, fp64 and fp32, and
the errors."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import attn.torch as at  # noqa: E402
from attn.torch import StridedAttention, get_attention  # noqa: E402


def dense_mask(L, S, stride, window, causal, g, bottom_right=False):
    """True = attend: (p − j) mod stride = 0, |p − j| <= window, j < g or 0 <= p < g; causal: j <= p."""
    p = torch.arange(L)[:, None] + (S - L if bottom_right else 0)
    j = torch.arange(S)[None, :]
    keep = ((p - j) % stride == 0) | ((p - j).abs() <= window) | (j < g) | ((p >= 0) & (p < g))
    return keep & (j <= p) if causal else keep


def qkv(B, Hq, Hkv, L, S, D, dtype):
    return [torch.randn(B, h, n, D, dtype=dtype, requires_grad=True) for h, n in ((Hq, L), (Hkv, S), (Hkv, S))]


def reference(q, k, v, mask):
    g = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), attn_mask=mask)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("N,stride,window,causal,g", [
    (1, 3, 0, False, 0), (7, 3, 5, True, 0), (63, 64, 5, False, 2), (65, 3, 0, True, 2), (127, 3, 5, False, 0),
    (127, 64, 0, True, 0), (65, 1, 5, False, 0)])
def test_matches_sdpa_with_dense_mask(dtype, tol, N, stride, window, causal, g):
    torch.manual_seed(N * 100 + stride)
    q, k, v = qkv(2, 4, 2, N, N, 16, dtype)
    out = at.strided_attention(q, k, v, stride, window, causal, g)
    ref = reference(q, k, v, dense_mask(N, N, stride, window, causal, g))
    assert (out - ref).abs().max().item() <= tol
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    for name, a, b in zip("qkv", grads, ref_grads):
        assert (a - b).abs().max().item() <= tol * (1 + b.abs().max().item()), "d" + name


@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
def test_cross_lengths(alignment):
    torch.manual_seed(3)
    q, k, v = qkv(1, 2, 1, 7, 65, 8, torch.float64)
    out = at.strided_attention(q, k, v, 3, 5, True, 2, alignment=alignment)
    ref = reference(q, k, v, dense_mask(7, 65, 3, 5, True, 2, alignment == "bottom_right"))
    # Rows that see no key: attn gives 0 where torch's SDPA gives NaN.
    ref = torch.nan_to_num(ref, nan=0.0)
    assert (out - ref).abs().max().item() <= 1e-12


@pytest.mark.parametrize("causal", [False, True])
def test_key_padding_matches_dense(causal):
    torch.manual_seed(11 + causal)
    B, N = 3, 65
    q, k, v = qkv(B, 4, 2, N, N, 16, torch.float64)
    lengths = [N, N - 7, 3]
    padding = torch.arange(N)[None, :] >= torch.tensor(lengths)[:, None]  # True = padding
    out = at.strided_attention(q, k, v, 4, 3, causal, 1, key_padding_mask=padding)
    mask = dense_mask(N, N, 4, 3, causal, 1)[None, None] & ~padding[:, None, None, :]
    ref = reference(q, k, v, mask)
    assert (out - ref).abs().max().item() <= 1e-12
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    for name, a, b in zip("qkv", grads, ref_grads):
        assert (a - b).abs().max().item() <= 1e-11 * (1 + b.abs().max().item()), "d" + name
    assert grads[1][2, :, 3:].abs().max().item() == 0 and grads[2][2, :, 3:].abs().max().item() == 0


def test_module_key_padding_equals_composition():
    torch.manual_seed(13)
    E, H, L = 32, 4, 21
    m = StridedAttention(E, H, stride=4, window=2).double()
    x = torch.randn(2, L, E, dtype=torch.float64, requires_grad=True)
    keep = torch.arange(L)[None, :] < torch.tensor([L, 12])[:, None]  # True = attend
    y = m(x, mask=keep[:, None, None, :])
    hd = E // H
    q, k, v = (F.linear(x, p.weight, p.bias).view(2, L, H, hd).transpose(1, 2) for p in (m.q_proj, m.k_proj, m.v_proj))
    ctx = reference(q, k, v, dense_mask(L, L, 4, 2, False, 0)[None, None] & keep[:, None, None, :])
    ref = F.linear(ctx.transpose(1, 2).reshape(2, L, E), m.out_proj.weight, m.out_proj.bias)
    assert (y - ref).abs().max().item() <= 1e-12
    dy = torch.randn_like(y)
    assert (torch.autograd.grad(y, x, dy)[0] - torch.autograd.grad(ref, x, dy)[0]).abs().max().item() <= 1e-11


def test_key_padding_errors():
    q, k, v = qkv(2, 2, 2, 5, 5, 4, torch.float32)
    with pytest.raises(ValueError, match="key_padding_mask: pads keys before the end of a row, expected right padding"):
        at.strided_attention(q, k, v, 2, key_padding_mask=torch.tensor([[True, False, False, False, False]] * 2))
    with pytest.raises(ValueError, match=r"key_padding_mask: has shape \[2, 4\], expected \[B, S_kv\] = \[2, 5\]"):
        at.strided_attention(q, k, v, 2, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask: has dtype torch.int64, expected torch.bool"):
        at.strided_attention(q, k, v, 2, key_padding_mask=torch.zeros(2, 5, dtype=torch.int64))
    m = StridedAttention(8, 2, stride=2)
    with pytest.raises(ValueError, match="mask: has shape \\[1, 1, 1, 5\\] and dtype torch.float32, expected None or key padding"):
        m(torch.randn(1, 5, 8), mask=torch.zeros(1, 1, 1, 5))


def test_bf16_close_to_fp32():
    torch.manual_seed(5)
    q, k, v = qkv(1, 2, 2, 127, 127, 32, torch.float32)
    ref = at.strided_attention(q, k, v, 3, 5, True)
    qb, kb, vb = (t.detach().bfloat16().requires_grad_() for t in (q, k, v))
    out = at.strided_attention(qb, kb, vb, 3, 5, True)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max().item() <= 3e-2
    dout = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (qb, kb, vb), dout.bfloat16())
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    for name, a, b in zip("qkv", grads, ref_grads):
        assert a.dtype == torch.bfloat16
        assert (a.float() - b).abs().max().item() <= 5e-2 * (1 + b.abs().max().item()), "d" + name


def test_module_equals_composition():
    torch.manual_seed(7)
    E, H = 32, 4
    m = StridedAttention(E, H, stride=4, window=2, num_groups=2, apply_causal_mask=True, global_tokens=1).double()
    assert type(get_attention("strided", E, H, stride=4)) is StridedAttention
    x = torch.randn(2, 21, E, dtype=torch.float64, requires_grad=True)
    y = m(x)
    hd = E // H
    q = F.linear(x, m.q_proj.weight, m.q_proj.bias).view(2, 21, H, hd).transpose(1, 2)
    k = F.linear(x, m.k_proj.weight, m.k_proj.bias).view(2, 21, 2, hd).transpose(1, 2)
    v = F.linear(x, m.v_proj.weight, m.v_proj.bias).view(2, 21, 2, hd).transpose(1, 2)
    ctx = reference(q, k, v, dense_mask(21, 21, 4, 2, True, 1)).transpose(1, 2).reshape(2, 21, E)
    ref = F.linear(ctx, m.out_proj.weight, m.out_proj.bias)
    assert (y - ref).abs().max().item() <= 1e-12
    dy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, m.q_proj.weight), dy)
    rx, rw = torch.autograd.grad(ref, (x, m.q_proj.weight), dy)
    assert (gx - rx).abs().max().item() <= 1e-11 and (gw - rw).abs().max().item() <= 1e-11


def test_errors():
    q, k, v = qkv(1, 2, 2, 5, 5, 4, torch.float32)
    with pytest.raises(ValueError, match="stride: = 0, expected an int >= 1"):
        at.strided_attention(q, k, v, 0)
    with pytest.raises(ValueError, match="window: = -1, expected an int >= 0"):
        at.strided_attention(q, k, v, 2, -1)
    k6, v6 = torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4)
    with pytest.raises(ValueError, match="params.alignment: is not set, but Nq = 5 != Nk = 6"):
        at.strided_attention(q, k6, v6, 2)
    with pytest.raises(ValueError, match="stride: = 0"):
        StridedAttention(8, 2, stride=0)
    m = StridedAttention(8, 2, stride=2)
    x = torch.randn(1, 5, 8)
    with pytest.raises(ValueError, match="mask: has shape"):
        m(x, mask=torch.ones(1, 1, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="need_weights: is True"):
        m(x, need_weights=True)
    with pytest.raises(ValueError, match="context/kv: StridedAttention is self-attention"):
        m(x, context=torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="dropout: = 0.1, expected 0.0"):
        StridedAttention(8, 2, stride=2, dropout=0.1)
