"""The seeds' classes (attn.torch.MultiHeadAttention, MultiQueryAttention, GroupQueryAttention,
get_attention) against a float64 torch composition written here: projections, per-head scores, the
mask before the softmax, concat, output projection. Outputs, weights and gradients of x, context,
every parameter and a learnable mask; the cached paths against recomputation; state dicts; errors."""

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import attn.torch  # noqa: E402
from attn._mha_core import AttentionCore  # noqa: E402
from attn.torch import (GroupQueryAttention, KVCache, MultiHeadAttention, MultiQueryAttention,  # noqa: E402
                        ProjectedKV, get_attention)

F64 = torch.float64
GRAD_TOL = 1e-6  # relative; fp64 gradients carry attn's fp32 lse today (docs/contract.md §8)
E, H, B, S, S_KV = 24, 4, 2, 7, 5  # head_dim 6: off every vector width


def make(kind, dtype=F64, **kw):
    cls = {"mha": MultiHeadAttention, "mqa": MultiQueryAttention, "gqa": GroupQueryAttention}[kind]
    m = cls(E, H, 2, dtype=dtype, **kw) if kind == "gqa" else cls(E, H, dtype=dtype, **kw)
    with torch.no_grad():  # random biases too (the zero init would hide a wrong bias)
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, dtype=F64) * 0.4)
    return m


