"""fp64 end to end: float64 inputs carry a float64 lse through the core binding and attn.torch, so
fp64 gradients stay fp64-exact however large the scores (docs/contract.md §8)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import attn  # noqa: E402
from attn.torch import scaled_dot_product_attention as attn_sdpa  # noqa: E402


def _qkv(dtype, B=2, Hq=4, Hkv=2, L=7, S=9, E=8, Ev=5):
    q = torch.randn(B, Hq, L, E, dtype=dtype, requires_grad=True)
    k = torch.randn(B, Hkv, S, E, dtype=dtype, requires_grad=True)
    v = torch.randn(B, Hkv, S, Ev, dtype=dtype, requires_grad=True)
    return q, k, v


def _math_path(q, k, v, mask, causal):
    """The reference: torch's math path written out in float64 (top-left causal, as torch)."""
    g = q.shape[1] // k.shape[1]
    kr, vr = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    s = (q @ kr.transpose(-1, -2)) / q.shape[-1] ** 0.5 + mask
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        s = s.masked_fill(~keep, float("-inf"))
    return torch.softmax(s, -1) @ vr, s.logsumexp(-1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=["f64", "f32", "bf16"])
def test_lse_dtype_follows_the_inputs(dtype):
    q, k, v = _qkv(dtype)
    out, lse = attn_sdpa(q, k, v, enable_gqa=True, return_lse=True)
    assert out.dtype == dtype
    assert lse.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("causal", [False, True], ids=["plain", "causal"])
@pytest.mark.parametrize("c", [-1e4, -1e3, 0.0, 1e3, 1e4])
def test_fp64_gradients_match_torch_math_path_for_shifted_scores(c, causal):
    q, k, v = _qkv(torch.float64)
    mask = torch.full((7, 9), c, dtype=torch.float64)
    w_out, w_lse = torch.randn(2, 4, 7, 5, dtype=torch.float64), torch.randn(2, 4, 7, dtype=torch.float64)
    out, lse = attn_sdpa(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True, return_lse=True)
    got = torch.autograd.grad((out * w_out).sum() + (lse * w_lse).sum(), (q, k, v))
    out_ref, lse_ref = _math_path(q, k, v, mask, causal)
    want = torch.autograd.grad((out_ref * w_out).sum() + (lse_ref * w_lse).sum(), (q, k, v))
    assert (out - out_ref).abs().max().item() <= 1e-11  # s + c rounds to ulp(1e4) ≈ 1.8e-12
    assert (lse - lse_ref).abs().max().item() <= 1e-10
    for name, a, b in zip("qkv", got, want):
        err = (a - b).abs().max().item()
        assert err <= 1e-10, f"d{name}: max abs error {err:.3g} with c = {c}"


def test_gradcheck_with_out_and_lse_in_the_loss():
    q, k, v = _qkv(torch.float64, B=1, Hq=2, Hkv=1, L=5, S=6, E=4, Ev=3)
    bias = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)

    def fn(q, k, v, b):
        return attn_sdpa(q, k, v, attn_mask=b, is_causal=True, enable_gqa=True, return_lse=True)

    assert torch.autograd.gradcheck(fn, (q, k, v, bias))


def test_core_binding_lse_dtype_is_checked():
    q = np.random.randn(1, 2, 4, 8)
    out = np.empty_like(q)
    with pytest.raises(TypeError, match=r"lse: has dtype f32, expected f64"):
        attn.sdpa_forward(out, q, q, q, lse=np.empty((1, 2, 4), np.float32))
    lse = np.empty((1, 2, 4), np.float64)
    attn.sdpa_forward(out, q, q, q, lse=lse)
    s = np.einsum("bhid,bhjd->bhij", q, q) / np.sqrt(8)
    m = s.max(-1)
    np.testing.assert_allclose(lse, m + np.log(np.exp(s - m[..., None]).sum(-1)), rtol=0, atol=1e-13)
    q32 = q.astype(np.float32)
    with pytest.raises(TypeError, match=r"lse: has dtype f64, expected f32"):
        attn.sdpa_forward(np.empty_like(q32), q32, q32, q32, lse=lse)
