"""attn.torch.linear_attention / linear_attention_step against the formulas written out in torch
(fp64), torch.autograd.gradcheck, the recurrent decode, and FAVOR+ against softmax attention."""

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import attn.torch as at  # noqa: E402
from attn.linear import favor_projection  # noqa: E402


def phi(x, feature_map, omega=None):
    if feature_map == "elu":
        return F.elu(x) + 1
    D, m = x.shape[-1], omega.shape[0]
    u = x @ omega.to(x.dtype).T / D ** 0.25
    return torch.exp(u - (x * x).sum(-1, keepdim=True) / (2 * math.sqrt(D))) / math.sqrt(m)


def formula(q, k, v, feature_map, causal, kpm=None, omega=None, eps=1e-6):
    """out_i = Σ_j a_ij v_j / (Σ_j a_ij + eps), a_ij = φ(q_i)·φ(k_j) over visible, unpadded keys."""
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    a = phi(q, feature_map, omega) @ phi(k, feature_map, omega).transpose(-1, -2)
    L, S = q.shape[2], k.shape[2]
    if causal:
        keep = torch.arange(S)[None, :] <= torch.arange(L)[:, None] + (S - L)
        a = a * keep
    if kpm is not None:
        a = a * (~kpm)[:, None, None, :]
    return (a @ v) / (a.sum(-1, keepdim=True) + eps)


def qkv(B, Hq, Hkv, L, S, D, Dv, dtype=torch.float64, scale=1.0, grad=False):
    def t(*shape):
        return (scale * torch.randn(*shape, dtype=dtype)).requires_grad_(grad)
    return t(B, Hq, L, D), t(B, Hkv, S, D), t(B, Hkv, S, Dv)


CASES = [  # B, Hq, Hkv, L, S, D, Dv, causal, padded
    (1, 1, 1, 1, 1, 1, 1, False, False),
    (2, 4, 2, 7, 7, 5, 3, True, False),
    (2, 2, 1, 63, 65, 16, 24, False, True),
    (1, 3, 3, 130, 130, 64, 64, True, True),
    (1, 2, 1, 40, 70, 8, 8, True, False),
]


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}H{}x{}L{}S{}D{}Dv{}-c{}-p{}".format(*c))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_forward_matches_formula(case, feature_map, dtype):
    B, Hq, Hkv, L, S, D, Dv, causal, padded = case
    q, k, v = qkv(B, Hq, Hkv, L, S, D, Dv, dtype, scale=0.5)
    kpm = (torch.rand(B, S) < 0.3) if padded else None
    omega = favor_projection(20, D, 7) if feature_map == "favor" else None
    got = at.linear_attention(q, k, v, feature_map, causal, key_padding_mask=kpm, projection=omega)
    want = formula(q.double(), k.double(), v.double(), feature_map, causal, kpm, omega)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert got.dtype == dtype and got.shape == (B, Hq, L, Dv)
    assert (got.double() - want).abs().max().item() < tol * (1 + want.abs().max().item())


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck(feature_map, causal):
    q, k, v = qkv(1, 2, 1, 6, 7, 4, 3, scale=0.6, grad=True)
    kpm = torch.tensor([[False, True, False, False, False, True, False]])
    omega = favor_projection(5, 4, 3) if feature_map == "favor" else None
    fn = lambda q, k, v: at.linear_attention(q, k, v, feature_map, causal, key_padding_mask=kpm,  # noqa: E731
                                             projection=omega)
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_f32_gradients_match_the_formula_and_bshd_views():
    q, k, v = qkv(2, 4, 2, 50, 50, 16, 8, torch.float32, scale=0.5)
    q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_() for t in (q, k, v))  # BSHD strides
    out = at.linear_attention(q, k, v, "elu", True)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    q2, k2, v2 = (t.detach().double().requires_grad_() for t in (q, k, v))
    (formula(q2, k2, v2, "elu", True) * w.double()).sum().backward()
    for a, b in ((q.grad, q2.grad), (k.grad, k2.grad), (v.grad, v2.grad)):
        assert (a.double() - b).abs().max().item() < 1e-4 * (1 + b.abs().max().item())


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_step_decode_equals_causal_forward(feature_map):
    B, Hq, Hkv, N, D, Dv = 2, 4, 2, 67, 16, 12
    q, k, v = qkv(B, Hq, Hkv, N, N, D, Dv, torch.float32, scale=0.5)
    kw = dict(seed=11, num_features=24) if feature_map == "favor" else {}
    omega = favor_projection(24, D, 11) if feature_map == "favor" else None
    full = at.linear_attention(q, k, v, feature_map, True, projection=omega)
    state, outs = None, []
    for t in range(N):
        o, state = at.linear_attention_step(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], state,
                                            feature_map, **kw)
        outs.append(o)
    assert (torch.cat(outs, 2) - full).abs().max().item() < 1e-5
    # multi-token steps, and the old state is left as it was
    S0, z0 = state[0].clone(), state[1].clone()
    o2, _ = at.linear_attention_step(q[:, :, :5], k[:, :, :5], v[:, :, :5], state, feature_map, **kw)
    assert torch.equal(state[0], S0) and torch.equal(state[1], z0)
    o3, st = at.linear_attention_step(q[:, :, :30], k[:, :, :30], v[:, :, :30], None, feature_map, **kw)
    o4, _ = at.linear_attention_step(q[:, :, 30:], k[:, :, 30:], v[:, :, 30:], st, feature_map, **kw)
    assert (torch.cat([o3, o4], 2) - full).abs().max().item() < 1e-5


