"""attn.torch's transformer layers and models (attn/layers.py, attn/transformer.py) against a float64
composition written here in plain torch ops (projections, per-head scores, the mask before the
softmax or the linear-attention formula, concat, output projection, LayerNorm, FFN, residuals);
gradients of the input, the memory and every parameter; finite differences; incremental decoding
against the full forward; checkpointing; bf16 autocast; a tiny training run; bad arguments."""

import copy
import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import attn.torch  # noqa: E402
from attn.torch import (RegressionTransformer, TransformerDecoder, TransformerDecoderLayer,  # noqa: E402
                        TransformerEncoder, TransformerEncoderLayer, TransformerModel)

F64 = torch.float64
E, H, B, S, T, FFN = 24, 4, 2, 7, 5, 40  # head_dim 6: off every vector width; T target, S source
TYPES = ["mha", "gqa", "mqa", "local", "linear"]
OPTS = {"mha": {}, "gqa": {"num_groups": 2}, "mqa": {}, "local": {"window_size": 2}, "linear": {}}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny shapes: one thread (a second one only adds spinning on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    attn.torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    attn.torch.set_num_threads(0)


def randomise(module, scale=0.3):
    """Random weights and biases (zero biases and unit norms would hide a wrong term)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            parts = name.split(".")
            base = 1.0 if parts[-1] == "weight" and len(parts) > 1 and parts[-2].startswith("norm") else 0.0
            p.copy_(base + torch.randn(p.shape, dtype=p.dtype) * scale)
    return module


def close(a, b, tol, what=""):
    assert a.shape == b.shape, f"{what}: {a.shape} != {b.shape}"
    err = (a.double() - b.double()).abs().max().item()
    assert err <= tol * max(1.0, b.double().abs().max().item()), f"{what}: max abs error {err:.3g}"


# -- the composition ------------------------------------------------------------------------------

def attention(w, prefix, kind, x, src, keep=None, causal=False, window=None):
    """The seeds' attention in plain torch ops with the parameters `w[prefix + ...]`; keep is a bool
    mask (True = attend) broadcast to [B, H, L, S]."""
    lin = lambda t, n: t @ w[f"{prefix}{n}.weight"].T + w[f"{prefix}{n}.bias"]  # noqa: E731
    hkv = w[f"{prefix}k_proj.weight"].shape[0] // (E // H)
    d = E // H
    q = lin(x, "q_proj").view(x.shape[0], x.shape[1], H, d).transpose(1, 2)
    k = lin(src, "k_proj").view(src.shape[0], src.shape[1], hkv, d).transpose(1, 2).repeat_interleave(H // hkv, 1)
    v = lin(src, "v_proj").view(src.shape[0], src.shape[1], hkv, d).transpose(1, 2).repeat_interleave(H // hkv, 1)
    L, Sk = x.shape[1], src.shape[1]
    visible = torch.ones(L, Sk, dtype=torch.bool)
    if causal:
        visible &= torch.ones(L, Sk, dtype=torch.bool).tril()
    if window is not None:
        i, j = torch.arange(L)[:, None], torch.arange(Sk)[None, :]
        visible &= (i - j).abs() <= window
    if keep is not None:
        visible = visible & keep
    if kind == "linear":  # docs/linear_attention.md: out_i = Σ_j a_ij v_j / (Σ_j a_ij + eps), a = φ(q)·φ(k)
        phi = lambda t: F.elu(t) + 1  # noqa: E731
        a = (phi(q) @ phi(k).transpose(-1, -2)) * visible
        out = (a @ v) / (a.sum(-1, keepdim=True) + 1e-6)
    else:
        s = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~visible, float("-inf"))
        out = torch.softmax(s, dim=-1) @ v
    return lin(out.transpose(1, 2).reshape(x.shape[0], L, E), "out_proj")


def ln(w, name, t):
    return F.layer_norm(t, (E,), w[f"{name}.weight"], w[f"{name}.bias"], 1e-5)


def ffn(w, prefix, t):
    h = F.gelu(t @ w[f"{prefix}linear1.weight"].T + w[f"{prefix}linear1.bias"])
    return h @ w[f"{prefix}linear2.weight"].T + w[f"{prefix}linear2.bias"]


def encoder_layer(w, p, kind, x, keep=None, norm_first=True, causal=False):
    window = OPTS[kind].get("window_size")
    sa = lambda t: attention(w, p + "self_attn.", kind, t, t, keep, causal, window)  # noqa: E731
    if norm_first:
        x = x + sa(ln(w, p + "norm1", x))
        return x + ffn(w, p, ln(w, p + "norm2", x))
    x = ln(w, p + "norm1", x + sa(x))
    return ln(w, p + "norm2", x + ffn(w, p, x))


def decoder_layer(w, p, kind, x, memory, memory_keep=None, norm_first=True, cross_kind=None):
    window = OPTS[kind].get("window_size")
    cross_kind = cross_kind or kind
    sa = lambda t: attention(w, p + "self_attn.", kind, t, t, None, True, window)  # noqa: E731
    ca = lambda t: attention(w, p + "multihead_attn.", cross_kind, t, memory, memory_keep)  # noqa: E731
    if norm_first:
        x = x + sa(ln(w, p + "norm1", x))
        x = x + ca(ln(w, p + "norm2", x))
        return x + ffn(w, p, ln(w, p + "norm3", x))
    x = ln(w, p + "norm1", x + sa(x))
    x = ln(w, p + "norm2", x + ca(x))
    return ln(w, p + "norm3", x + ffn(w, p, x))


def params(m):
    return dict(m.named_parameters())


def key_padding(b, s):
    keep = torch.ones(b, 1, 1, s, dtype=torch.bool)
    keep[1, ..., -2:] = False
    return keep


def grads(out, wrt):
    return torch.autograd.grad(out.pow(2).sum(), wrt, allow_unused=True)


def compare_grads(got, want, wrt_names, tol):
    for name, a, b_ in zip(wrt_names, got, want):
        assert a is not None and b_ is not None, f"{name}: no gradient"
        close(a, b_, tol, name)


# -- layers against the composition ---------------------------------------------------------------

@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre", "post"])
def test_encoder_layer_matches_composition(kind, norm_first):
    layer = randomise(TransformerEncoderLayer(E, H, FFN, attention_type=kind, norm_first=norm_first, dtype=F64,
                                              **OPTS[kind]))
    x = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    keep = key_padding(B, S)
    got = layer(x, mask=keep)
    want = encoder_layer(params(layer), "", kind, x, keep, norm_first)
    close(got, want, 1e-10, "out")
    names, wrt = ["x", *params(layer)], [x, *layer.parameters()]
    compare_grads(grads(got, wrt), grads(want, wrt), names, 1e-6)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre", "post"])
def test_decoder_layer_matches_composition(kind, norm_first):
    cross = "mha" if kind == "local" else None
    layer = randomise(TransformerDecoderLayer(E, H, FFN, attention_type=kind, norm_first=norm_first, dtype=F64,
                                              cross_attention_type=cross, **OPTS[kind]))
    x = torch.randn(B, T, E, dtype=F64, requires_grad=True)
    memory = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    keep = key_padding(B, S)
    got = layer(x, memory, memory_mask=keep)
    want = decoder_layer(params(layer), "", kind, x, memory, keep, norm_first, cross)
    close(got, want, 1e-10, "out")
    names, wrt = ["x", "memory", *params(layer)], [x, memory, *layer.parameters()]
    want_g = grads(want, wrt)
    compare_grads(grads(got, wrt), want_g, names, 1e-6)
    # The memory's K/V projected once: same values and gradients (memory and the cross K/V weights).
    kv = layer.project_memory(memory)
    got_kv = layer(x, memory_kv=kv, memory_mask=keep)
    close(got_kv, want, 1e-10, "out with memory_kv")
    compare_grads(grads(got_kv, wrt), want_g, names, 1e-6)


def test_layers_pass_finite_differences():
    """torch.autograd.gradcheck (fp64 central differences) of both layers w.r.t. their inputs."""
    e, h = 8, 2
    enc = randomise(TransformerEncoderLayer(e, h, 12, attention_type="gqa", num_groups=1, norm_first=False,
                                            dtype=F64))
    dec = randomise(TransformerDecoderLayer(e, h, 12, dtype=F64))
    x = torch.randn(1, 3, e, dtype=F64, requires_grad=True)
    mem = torch.randn(1, 4, e, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: enc(t), (x,), atol=1e-6, rtol=1e-4, fast_mode=True)
    assert torch.autograd.gradcheck(lambda t, m: dec(t, m), (x, mem), atol=1e-6, rtol=1e-4, fast_mode=True)


def test_stacks_match_composition():
    enc = randomise(TransformerEncoder(2, E, H, ffn_dim=FFN, attention_type="gqa", num_groups=2, dtype=F64))
    dec = randomise(TransformerDecoder(2, E, H, ffn_dim=FFN, attention_type="mqa", dtype=F64))
    assert enc.norm is not None and dec.norm is not None  # pre-norm stacks end with a norm
    src = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    tgt = torch.randn(B, T, E, dtype=F64, requires_grad=True)
    keep = key_padding(B, S)
    mem = enc(src, mask=keep)
    out = dec(tgt, mem, memory_mask=keep)
    we, wd = params(enc), params(dec)
    m = src
    for i in range(2):
        m = encoder_layer(we, f"layers.{i}.", "gqa", m, keep)
    m = ln(we, "norm", m)
    y = tgt
    for i in range(2):
        y = decoder_layer(wd, f"layers.{i}.", "mqa", y, m, keep)
    y = ln(wd, "norm", y)
    close(out, y, 1e-10, "out")
    wrt = [src, tgt, *enc.parameters(), *dec.parameters()]
    compare_grads(grads(out, wrt), grads(y, wrt), ["src", "tgt", *we, *wd], 1e-6)
    close(dec(tgt, memory_kv=dec.project_memory(mem), memory_mask=keep), y, 1e-10, "memory_kv")
    post = TransformerEncoder(1, E, H, norm_first=False)
    assert post.norm is None


@pytest.mark.parametrize("kind", TYPES)
def test_generate_equals_teacher_forced_forward(kind):
    """Incremental decoding (memory projected once, KV cache or linear state) gives the logits of
    the full forward on the prefix, step by step."""
    model = TransformerModel(11, 13, embed_dim=E, num_heads=H, num_encoder_layers=1, num_decoder_layers=2,
                             max_len=16, ffn_dim=FFN, attention_type=kind, dtype=F64,
                             cross_attention_type="mha" if kind == "local" else None, **OPTS[kind])
    randomise(model)
    model.eval()
    src = torch.randint(0, 11, (B, S))
    pad = torch.ones(B, S, dtype=torch.bool)
    pad[0, -3:] = False
    ids, logits = model.generate(src, 6, bos_id=0, src_padding_mask=pad, return_logits=True)
    assert ids.shape == (B, 6) and logits.shape == (B, 6, 13)
    tgt = torch.cat([torch.zeros(B, 1, dtype=torch.int64), ids[:, :-1]], dim=1)
    with torch.no_grad():
        full = model(src, tgt, src_padding_mask=pad)
    close(logits, full, 1e-6 if kind == "linear" else 1e-10, "logits")
    assert torch.equal(full.argmax(-1), ids)


# -- models -----------------------------------------------------------------------------------------

def regression_composition(model, x, keep):
    w = params(model)
    h = x @ w["input_proj.weight"].T + w["input_proj.bias"]
    mask = keep[:, None, None, :]
    if model.pooling == "cls":
        h = torch.cat([w["cls_token"].expand(x.shape[0], 1, E), h], dim=1)
        mask = torch.cat([torch.ones(x.shape[0], 1, 1, 1, dtype=torch.bool), mask], dim=-1)
    h = h + w["pos_embed.weight"][: h.shape[1]]
    for i in range(len(model.encoder.layers)):
        h = encoder_layer(w, f"encoder.layers.{i}.", "mha", h, mask)
    h = ln(w, "encoder.norm", h)
    if model.pooling == "cls":
        pooled = h[:, 0]
    else:
        kw = keep.to(F64).unsqueeze(-1)
        pooled = (h * kw).sum(1) / kw.sum(1)
    return pooled @ w["head.weight"].T + w["head.bias"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_regression_transformer_matches_composition(pooling):
    model = randomise(RegressionTransformer(3, embed_dim=E, num_heads=H, num_layers=2, out_dim=2, pooling=pooling,
                                            max_len=S, ffn_dim=FFN, dtype=F64))
    x = torch.randn(B, S, 3, dtype=F64, requires_grad=True)
    keep = torch.ones(B, S, dtype=torch.bool)
    keep[1, 4:] = False
    got = model(x, padding_mask=keep)
    want = regression_composition(model, x, keep)
    assert got.shape == (B, 2)
    close(got, want, 1e-10, "prediction")
    names, wrt = ["x", *params(model)], [x, *model.parameters()]
    compare_grads(grads(got, wrt), grads(want, wrt), names, 1e-6)
    # Padded positions change nothing.
    x2 = x.detach().clone()
    x2[1, 4:] = 100.0
    close(model(x2, padding_mask=keep), got, 1e-10, "padded positions")


def test_checkpointing_recomputes_and_gives_the_same_gradients():
    torch.manual_seed(1)
    ref = RegressionTransformer(3, embed_dim=E, num_heads=H, num_layers=2, ffn_dim=FFN, dropout=0.2, attn_dropout=0.1)
    ckpt = copy.deepcopy(ref)
    for layer in ckpt.encoder.layers:
        layer.checkpoint = True
    calls = []
    for layer in ckpt.encoder.layers:
        layer.self_attn.register_forward_pre_hook(lambda m, a: calls.append(m))
    x = torch.randn(B, S, 3)
    torch.manual_seed(7)
    g_ref = torch.autograd.grad(ref(x).sum(), list(ref.parameters()))
    torch.manual_seed(7)
    out = ckpt(x)
    assert len(calls) == 2
    g_ck = torch.autograd.grad(out.sum(), list(ckpt.parameters()))
    assert len(calls) == 4  # each layer's forward ran again in backward
    for (name, _), a, b_ in zip(ref.named_parameters(), g_ref, g_ck):
        close(b_, a, 1e-6, name)  # same dropout bits: the RNG state is restored for the recompute
    m = TransformerModel(11, embed_dim=E, num_heads=H, num_encoder_layers=1, num_decoder_layers=1, ffn_dim=FFN,
                         checkpoint=True)
    assert all(layer.checkpoint for layer in [*m.encoder.layers, *m.decoder.layers])
    m(torch.randint(0, 11, (B, S)), torch.randint(0, 11, (B, T))).sum().backward()


@pytest.mark.parametrize("kind", ["mha", "gqa", "linear"])
def test_bf16_autocast(kind):
    torch.manual_seed(2)
    model = RegressionTransformer(3, embed_dim=32, num_heads=4, num_layers=2, ffn_dim=48, attention_type=kind,
                                  **OPTS[kind])
    dtypes = []
    model.encoder.layers[0].self_attn.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    x = torch.randn(4, 16, 3)
    want = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(x)
    assert dtypes == [torch.float32, torch.bfloat16]  # the attention ran in bf16 under autocast
    close(got.float(), want, 5e-2, "bf16 prediction")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name


def test_tiny_training_run_reduces_the_loss():
    """Regression on a synthetic task where the target is the value at the marked position."""
    torch.manual_seed(3)
    n, s = 256, 12
    x = torch.randn(n, s, 2)
    pos = torch.randint(0, s, (n,))
    x[:, :, 1] = 0.0
    x[torch.arange(n), pos, 1] = 1.0
    y = x[torch.arange(n), pos, 0:1]
    model = RegressionTransformer(2, embed_dim=32, num_heads=4, num_layers=1, ffn_dim=64, max_len=s)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        idx = torch.randint(0, n, (64,))
        loss = F.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_parameters_are_counted():
    for kind, kv_heads in [("mha", H), ("gqa", 2), ("mqa", 1)]:
        layer = TransformerEncoderLayer(E, H, FFN, attention_type=kind, **OPTS[kind])
        kv = kv_heads * (E // H)
        attn_params = 2 * E * E + 2 * E * kv + 2 * E + 2 * kv
        assert sum(p.numel() for p in layer.parameters()) == attn_params + 2 * E * FFN + FFN + E + 4 * E


# -- errors -----------------------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match="stride: is missing, expected stride=<int> for attention_type='strided'"):
        TransformerEncoderLayer(E, H, attention_type="strided")
    with pytest.raises(ValueError, match="attn_dropout: = 0.1, expected 0 with attention_type='strided'"):
        TransformerEncoderLayer(E, H, attention_type="strided", attn_dropout=0.1, stride=4)
    with pytest.raises(ValueError, match="attention_type: is 'strided' for the cross-attention"):
        TransformerDecoderLayer(E, H, attention_type="strided", stride=4)
    with pytest.raises(ValueError, match="attention_type: is 'flash', expected one of"):
        TransformerDecoderLayer(E, H, attention_type="flash")
    with pytest.raises(ValueError, match="activation: is 'tanh', expected one of 'relu', 'gelu'"):
        TransformerEncoderLayer(E, H, activation="tanh")
    with pytest.raises(ValueError, match=r"dropout: = 1.0, expected a probability 0 <= p < 1"):
        TransformerEncoderLayer(E, H, dropout=1.0)
    with pytest.raises(ValueError, match="attn_dropout: = 0.1, expected 0 with attention_type='linear'"):
        TransformerEncoderLayer(E, H, attention_type="linear", attn_dropout=0.1)
    with pytest.raises(ValueError, match="window_size: is missing"):
        TransformerEncoderLayer(E, H, attention_type="local")
    with pytest.raises(ValueError, match="attention_type: is 'local' for the cross-attention"):
        TransformerDecoderLayer(E, H, attention_type="local", window_size=2)
    with pytest.raises(ValueError, match="num_groups: is None, expected the number of K/V heads"):
        TransformerEncoder(2, E, H, attention_type="gqa")
    with pytest.raises(ValueError, match="ffn_dim: = 0, expected an int > 0"):
        TransformerEncoderLayer(E, H, ffn_dim=0)
    with pytest.raises(ValueError, match="num_layers: = 0, expected an int > 0"):
        TransformerEncoder(0, E, H)
    with pytest.raises(ValueError, match="num_heads: = 5, expected a divisor of embed_dim = 24"):
        TransformerEncoderLayer(E, 5)
    with pytest.raises(TypeError, match="'mha' does not take these options"):
        TransformerEncoderLayer(E, H, window_size=3)
    with pytest.raises(ValueError, match="pooling: is 'max', expected 'mean' or 'cls'"):
        RegressionTransformer(3, embed_dim=E, num_heads=H, pooling="max")
    layer = TransformerEncoderLayer(E, H)
    with pytest.raises(ValueError, match=r"x: has shape \[2, 7, 16\], expected \[B, S, E\] with E = embed_dim = 24"):
        layer(torch.randn(B, S, 16))
    with pytest.raises(ValueError, match=r"mask: has shape \[3, 7\], which does not broadcast"):
        layer(torch.randn(B, S, E), mask=torch.ones(3, S, dtype=torch.bool))
    dec = TransformerDecoderLayer(E, H)
    with pytest.raises(ValueError, match="memory, memory_kv: neither given, expected exactly one"):
        dec(torch.randn(B, T, E))
    mem = torch.randn(B, S, E)
    with pytest.raises(ValueError, match="memory, memory_kv: both given"):
        dec(torch.randn(B, T, E), mem, memory_kv=dec.project_memory(mem))
    with pytest.raises(TypeError, match="memory_kv: is a Tensor, expected a ProjectedKV"):
        dec(torch.randn(B, T, E), memory_kv=mem)
    model = RegressionTransformer(3, embed_dim=E, num_heads=H, max_len=S)
    with pytest.raises(ValueError, match="x: has 8 positions, expected at most max_len = 7"):
        model(torch.randn(B, 8, 3))
    with pytest.raises(TypeError, match="padding_mask: is torch.int64, expected a bool tensor"):
        model(torch.randn(B, S, 3), padding_mask=torch.ones(B, S, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"padding_mask: has shape \[2, 6\], expected \[B, S\] = \[2, 7\]"):
        model(torch.randn(B, S, 3), padding_mask=torch.ones(B, 6, dtype=torch.bool))
    lm = TransformerModel(11, embed_dim=E, num_heads=H, max_len=8)
    with pytest.raises(ValueError, match=r"src: has shape \[2, 7\] and dtype torch.float32, expected token ids"):
        lm(torch.randn(B, S), torch.zeros(B, T, dtype=torch.int64))
    with pytest.raises(ValueError, match="tgt: reaches position 9, expected at most max_len = 8"):
        lm(torch.zeros(B, S, dtype=torch.int64), torch.zeros(B, 9, dtype=torch.int64))
