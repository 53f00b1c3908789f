"""attn.torch.MultiheadAttention inside torch's Transformer layers, against the same layers built on
torch.nn.MultiheadAttention with the same weights, in training, eval + no_grad and inference_mode
(where torch would take its fused fast path), and with the profiler showing that attn's op ran."""

import copy
import contextlib

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from attn.torch import MultiheadAttention  # noqa: E402

E, H, B, L, S = 16, 4, 3, 7, 5


def swap_attention(module):
    """Replaces every torch.nn.MultiheadAttention under `module` by attn's, with the same weights."""
    for name, child in module.named_children():
        if isinstance(child, nn.MultiheadAttention):
            ours = MultiheadAttention(child.embed_dim, child.num_heads, dropout=child.dropout,
                                      batch_first=child.batch_first, dtype=child.in_proj_weight.dtype)
            ours.load_state_dict(child.state_dict())
            setattr(module, name, ours)
        else:
            swap_attention(child)
    return module


def build(kind):
    kw = dict(dim_feedforward=32, dropout=0.0, batch_first=True)
    if kind == "decoder_layer":
        ref = nn.TransformerDecoderLayer(E, H, **kw)
        return ref, swap_attention(copy.deepcopy(ref))
    layer = nn.TransformerEncoderLayer(E, H, **kw)
    if kind == "encoder_layer":
        return layer, swap_attention(copy.deepcopy(layer))
    # TransformerEncoder clones the layer it is given: build it from each layer, the natural use.
    ref = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=True)
    ours = nn.TransformerEncoder(swap_attention(copy.deepcopy(layer)), num_layers=2, enable_nested_tensor=True)
    return ref, ours


MODES = {
    "train": lambda: contextlib.nullcontext(),
    "eval_no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


def run(module, kind, x, memory, kpm):
    if kind == "decoder_layer":
        causal = nn.Transformer.generate_square_subsequent_mask(L)
        return module(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=kpm[:, :S])
    if kind == "encoder_layer":
        return module(x, src_key_padding_mask=kpm)
    return module(x, src_key_padding_mask=kpm)


@pytest.mark.filterwarnings("ignore:.*nested tensors is in prototype stage")
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ["encoder_layer", "encoder", "decoder_layer"])
def test_transformer_layers_match_torch_and_run_attn(kind, mode):
    torch.manual_seed(0)
    ref, ours = build(kind)
    x = torch.randn(B, L, E)
    memory = torch.randn(B, S, E)
    kpm = torch.zeros(B, L, dtype=torch.bool)  # True = padding, on the right (what nesting needs)
    kpm[1, 4:] = True
    kpm[2, 2:] = True
    for m in (ref, ours):
        m.train(mode == "train")
    with MODES[mode]():
        want = run(ref, kind, x, memory, kpm)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            got = run(ours, kind, x, memory, kpm)
    ran = {e.key for e in prof.key_averages()}
    assert "attn::sdpa_fwd" in ran, sorted(ran)
    assert not {"aten::_transformer_encoder_layer_fwd", "aten::_native_multi_head_attention"} & ran
    assert got.shape == want.shape
    err = (got - want).abs().max().item()
    assert err < 1e-5, f"max abs error {err:.3g}"
    if mode == "train":  # gradients flow through attn's op and match torch's layer
        xg = x.clone().requires_grad_()
        xr = x.clone().requires_grad_()
        dout = torch.randn_like(want)
        (run(ours, kind, xg, memory, kpm) * dout).sum().backward()
        (run(ref, kind, xr, memory, kpm) * dout).sum().backward()
        err = (xg.grad - xr.grad).abs().max().item()
        assert err < 1e-4, f"input gradient: max abs error {err:.3g}"


@pytest.mark.filterwarnings("ignore:.*nested tensors is in prototype stage")
def test_nested_inputs_match_padded_rows():
    m = MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    lengths = [5, 2, 7]
    rows = [torch.randn(n, E, dtype=torch.float64) for n in lengths]
    nested = torch.nested.as_nested_tensor(rows)
    out, w = m(nested, nested, nested, need_weights=False)
    assert out.is_nested and w is None
    for row, got in zip(rows, out.unbind()):  # each row alone, unbatched, is the oracle
        want, _ = m(row, row, row, need_weights=False)
        assert (got - want).abs().max().item() < 1e-12
    with pytest.raises(ValueError, match="key_padding_mask/attn_mask: given with nested inputs"):
        m(nested, nested, nested, need_weights=False, key_padding_mask=torch.zeros(3, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="need_weights: is True with nested inputs"):
        m(nested, nested, nested)