def test_favor_approximates_softmax_attention_better_with_more_features():
    torch.manual_seed(1)
    errs = {}
    for m in (16, 256):
        e = 0.0
        for seed in range(6):
            q, k, v = qkv(1, 2, 2, 32, 32, 16, 8, scale=0.4)
            exact = F.scaled_dot_product_attention(q, k, v)
            got = at.linear_attention(q, k, v, "favor", num_features=m, seed=seed)
            e += ((got - exact).norm() / exact.norm()).item() / 6
        errs[m] = e
    assert errs[256] < errs[16] / 2.5, errs


def test_seeds():
    q, k, v = qkv(1, 2, 2, 9, 9, 8, 8, torch.float32)
    a = at.linear_attention(q, k, v, "favor", seed=5)
    assert torch.equal(a, at.linear_attention(q, k, v, "favor", seed=5))
    assert not torch.equal(a, at.linear_attention(q, k, v, "favor", seed=6))
    torch.manual_seed(3)
    b = at.linear_attention(q, k, v, "favor")
    c = at.linear_attention(q, k, v, "favor")  # a new draw
    torch.manual_seed(3)
    assert torch.equal(b, at.linear_attention(q, k, v, "favor")) and not torch.equal(b, c)


def test_bf16_inputs():
    q, k, v = qkv(1, 2, 2, 33, 33, 16, 16, torch.bfloat16, scale=0.5)
    got = at.linear_attention(q, k, v, "elu", True)
    assert got.dtype == torch.bfloat16
    want = formula(q.double(), k.double(), v.double(), "elu", True)
    assert (got.double() - want).abs().max().item() < 2e-2


def test_errors():
    q, k, v = qkv(1, 2, 2, 4, 4, 8, 8, torch.float32)
    with pytest.raises(ValueError, match="feature_map"):
        at.linear_attention(q, k, v, "relu")
    with pytest.raises(ValueError, match="FAVOR"):
        at.linear_attention(q, k, v, "elu", num_features=8)
    with pytest.raises(ValueError, match="seed= or projection="):
        at.linear_attention_step(q, k, v, None, "favor")
    with pytest.raises(TypeError, match="key_padding_mask"):
        at.linear_attention(q, k, v, key_padding_mask=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="key_padding_mask"):
        at.linear_attention(q, k, v, key_padding_mask=torch.zeros(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="head dims"):
        at.linear_attention(q, k[..., :4], v)