def composition(m, x, context=None, mask=None, causal=False, weights=False, dtype=F64):
    """The attention the seeds write, in torch ops at `dtype`, with the module's parameters."""
    w = {n: p.to(dtype) for n, p in m.named_parameters()}
    lin = lambda t, name: t.to(dtype) @ w[f"{name}.weight"].T + w[f"{name}.bias"]  # noqa: E731
    src = x if context is None else context
    h, g, d = m.num_heads, m.num_groups, m.embed_dim // m.num_heads
    q = lin(x, "q_proj").view(x.shape[0], x.shape[1], h, d).transpose(1, 2)
    k = lin(src, "k_proj").view(src.shape[0], src.shape[1], g, d).transpose(1, 2).repeat_interleave(h // g, 1)
    v = lin(src, "v_proj").view(src.shape[0], src.shape[1], g, d).transpose(1, 2).repeat_interleave(h // g, 1)
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        mm = mask.unsqueeze(1) if mask.dim() == 3 else mask
        s = s.masked_fill(~mm, float("-inf")) if mm.dtype == torch.bool else s + mm.to(dtype)
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    p = torch.softmax(s, dim=-1)
    out = lin((p @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1), "out_proj")
    return (out, p) if weights else out


def close(a, b, tol, what=""):
    assert a.shape == b.shape, f"{what}: {a.shape} != {b.shape}"
    err = (a.double() - b.double()).abs().max().item()
    assert err <= tol * max(1.0, b.double().abs().max().item()), f"{what}: max abs error {err:.3g}"


def masks(kind, s_kv, dtype=F64):
    """The mask forms of the seeds: bool True = attend [S, S_kv], per batch row [B, S, S_kv],
    key padding [B, 1, 1, S_kv], a learnable float mask [B, H, S, S_kv]."""
    if kind == "none":
        return None
    if kind == "bool_2d":
        m = torch.rand(S, s_kv) < 0.6
    elif kind == "bool_per_batch":
        m = torch.rand(B, S, s_kv) < 0.6
    elif kind == "key_padding":
        m = torch.ones(B, 1, 1, s_kv, dtype=torch.bool)
        m[1, ..., -2:] = False
        return m
    else:
        return (torch.randn(B, H, S, s_kv, dtype=dtype) * 0.5).requires_grad_()
    m[..., 0] = True  # no fully masked row (PyTorch's softmax gives NaN there, attn 0)
    return m


@pytest.mark.parametrize("kind", ["mha", "mqa", "gqa"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("mask_kind", ["none", "bool_2d", "bool_per_batch", "key_padding", "learnable_float"])
def test_matches_composition(kind, cross, mask_kind):
    m = make(kind)
    x = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    context = torch.randn(B, S_KV, E, dtype=F64, requires_grad=True) if cross else None
    mask = masks(mask_kind, S_KV if cross else S)
    out, w = m(x, context=context, mask=mask, need_weights=True, average_attn_weights=False)
    want, want_w = composition(m, x, context, mask, weights=True)
    close(out, want, 1e-12, "out")
    close(w, want_w, 1e-12, "weights")
    close(m(x, context=context, mask=mask, need_weights=True)[1], want_w.mean(1), 1e-12, "averaged weights")
    wrt = [x] + ([context] if cross else []) + list(m.parameters()) + ([mask] if mask_kind == "learnable_float" else [])
    dout = torch.randn_like(want)
    got_g = torch.autograd.grad(out, wrt, dout, retain_graph=True)
    want_g = torch.autograd.grad(want, wrt, dout)
    names = ["x"] + (["context"] if cross else []) + [n for n, _ in m.named_parameters()] + ["mask"]
    for a, b_, n in zip(got_g, want_g, names):
        close(a, b_, GRAD_TOL, f"d{n}")


@pytest.mark.parametrize("kind", ["mha", "mqa", "gqa"])
def test_causal_and_weights_through_autograd(kind):
    m = make(kind, apply_causal_mask=True)
    x = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    out, w = m(x, need_weights=True)
    want, want_p = composition(m, x, causal=True, weights=True)
    close(out, want, 1e-12, "out")
    close(w, want_p.mean(1), 1e-12, "weights")
    loss_w = torch.randn_like(w)
    wrt = [x, *m.parameters()]
    for a, b_ in zip(torch.autograd.grad((out.sum() + (w * loss_w).sum()), wrt),
                     torch.autograd.grad((want.sum() + (want_p.mean(1) * loss_w).sum()), wrt)):
        close(a, b_, GRAD_TOL)
    assert isinstance(m(x), torch.Tensor)  # need_weights=False: the output alone


def test_parameter_counts():
    e, h = 64, 8
    d = e // h
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    for bias in (False, True):
        assert count(MultiHeadAttention(e, h, bias=bias)) == 4 * e * e + bias * 4 * e
        assert count(MultiQueryAttention(e, h, bias=bias)) == e * e * (2 + 2 / h) + bias * (2 * e + 2 * d)
        for g in (1, 2, 4, 8):
            assert count(GroupQueryAttention(e, h, g, bias=bias)) == e * e * (2 + 2 * g / h) + bias * (2 * e + 2 * g * d)


def test_get_attention():
    assert type(get_attention("mha", E, H)) is MultiHeadAttention
    assert type(get_attention("mqa", E, H)) is MultiQueryAttention
    m = get_attention("gqa", E, H, num_groups=2, apply_causal_mask=True, dropout=0.1, bias=False)
    assert type(m) is GroupQueryAttention and m.num_groups == 2 and m.apply_causal_mask and m.dropout == 0.1
    assert m.q_proj.bias is None
    assert get_attention("mha", E, H, num_groups=H).num_groups == H
    with pytest.raises(ValueError, match="num_groups: is None.*'gqa'"):
        get_attention("gqa", E, H)
    with pytest.raises(ValueError, match="num_groups: = 2, but attention_type='mha' has 4"):
        get_attention("mha", E, H, num_groups=2)
    with pytest.raises(ValueError, match="num_groups: = 2, but attention_type='mqa' has 1"):
        get_attention("mqa", E, H, num_groups=2)
    with pytest.raises(ValueError, match="stride: is missing, expected stride=<int> for attention_type='strided'"):
        get_attention("strided", E, H)
    with pytest.raises(ValueError, match="attention_type: is 'flash', expected one of 'mha', 'mqa', 'gqa'"):
        get_attention("flash", E, H)


def test_one_implementation_under_both_faces():
    """The torch drop-in and the seeds' classes are the same AttentionCore code: with the same
    weights and the same masks (torch's True = blocked inverted) they give the same result (1e-13)."""
    for g in (H, 2, 1):
        ours = make("gqa") if g == 2 else make("mha" if g == H else "mqa")
        drop_in = attn.torch.MultiheadAttention(E, H, num_kv_heads=g, batch_first=True, dtype=F64)
        assert isinstance(ours, AttentionCore) and isinstance(drop_in, AttentionCore)
        sd = {f"W_{c}": getattr(ours, f"{p}_proj").weight.detach() for c, p in zip("QKVO", ("q", "k", "v", "out"))}
        sd.update({f"b_{c}": getattr(ours, f"{p}_proj").bias.detach() for c, p in zip("QKVO", ("q", "k", "v", "out"))})
        assert attn.torch.load_state_dict(drop_in, sd, names="wqkvo").ok
        x, ctx = torch.randn(B, S, E, dtype=F64), torch.randn(B, S_KV, E, dtype=F64)
        keep = torch.rand(B, S, S_KV) < 0.7
        keep[..., 0] = True
        want, want_w = drop_in(x, ctx, ctx, attn_mask=(~keep).repeat_interleave(H, 0))
        got, got_w = ours(x, context=ctx, mask=keep, need_weights=True)
        close(got, want, 1e-13)
        close(got_w, want_w, 1e-13)


@pytest.mark.parametrize("kind", ["mha", "gqa"])
def test_project_kv_equals_recomputation(kind):
    """The seeds' decoder: encoder K/V projected once, reused at every step; values and
    gradients (of x, context and every parameter) equal recomputing K/V at each step."""
    m = make(kind)
    x = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    context = torch.randn(B, S_KV, E, dtype=F64, requires_grad=True)
    padding = torch.ones(B, 1, 1, S_KV, dtype=torch.bool)
    padding[0, ..., -1] = False
    kv = m.project_kv(context)
    assert isinstance(kv, ProjectedKV) and kv.k.shape == (B, m.num_groups, S_KV, E // H)
    cached = torch.cat([m(x[:, t:t + 1], mask=padding, kv=kv) for t in range(S)], 1)
    recomputed = torch.cat([m(x[:, t:t + 1], context=context, mask=padding) for t in range(S)], 1)
    close(cached, recomputed, 1e-14)
    close(cached, composition(m, x, context, padding), 1e-12)
    wrt = [x, context, *m.parameters()]
    dout = torch.randn_like(cached)
    for a, b_ in zip(torch.autograd.grad(cached, wrt, dout), torch.autograd.grad(recomputed, wrt, dout)):
        close(a, b_, 1e-12)


@pytest.mark.parametrize("kind", ["mha", "mqa", "gqa"])
def test_kv_cache_decoding_equals_causal_forward(kind):
    m = make(kind, apply_causal_mask=True)
    x = torch.randn(B, S, E, dtype=F64)
    with torch.no_grad():
        full = m(x)
        cache = m.make_cache(capacity=S)
        steps = [m(x[:, :3], kv=cache)] + [m(x[:, t:t + 1], kv=cache) for t in range(3, S)]  # prefill, then steps
        assert cache.length == S
        close(torch.cat(steps, 1), full, 1e-12)
        cache.reset()
        with torch.inference_mode():
            close(m(x[:, :S], kv=cache), full, 1e-12)


def test_kv_cache_errors():
    m = make("gqa", apply_causal_mask=True)
    x = torch.randn(B, 3, E, dtype=F64)
    cache = m.make_cache(4)
    with pytest.raises(ValueError, match=r"kv: a KVCache is for inference.*torch.no_grad\(\)"):
        m(x, kv=cache)
    with torch.no_grad():
        m(x, kv=cache)
        with pytest.raises(ValueError, match="x: has 3 new tokens, but the KVCache holds 3 of capacity 4"):
            m(x, kv=cache)
        with pytest.raises(ValueError, match="x: has batch size 1, but the KVCache holds 2 sequences"):
            m(x[:1, :1], kv=cache)
        with pytest.raises(ValueError, match="kv: this KVCache holds another module's keys"):
            make("gqa")(x[:, :1], kv=cache)
    with pytest.raises(ValueError, match="capacity: = 0"):
        KVCache(0)


def test_load_state_dict_seed_names_and_own_names():
    m = make("gqa")
    d = E // H
    sd = {"W_Q": torch.randn(E, E, dtype=F64), "W_K": torch.randn(2 * d, E, dtype=F64),
          "W_V": torch.randn(2 * d, E, dtype=F64), "W_O": torch.randn(E, E, dtype=F64)}
    report = m.load_state_dict(sd, strict=False)  # the seeds give no biases: reported, the weights loaded
    assert report.missing_keys == ["q_proj.bias", "k_proj.bias", "v_proj.bias", "out_proj.bias"]
    assert not report.unexpected_keys and not report.mismatched
    for c, p in zip("QKVO", ("q", "k", "v", "out")):
        assert torch.equal(getattr(m, f"{p}_proj").weight, sd[f"W_{c}"])
    with pytest.raises(ValueError, match="state_dict: missing keys: q_proj.bias"):
        m.load_state_dict(sd)  # strict
    sd.update({f"b_{c}": torch.zeros(n, dtype=F64) for c, n in zip("QKVO", (E, 2 * d, 2 * d, E))})
    assert m.load_state_dict(sd).ok
    # the module's own names, both ways
    m2 = make("gqa")
    assert m2.load_state_dict(m.state_dict()).ok
    x = torch.randn(B, S, E, dtype=F64)
    close(m2(x), m(x), 0)
    # every problem in one error, and nothing loaded
    bad = dict(sd, W_K=torch.randn(E, E, dtype=F64), extra=torch.zeros(1))
    del bad["W_O"]
    before = m.k_proj.weight.detach().clone()
    with pytest.raises(ValueError, match=r"missing keys: out_proj.weight; unexpected keys: extra; wrong shapes or "
                                         r"dtypes: k_proj.weight expected \[12, 24\] float64, got \[24, 24\] float64"):
        m.load_state_dict(bad)
    assert torch.equal(m.k_proj.weight, before)
    report = m.load_state_dict(bad, strict=False)
    assert report.mismatched[0][0] == "k_proj.weight" and torch.equal(m.k_proj.weight, before)
    # inside a model: the parent's load_state_dict takes the seeds' names through the pre-hook
    model = nn.Sequential(make("gqa"))
    model.load_state_dict({f"0.{k}": v for k, v in sd.items()})
    close(model(x), m(x), 0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="embed_dim = 10 must be divisible by num_heads = 4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="num_groups = 3 must divide num_heads = 4"):
        GroupQueryAttention(24, 4, 3)
    with pytest.raises(ValueError, match="dropout: = 1.0"):
        MultiHeadAttention(24, 4, dropout=1.0)
    m = make("gqa")
    x = torch.randn(B, S, E, dtype=F64)
    with pytest.raises(ValueError, match=r"context: has shape \[2, 5, 8\], expected \[B, S_kv, E\] with E = "
                                         r"embed_dim = 24"):
        m(x, context=torch.randn(B, S_KV, 8, dtype=F64))
    with pytest.raises(ValueError, match=r"x: has shape \[7, 24\], expected \[B, S, E\].*x.unsqueeze\(0\)"):
        m(x[0])
    with pytest.raises(ValueError, match=r"mask: has shape \[7, 6\], which does not broadcast to \[B, H, S, S_kv\] = "
                                         r"\[2, 4, 7, 7\]"):
        m(x, mask=torch.ones(S, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask: has shape \[3, 7, 7\].*a rank-3 mask is per batch row \[B, S, S_kv\]"):
        m(x, mask=torch.ones(3, S, S, dtype=torch.bool))  # torch's [H, S, S_kv] reading is not this one
    for dtype in (torch.int64, torch.uint8, torch.int32):
        with pytest.raises(TypeError, match=rf"mask: has dtype {dtype}, expected torch.bool \(True = attend\) or a "
                                            "floating dtype"):
            m(x, mask=torch.ones(S, S, dtype=dtype))
    # a (S, B, E) input that a mask or the context reveals
    xt = x.transpose(0, 1)  # [7, 2, 24]
    with pytest.raises(ValueError, match=r"mask: has shape \[7, 7\].*would fit x as \(S, B, E\) = \[7, 2, 24\].*"
                                         r"batch-first \[B, S, E\]"):
        m(xt, mask=torch.ones(S, S, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"context: has shape \[5, 2, 24\], but x has shape \[7, 2, 24\].*look like "
                                         r"\(S, B, E\)"):
        m(xt, context=torch.randn(S_KV, B, E, dtype=F64))
    with pytest.raises(ValueError, match=r"context, kv: both given"):
        m(x, context=x, kv=m.project_kv(x))
    with pytest.raises(TypeError, match="kv: is a tuple, expected a ProjectedKV"):
        m(x, kv=(x, x))
    with pytest.raises(ValueError, match=r"kv: holds k of shape \[2, 2, 7, 6\].*expected \[1, 2, 7, 6\]"):
        m(x[:1], kv=m.project_kv(x))
    kv = m.project_kv(torch.randn(B, S_KV, E, dtype=F64))
    with pytest.raises(ValueError, match=r"kv: holds k of shape \[2, 2, 5, 6\].*x = \[7, 2, 24\] looks like \(S, B, E\)"):
        m(xt, kv=kv)
    with pytest.raises(ValueError, match="apply_causal_mask: is True for a cross-attention call"):
        make("mha", apply_causal_mask=True)(x, context=x)


def test_torch_compile_fullgraph():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = GroupQueryAttention(E, H, 2, apply_causal_mask=True)
            self.prior = nn.Parameter(torch.zeros(1, 1, S, S))  # a learnable float mask

        def forward(self, x, padding):
            return x + self.attn(x, mask=self.prior + padding)

    torch.manual_seed(1)
    block = Block()
    x = torch.randn(B, S, E, requires_grad=True)
    padding = torch.zeros(B, 1, 1, S)
    padding[1, ..., -2:] = float("-inf")
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    got, want = compiled(x, padding), block(x, padding)
    close(got, want, 1e-6)
    g_got = torch.autograd.grad(got.sum(), [x, block.prior])
    g_want = torch.autograd.grad(want.sum(), [x, block.prior])
    for a, b_ in zip(g_got, g_want):
        close(a, b_, 1e-5)


@pytest.mark.parametrize("dtype,floor", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)], ids=["f32", "bf16"])
def test_low_precision_within_the_tolerance_rule(dtype, floor):
    """docs/contract.md's tolerance rule: error vs the fp64 truth ≤ 2× (forward) / 3× (gradients)
    that of the same composition run in `dtype`, plus a floor."""
    m64 = make("gqa")
    m = make("gqa", dtype=dtype)
    m.load_state_dict(m64.state_dict())
    x64 = torch.randn(B, 33, E, dtype=F64)
    keep = torch.rand(B, 33, 33) < 0.7
    keep[..., 0] = True
    x = x64.to(dtype).requires_grad_()
    x_ref = x.detach().to(F64).requires_grad_()
    m64.load_state_dict({n: p.to(F64) for n, p in m.state_dict().items()})  # the rounded weights as the truth
    truth = composition(m64, x_ref, mask=keep)
    naive = composition(m, x, mask=keep, dtype=dtype)
    got = m(x, mask=keep)
    err = lambda a: (a.double() - truth.double()).abs().max().item()  # noqa: E731
    assert err(got) <= 2 * err(naive) + floor, (err(got), err(naive))
    dout = torch.randn_like(truth)
    g_truth = torch.autograd.grad(truth, [x_ref, *m64.parameters()], dout)
    g_naive = torch.autograd.grad(naive, [x, *m.parameters()], dout.to(dtype))
    g_got = torch.autograd.grad(got, [x, *m.parameters()], dout.to(dtype))
    for t, n, g in zip(g_truth, g_naive, g_got):
        e_n, e_g = (n.double() - t).abs().max().item(), (g.double() - t).abs().max().item()
        assert e_g <= 3 * e_n + floor * max(1.0, t.abs().max().item()), (e_g, e_n)


def test_dropout_only_in_training():
    m = make("mha", dropout=0.5)
    x = torch.randn(1, 40, E, dtype=F64)
    m.train()
    _, w = m(x, need_weights=True, average_attn_weights=False)
    assert abs((w == 0).double().mean().item() - 0.5) < 0.05  # post-dropout weights, as torch returns them
    m.eval()
    close(m(x), composition(m, x), 1e-12)


def test_readme_snippet_runs_as_written():
    """README.md's section on these classes, executed verbatim (its claims checked after)."""
    import pathlib
    text = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = text[text.index("## The seeds' attention classes"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]
    env = {}
    exec(compile(code, "README.md", "exec"), env)
    assert env["report"].ok
    assert env["weights"].shape == (2, 32, 32) and env["out"].shape == (2, 32, 512)
    with torch.no_grad():
        close(torch.cat(env["steps"], 1), env["gqa"](env["x"]), 1e-5)


def test_bench_modules_table_smoke(tmp_path, capsys):
    """python -m attn.bench --tables modules runs end to end (one tiny shape) and writes its rows."""
    import json
    from attn import bench
    bench.main(["--quick", "--tables", "modules", "--json", str(tmp_path / "b.json")])
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["cls"], r["mode"]) for r in rows] == [("mha", "fwd"), ("mha", "fwd+bwd"), ("gqa", "fwd"),
                                                     ("gqa", "fwd+bwd")]
    for r in rows:
        assert r["attn_ms"] > 0 and r["linear_sdpa_ms"] > 0 and 0 < r["amdahl_bound"]
    assert "ratio_torch_mha" in rows[0] and "Linear+SDPA" in capsys.readouterr().out


def band(s, s_kv, w, causal):
    i, j = torch.arange(s)[:, None], torch.arange(s_kv)[None, :]
    keep = (j >= i - w) & (j <= i + w)
    return keep & (j <= i) if causal else keep


@pytest.mark.parametrize("causal", [False, True], ids=["two_sided", "causal"])
@pytest.mark.parametrize("groups", [None, 2])
def test_local_attention_is_a_band_mask(causal, groups):
    """LocalAttention = the same module with a |i − j| ≤ w band, against the composition given
    that band as a bool mask (and on top of a key padding mask); gradients; the KV cache."""
    w = 2
    m = attn.torch.LocalAttention(E, H, w, num_groups=groups, apply_causal_mask=causal, dtype=F64)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, dtype=F64) * 0.4)
    x = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    padding = torch.ones(B, 1, 1, S, dtype=torch.bool)
    padding[1, ..., -1] = False
    got = m(x, mask=padding)  # the window is the module's; the composition gets it as a bool mask
    want = composition(m, x, mask=band(S, S, w, causal) & padding)
    close(got, want, 1e-12)
    wrt = [x, *m.parameters()]
    for a, b_ in zip(torch.autograd.grad(got.sum(), wrt), torch.autograd.grad(want.sum(), wrt)):
        close(a, b_, GRAD_TOL)
    if causal:
        with torch.no_grad():
            cache = m.make_cache(S)
            steps = [m(x[:, :2], kv=cache)] + [m(x[:, t:t + 1], kv=cache) for t in range(2, S)]
            close(torch.cat(steps, 1), m(x), 1e-12)
    assert type(get_attention("local", E, H, window_size=w)) is attn.torch.LocalAttention
    with pytest.raises(ValueError, match="window_size: is missing"):
        get_attention("local", E, H)
    with pytest.raises(ValueError, match="window_size: = -1"):
        attn.torch.LocalAttention(E, H, -1)
    with pytest.raises(ValueError, match="LocalAttention is self-attention only"):
        m(x, context=x)


def linear_formula(m, x, context=None, keep=None, causal=False):
    """docs/linear_attention.md's formula with elu + 1 features, with the module's projections."""
    w = dict(m.named_parameters())
    lin = lambda t, n: t @ w[f"{n}.weight"].T + w[f"{n}.bias"]  # noqa: E731
    src = x if context is None else context
    h, g, d = m.num_heads, m.num_groups, m.head_dim
    q = lin(x, "q_proj").view(x.shape[0], -1, h, d).transpose(1, 2)
    k = lin(src, "k_proj").view(src.shape[0], -1, g, d).transpose(1, 2).repeat_interleave(h // g, 1)
    v = lin(src, "v_proj").view(src.shape[0], -1, g, d).transpose(1, 2).repeat_interleave(h // g, 1)
    a = (torch.nn.functional.elu(q) + 1) @ (torch.nn.functional.elu(k) + 1).transpose(-1, -2)
    if causal:
        a = a * torch.ones(a.shape[-2:], dtype=torch.bool).tril()
    if keep is not None:
        a = a * keep
    o = (a @ v) / (a.sum(-1, keepdim=True) + m.eps)
    return lin(o.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1), "out_proj")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_linear_attention_module(causal):
    m = get_attention("linear", E, H, num_groups=2, apply_causal_mask=causal, dtype=F64)
    assert type(m) is attn.torch.LinearAttention
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, dtype=F64) * 0.3)
    x = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    padding = torch.ones(B, 1, 1, S, dtype=torch.bool)
    padding[1, ..., -2:] = False
    got = m(x, mask=padding)
    want = linear_formula(m, x, keep=padding, causal=causal)
    close(got, want, 1e-10)
    wrt = [x, *m.parameters()]
    for a, b_ in zip(torch.autograd.grad(got.sum(), wrt), torch.autograd.grad(want.sum(), wrt)):
        close(a, b_, 1e-8)
    if not causal:
        ctx = torch.randn(B, S_KV, E, dtype=F64)
        close(m(x, kv=m.project_kv(ctx)), linear_formula(m, x, context=ctx), 1e-10)
    with pytest.raises(ValueError, match=r"mask: has shape \[7, 7\].*expected key padding only"):
        m(x, mask=torch.ones(S, S, dtype=torch.bool))
    with pytest.raises(ValueError, match="need_weights: is True, but linear attention never forms"):
        m(x, need_weights=True)
    with pytest.raises(ValueError, match="kv: LinearAttention has no KVCache"), torch.no_grad():
        m(x, kv=m.make_cache(S))
    favor = attn.torch.LinearAttention(E, H, feature_map="favor", num_features=16, seed=3)
    assert favor.projection.shape == (16, E // H)
    y = torch.randn(B, S, E)
    close(favor(y), favor(y), 0)  # the projection is fixed at construction
