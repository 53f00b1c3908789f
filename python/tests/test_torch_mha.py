"""attn.torch.MultiheadAttention against torch.nn.MultiheadAttention (same weights)."""

import pytest

torch = pytest.importorskip("torch")

from attn.torch import MultiheadAttention  # noqa: E402


def pair(E, H, dtype=torch.float64, **kw):
    ref = torch.nn.MultiheadAttention(E, H, dtype=dtype, **kw)
    ours = MultiheadAttention(E, H, dtype=dtype, **kw)
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def close(a, b, tol):
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err < tol, f"max abs error {err:.3g}"


CASES = [
    dict(),
    dict(batch_first=True),
    dict(kdim=6, vdim=10),
    dict(add_bias_kv=True, add_zero_attn=True, batch_first=True),
    dict(bias=False),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("masks", ["none", "bool", "float", "per_head_bool"])
def test_matches_torch(kw, masks, dtype):
    E, H, N, L, S = 16, 4, 2, 7, 9
    ours, ref = pair(E, H, dtype, **kw)
    bf = kw.get("batch_first", False)
    shape = lambda n, e: (N, n, e) if bf else (n, N, e)  # noqa: E731
    query = torch.randn(shape(L, E), dtype=dtype, requires_grad=True)
    key = torch.randn(shape(S, kw.get("kdim", E)), dtype=dtype, requires_grad=True)
    value = torch.randn(shape(S, kw.get("vdim", E)), dtype=dtype, requires_grad=True)
    attn_mask = kpm = None
    if masks == "bool":
        attn_mask = torch.rand(L, S) < 0.3
        attn_mask[:, 0] = False
        kpm = torch.zeros(N, S, dtype=torch.bool)
        kpm[1, -2:] = True
    elif masks == "float":
        attn_mask = torch.randn(L, S, dtype=dtype)
        kpm = torch.zeros(N, S, dtype=dtype)
        kpm[0, -3:] = float("-inf")
    elif masks == "per_head_bool":
        attn_mask = torch.rand(N * H, L, S) < 0.3
        attn_mask[..., 0] = False
    tol = 1e-9 if dtype == torch.float64 else 2e-5
    for need_weights, average in ((True, True), (True, False), (False, True)):
        got, gw = ours(query, key, value, key_padding_mask=kpm, attn_mask=attn_mask, need_weights=need_weights,
                       average_attn_weights=average)
        want, ww = ref(query, key, value, key_padding_mask=kpm, attn_mask=attn_mask, need_weights=need_weights,
                       average_attn_weights=average)
        close(got, want, tol)
        assert (gw is None) == (ww is None)
        if gw is not None:
            close(gw, ww, tol)
    dout = torch.randn_like(want)
    params = [p for p in ours.parameters()]
    g_got = torch.autograd.grad(got, [query, key, value, *params], dout)
    g_want = torch.autograd.grad(want, [query, key, value, *ref.parameters()], dout)
    grad_tol = 1e-6 if dtype == torch.float64 else 2e-4  # the module path (docs/contract.md §8: f64 inputs carry an f64 lse)
    for a, b in zip(g_got, g_want):
        close(a, b, grad_tol)


def test_unbatched_and_is_causal_alone():
    ours, ref = pair(8, 2)
    x = torch.randn(5, 8, dtype=torch.float64)
    got, w = ours(x, x, x, is_causal=True)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # torch: True = blocked
    want, ww = ref(x, x, x, attn_mask=causal)
    close(got, want, 1e-12)
    close(w, ww, 1e-12)


def test_state_dict_round_trip_both_ways():
    ours, ref = pair(16, 4)
    ours2 = MultiheadAttention(16, 4, dtype=torch.float64)
    ref.load_state_dict(ours2.state_dict())  # ours -> torch
    x = torch.randn(3, 2, 16, dtype=torch.float64)
    close(ours2(x, x, x)[0], ref(x, x, x)[0], 1e-12)


def test_gqa_and_mqa_modules():
    E, H = 16, 4
    for hkv in (2, 1):
        m = MultiheadAttention(E, H, num_kv_heads=hkv, batch_first=True, dtype=torch.float64)
        assert m.in_proj_weight.shape == (E + 2 * hkv * E // H, E)
        x = torch.randn(2, 6, E, dtype=torch.float64, requires_grad=True)
        out, w = m(x, x, x, average_attn_weights=False)
        assert out.shape == (2, 6, E) and w.shape == (2, H, 6, 6)
        # The same module written as MHA with k/v heads repeated.
        d = E // H
        wq, wk, wv = m.in_proj_weight.detach().split([E, hkv * d, hkv * d])
        bq, bk, bv = m.in_proj_bias.detach().split([E, hkv * d, hkv * d])
        rep = lambda t: t.view(hkv, d, *t.shape[1:]).repeat_interleave(H // hkv, 0).reshape(E, *t.shape[1:])  # noqa: E731
        mha = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
        sd = {"in_proj_weight": torch.cat([wq, rep(wk), rep(wv)]), "in_proj_bias": torch.cat([bq, rep(bk), rep(bv)]),
              "out_proj.weight": m.out_proj.weight.detach(), "out_proj.bias": m.out_proj.bias.detach()}
        mha.load_state_dict(sd)
        close(out, mha(x, x, x)[0], 1e-12)
        out.sum().backward()
        with pytest.raises(RuntimeError, match="size mismatch for in_proj_weight"):
            torch.nn.MultiheadAttention(E, H).load_state_dict(m.state_dict())
        with pytest.raises(ValueError, match="num_kv_heads"):
            m.load_state_dict(mha.state_dict())


def test_dropout_weights_are_post_dropout():
    m = MultiheadAttention(8, 2, dropout=0.5, batch_first=True, dtype=torch.float64)
    x = torch.randn(1, 32, 8, dtype=torch.float64)
    m.train()
    torch.manual_seed(3)
    out, w = m(x, x, x, average_attn_weights=False)
    kept = (w != 0).double().mean().item()
    assert abs(kept - 0.5) < 0.05
    # Kept weights are scaled by 1/(1-p): each row sums to about 1 on average, not exactly.
    assert abs(w.sum(-1).mean().item() - 1) < 0.1
    m.eval()
    _, w = m(x, x, x)
    close(w.sum(-1), torch.ones(1, 32, dtype=torch.float64), 1e-12)


@pytest.mark.parametrize("average", [True, False], ids=["averaged", "per_head"])
@pytest.mark.parametrize("masks", ["none", "float_and_padding"])
def test_gradients_through_weights(average, masks):
    E, H, N, L, S = 16, 4, 2, 7, 9
    ours, ref = pair(E, H, torch.float64, batch_first=True)
    query = torch.randn(N, L, E, dtype=torch.float64, requires_grad=True)
    key = torch.randn(N, S, E, dtype=torch.float64, requires_grad=True)
    attn_mask = kpm = None
    if masks != "none":
        attn_mask = torch.randn(L, S, dtype=torch.float64)
        kpm = torch.zeros(N, S, dtype=torch.float64)
        kpm[1, -3:] = float("-inf")
    got, gw = ours(query, key, key, key_padding_mask=kpm, attn_mask=attn_mask, average_attn_weights=average)
    want, ww = ref(query, key, key, key_padding_mask=kpm, attn_mask=attn_mask, average_attn_weights=average)
    dout, dw = torch.randn_like(want), torch.randn_like(ww)
    wrt_got = [query, key, *ours.parameters()]
    wrt_want = [query, key, *ref.parameters()]
    for loss_got, loss_want in (((gw * dw).sum(), (ww * dw).sum()),  # weights only
                                ((got * dout).sum() + (gw * dw).sum(), (want * dout).sum() + (ww * dw).sum())):
        g_got = torch.autograd.grad(loss_got, wrt_got, retain_graph=True, allow_unused=True)
        g_want = torch.autograd.grad(loss_want, wrt_want, retain_graph=True, allow_unused=True)
        for a, b in zip(g_got, g_want):
            if b is None:  # out_proj does not reach the weights
                assert a is None or a.abs().max().item() == 0.0
                continue
            close(a, b, 1e-6)


def test_gradients_through_dropped_weights_raise():
    m = MultiheadAttention(8, 2, dropout=0.5, batch_first=True, dtype=torch.float64)
    x = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    _, w = m(x, x, x)
    with pytest.raises(ValueError, match="dropout_p = 0"):
        w.sum().backward()


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_kv_heads"):
        MultiheadAttention(16, 4, num_kv_heads=3)
    m = MultiheadAttention(16, 4)
    x = torch.randn(5, 2, 16)
    with pytest.raises(ValueError, match="^attn_mask: has shape"):
        m(x, x, x, attn_mask=torch.zeros(3, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="^key_padding_mask: has shape"):
        m(x, x, x, key_padding_mask=torch.zeros(5, 2, dtype=torch.bool))


def test_mismatched_key_value_shapes_raise():
    m = MultiheadAttention(32, 4, batch_first=True)
    q = torch.randn(2, 6, 32)
    kv = torch.randn(3, 6, 32)
    with pytest.raises(ValueError, match=r"key: has shape \[3, 6, 32\].*query has shape \[2, 6, 32\]"):
        m(q, kv, kv)  # a batch of 3 keys for 2 queries (torch raises; reshaping would mix rows)
    with pytest.raises(ValueError, match=r"value: has shape \[2, 5, 32\].*key has shape \[2, 6, 32\]"):
        m(q, q, torch.randn(2, 5, 32))
    with pytest.raises(ValueError, match=r"key: has shape \[2, 6, 8\].*kdim = 32"):
        m(q, torch.randn(2, 6, 8), q)
    m = MultiheadAttention(16, 4, kdim=6, vdim=10)  # [L, N, E]
    q, k, v = torch.randn(5, 2, 16), torch.randn(7, 2, 6), torch.randn(7, 2, 10)
    assert m(q, k, v)[0].shape == (5, 2, 16)
    with pytest.raises(ValueError, match=r"value: has shape \[7, 2, 6\].*vdim = 10"):
        m(q, k, k)
    with pytest.raises(ValueError, match=r"key: has shape \[7, 3, 6\].*query has shape \[5, 2, 16\]"):
        m(q, torch.randn(7, 3, 6), torch.randn(7, 3, 10))
    with pytest.raises(ValueError, match=r"query: has shape \[5, 2, 8\].*embed_dim = 16"):
        m(torch.randn(5, 2, 8), k, v)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.int8])
@pytest.mark.parametrize("which", ["attn_mask", "key_padding_mask"])
def test_integer_masks_raise(which, dtype):
    m = MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(2, 5, 16)
    mask = torch.zeros((5, 5) if which == "attn_mask" else (2, 5), dtype=dtype)
    with pytest.raises(TypeError, match=rf"{which}: has dtype {dtype}, expected torch.bool .* or a floating dtype"):
        m(x, x, x, **{which: mask})


def test_wrong_rank_inputs_raise():
    m = MultiheadAttention(16, 4, batch_first=True)
    x4 = torch.randn(2, 3, 5, 16)
    layouts = r"expected \(L, E\) unbatched, \(B, L, E\) with batch_first=True or \(L, B, E\) with batch_first=False"
    with pytest.raises(ValueError, match=r"query: has shape \[2, 3, 5, 16\].*" + layouts):
        m(x4, x4, x4)
    with pytest.raises(ValueError, match=r"query: has shape \[16\].*" + layouts):
        m(torch.randn(16), torch.randn(16), torch.randn(16))
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match=r"key: has shape \[5, 16\], but query has shape \[2, 5, 16\]"):
        m(x, x[0], x[0])
