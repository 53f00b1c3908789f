"""Name maps and attn.torch.load_state_dict against the real upstream modules: a state dict exported
by torch.nn.MultiheadAttention or a Hugging Face BertAttention / LlamaAttention / GPT2Attention
(small configs, random weights, nothing downloaded), loaded into attn.torch.MultiheadAttention,
gives that module's outputs; attn's module saved under each map's names loads back into the
upstream module; the C++ maps (attn._core.map_names) give the Python maps' tensors; reports."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import attn.io
import attn.torch
from attn import _core
from attn.state_dict import from_canonical, to_canonical

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, GPT2Config, LlamaConfig  # noqa: E402
from transformers.models.bert.modeling_bert import BertAttention  # noqa: E402
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention  # noqa: E402
from transformers.models.llama.modeling_llama import (LlamaAttention, LlamaRotaryEmbedding,  # noqa: E402
                                                      apply_rotary_pos_emb)

DTYPES = [(torch.float64, 1e-12), (torch.float32, 2e-6)]


def randomize(module, seed=0):
    """Random weights and biases (not the zero biases of the default init, which hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return module.eval()


def close(a, b, tol):
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), f"max abs error {err}"


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("kdim,add_bias_kv", [(None, False), (5, False), (None, True)])
def test_torch_mha_weights_give_torch_outputs(dtype, tol, kdim, add_bias_kv):
    E, H, L, S, B = 16, 4, 7, 9, 2
    ref = randomize(torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=kdim and 3, add_bias_kv=add_bias_kv,
                                                batch_first=True, dtype=dtype))
    ours = attn.torch.MultiheadAttention(E, H, kdim=kdim, vdim=kdim and 3, add_bias_kv=add_bias_kv,
                                         batch_first=True, dtype=dtype)
    report = attn.torch.load_state_dict(ours, ref.state_dict(), names="torch")
    assert report.ok
    q = torch.randn(B, L, E, dtype=dtype)
    k = torch.randn(B, S, kdim or E, dtype=dtype)
    v = torch.randn(B, S, (kdim and 3) or E, dtype=dtype)
    with torch.no_grad():
        close(ours(q, k, v)[0], ref(q, k, v)[0], tol)
        # and back: attn's parameters under torch's names load into torch strictly
        ref2 = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=kdim and 3, add_bias_kv=add_bias_kv,
                                           batch_first=True, dtype=dtype)
        ref2.load_state_dict(attn.torch.export_state_dict(ours, "torch"), strict=True)
        close(ref2(q, k, v)[0], ref(q, k, v)[0], tol)


def test_torch_mha_through_safetensors_files(tmp_path):
    from safetensors.torch import save_file
    ref = randomize(torch.nn.MultiheadAttention(12, 3, batch_first=True))
    save_file(ref.state_dict(), str(tmp_path / "theirs.safetensors"))  # the safetensors package writes
    ours = attn.torch.MultiheadAttention(12, 3, batch_first=True)
    attn.torch.load_state_dict(ours, attn.io.load_safetensors(tmp_path / "theirs.safetensors", "torch"))
    attn.io.save_safetensors(tmp_path / "ours.safetensors", attn.torch.export_state_dict(ours, "torch"))
    ref2 = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    ref2.load_state_dict(attn.io.load_safetensors(tmp_path / "ours.safetensors", "torch"))
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        close(ours(x, x, x)[0], ref(x, x, x)[0], 2e-6)
        close(ref2(x, x, x)[0], ref(x, x, x)[0], 0)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_hf_bert_attention(dtype, tol):
    E, H = 32, 4
    cfg = BertConfig(hidden_size=E, num_attention_heads=H, intermediate_size=8, attention_probs_dropout_prob=0.0,
                     hidden_dropout_prob=0.0, attn_implementation="eager")
    bert = randomize(BertAttention(cfg).to(dtype))
    ours = attn.torch.MultiheadAttention(E, H, batch_first=True, dtype=dtype)
    sd = {f"bert.encoder.layer.3.attention.{k}": v for k, v in bert.state_dict().items()}
    report = attn.torch.load_state_dict(ours, sd, names="hf_bert", strict=False,
                                        prefix="bert.encoder.layer.3.attention.")
    assert report.missing == [] and report.mismatched == []
    assert report.unexpected == ["output.LayerNorm.weight", "output.LayerNorm.bias"]  # not attention's
    with pytest.raises(ValueError, match="unexpected keys: output.LayerNorm.weight, output.LayerNorm.bias"):
        attn.torch.load_state_dict(ours, sd, names="hf_bert", prefix="bert.encoder.layer.3.attention.")
    x = torch.randn(2, 11, E, dtype=dtype)
    ln = bert.output.LayerNorm
    with torch.no_grad():
        want = bert(x)[0]
        got = F.layer_norm(ours(x, x, x, need_weights=False)[0] + x, (E,), ln.weight, ln.bias, ln.eps)
        close(got, want, tol)
        back = BertAttention(cfg).to(dtype).eval()
        missing = back.load_state_dict(attn.torch.export_state_dict(ours, "hf_bert"), strict=False).missing_keys
        assert sorted(missing) == ["output.LayerNorm.bias", "output.LayerNorm.weight"]
        back.output.LayerNorm.load_state_dict(ln.state_dict())
        close(back(x)[0], want, tol)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_angles(positions, D, base):
    """cos and sin of positions·base^(-2i/D), i < D/2, in fp64: [N, D/2]."""
    inv = 1.0 / base ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = positions.to(torch.float64)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def rope_half_split(x, cos, sin):
    """Rotary embedding, half-split convention (GPT-NeoX, Hugging Face LLaMA): dims i and i + D/2
    rotate together. x: [B, H, N, D]; cos, sin: [B, N, D/2]."""
    cos, sin = torch.cat((cos, cos), -1)[:, None], torch.cat((sin, sin), -1)[:, None]
    return x * cos + rotate_half(x) * sin


def rope_interleaved(x, cos, sin):
    """The interleaved convention (GPT-J, Meta's original LLaMA): dims 2i and 2i+1 rotate together."""
    cos, sin = cos[:, None], sin[:, None]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_llama_attention_with_half_split_rotary(dtype, tol):
    E, H, Hkv, hd, N, B = 32, 4, 2, 8, 10, 2
    cfg = LlamaConfig(hidden_size=E, num_attention_heads=H, num_key_value_heads=Hkv, head_dim=hd,
                      attention_dropout=0.0, rope_theta=10000.0, attn_implementation="sdpa")
    llama = randomize(LlamaAttention(cfg, layer_idx=0).to(dtype))
    rotary = LlamaRotaryEmbedding(cfg)
    x = torch.randn(B, N, E, dtype=dtype)
    pos = torch.arange(N)
    cos, sin = rotary(x, pos[None].expand(B, N))
    ours = attn.torch.MultiheadAttention(E, H, num_kv_heads=Hkv, bias=False, batch_first=True, dtype=dtype)
    sd = {f"model.layers.0.self_attn.{k}": v for k, v in llama.state_dict().items()}
    assert attn.torch.load_state_dict(ours, sd, names="llama", prefix="model.layers.0.self_attn.").ok
    with torch.no_grad():
        want = llama(x, position_embeddings=(cos, sin), attention_mask=None)[0]  # sdpa: causal without a mask
        # attn.torch.MultiheadAttention has no rotary option: project with its loaded weights, rotate
        # (half-split, the order Hugging Face stores q/k rows in), attend with attn's SDPA, project out.
        w = ours.in_proj_weight
        q = (x @ w[:E].T).view(B, N, H, hd).transpose(1, 2)
        k = (x @ w[E:E + Hkv * hd].T).view(B, N, Hkv, hd).transpose(1, 2)
        v = (x @ w[E + Hkv * hd:].T).view(B, N, Hkv, hd).transpose(1, 2)
        # transformers' rotary tables are the half-split layout of the angles above (fp32 there)...
        c64, s64 = rope_angles(pos, hd, 10000.0)
        close(cos[0].double(), torch.cat((c64, c64), -1), 1e-6)
        close(sin[0].double(), torch.cat((s64, s64), -1), 1e-6)
        # ... and its apply_rotary_pos_emb is the half-split rotation, not the interleaved one.
        half = (cos[..., :hd // 2], sin[..., :hd // 2])
        hq, hk = apply_rotary_pos_emb(q, k, cos, sin)
        close(rope_half_split(q, *half), hq, tol)
        close(rope_half_split(k, *half), hk, tol)
        assert (rope_interleaved(q, *half) - hq).abs().max() > 0.1
        o = attn.torch.scaled_dot_product_attention(rope_half_split(q, *half), rope_half_split(k, *half), v,
                                                    is_causal=True, enable_gqa=True)
        got = ours.out_proj(o.transpose(1, 2).reshape(B, N, E))
        close(got, want, tol)
        back = LlamaAttention(cfg, layer_idx=0).to(dtype).eval()
        back.load_state_dict(attn.torch.export_state_dict(ours, "llama"), strict=True)
        close(back(x, position_embeddings=(cos, sin), attention_mask=None)[0], want, 0)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_gpt2_attention(dtype, tol):
    E, H, N, B = 32, 4, 9, 2
    cfg = GPT2Config(n_embd=E, n_head=H, n_positions=16, attn_pdrop=0.0, resid_pdrop=0.0, attn_implementation="sdpa")
    gpt2 = randomize(GPT2Attention(cfg, layer_idx=0).to(dtype))
    ours = attn.torch.MultiheadAttention(E, H, batch_first=True, dtype=dtype)
    sd = {f"h.0.attn.{k}": v for k, v in gpt2.state_dict().items()}
    sd["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 16, 16, dtype=torch.bool))  # old checkpoints' mask buffer
    assert attn.torch.load_state_dict(ours, sd, names="gpt2", prefix="h.0.attn.").ok
    x = torch.randn(B, N, E, dtype=dtype)
    with torch.no_grad():
        want = gpt2(x)[0]
        close(ours(x, x, x, is_causal=True, need_weights=False)[0], want, tol)
        assert (ours(x, x, x, need_weights=False)[0] - want).abs().max() > 1e-3  # GPT-2 is causal
        back = GPT2Attention(cfg, layer_idx=0).to(dtype).eval()
        back.load_state_dict(attn.torch.export_state_dict(ours, "gpt2"), strict=True)
        close(back(x)[0], want, 0)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("Hkv", [4, 2, 1])  # MHA, GQA, MQA
def test_seed_wqkvo_weights(dtype, tol, Hkv):
    E, H, N, B = 24, 4, 6, 2
    hd = E // H
    g = torch.Generator().manual_seed(3)
    W = {"W_Q": torch.randn(E, E, generator=g, dtype=dtype), "W_K": torch.randn(Hkv * hd, E, generator=g, dtype=dtype),
         "W_V": torch.randn(Hkv * hd, E, generator=g, dtype=dtype), "W_O": torch.randn(E, E, generator=g, dtype=dtype)}
    x = torch.randn(B, N, E, dtype=dtype)
    # The seeds' module, written out: Q = x·W_Qᵀ ([out, in] as nn.Linear stores it), heads, SDPA, W_O.
    q = (x @ W["W_Q"].T).view(B, N, H, hd).transpose(1, 2)
    k = (x @ W["W_K"].T).view(B, N, Hkv, hd).transpose(1, 2)
    v = (x @ W["W_V"].T).view(B, N, Hkv, hd).transpose(1, 2)
    ctx = F.scaled_dot_product_attention(q, k, v, enable_gqa=True).transpose(1, 2).reshape(B, N, E)
    want = ctx @ W["W_O"].T
    ours = attn.torch.MultiheadAttention(E, H, num_kv_heads=Hkv, bias=False, batch_first=True, dtype=dtype)
    assert attn.torch.load_state_dict(ours, W, names="wqkvo").ok
    with torch.no_grad():
        close(ours(x, x, x, need_weights=False)[0], want, tol)
    back = attn.torch.export_state_dict(ours, "wqkvo")
    assert sorted(back) == ["W_K", "W_O", "W_Q", "W_V"]
    for name in W:
        assert torch.equal(back[name], W[name])


def test_strict_and_non_strict_reports():
    E, H = 16, 4
    ours = attn.torch.MultiheadAttention(E, H, num_kv_heads=2, batch_first=True)  # k/v: [8, 16]
    mha = randomize(torch.nn.MultiheadAttention(E, H, batch_first=True))  # k/v: [16, 16]
    sd = {k: v for k, v in mha.state_dict().items() if k != "out_proj.bias"}
    sd["extra"] = torch.zeros(3)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    # An MHA in_proj_weight in a GQA module: split with the module's q_dim = E: q fits, k and v do not.
    msg = ("state_dict: missing keys: out_proj.bias; unexpected keys: extra; wrong shapes or dtypes: "
           "k_proj.weight expected [8, 16] float32, got [16, 16] float32, v_proj.weight expected [8, 16] float32, "
           "got [16, 16] float32, k_proj.bias expected [8] float32, got [16] float32, v_proj.bias expected [8] "
           "float32, got [16] float32")
    with pytest.raises(ValueError) as e:
        attn.torch.load_state_dict(ours, sd, names="torch")
    assert str(e.value) == msg + ", expected exactly the module's keys with their shapes and dtypes (strict load)"
    for k, v in ours.state_dict().items():
        assert torch.equal(v, before[k]), "a failed strict load changes nothing"
    r = attn.torch.load_state_dict(ours, sd, names="torch", strict=False)
    assert r.missing == ["out_proj.bias"] and r.unexpected == ["extra"]
    assert [m[0] for m in r.mismatched] == ["k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias"]
    assert "state_dict: " + r.describe() == msg
    assert torch.equal(ours.in_proj_weight[:E], mha.in_proj_weight[:E]), "q fitted and was loaded"
    assert torch.equal(ours.in_proj_weight[E:], before["in_proj_weight"][E:]), "k, v did not fit: untouched"
    assert torch.equal(ours.out_proj.weight, mha.out_proj.weight)
    # dtypes: floating converts (bf16 -> f32), integers do not.
    sd2 = {k: v.to(torch.bfloat16) for k, v in mha.state_dict().items()}
    sd2["out_proj.bias"] = torch.zeros(E, dtype=torch.int64)
    mha_ours = attn.torch.MultiheadAttention(E, H, batch_first=True)
    r2 = attn.torch.load_state_dict(mha_ours, sd2, strict=False)
    assert r2.mismatched == [("out_proj.bias", "[16] float32", "[16] int64")]
    assert torch.equal(mha_ours.in_proj_weight, mha.in_proj_weight.to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="names: is 'bert', expected one of torch, hf_bert, llama, gpt2, wqkvo"):
        attn.torch.load_state_dict(mha_ours, sd2, names="bert")


def upstream_state_dicts():
    """(names, foreign state dict, prefix, q_dim) of every upstream module above, as float32."""
    torch.manual_seed(0)
    bert = randomize(BertAttention(BertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=8)))
    llama = randomize(LlamaAttention(LlamaConfig(hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
                                                 head_dim=4), layer_idx=0))
    gpt2 = randomize(GPT2Attention(GPT2Config(n_embd=16, n_head=2, n_positions=8), layer_idx=0))
    mha = randomize(torch.nn.MultiheadAttention(16, 2, add_bias_kv=True))
    mha_kv = randomize(torch.nn.MultiheadAttention(16, 2, kdim=5, vdim=3))
    gqa = randomize(attn.torch.MultiheadAttention(16, 4, num_kv_heads=2))
    W = {"W_Q": torch.randn(16, 16), "W_K": torch.randn(8, 16), "W_V": torch.randn(8, 16), "W_O": torch.randn(16, 16)}
    return [("hf_bert", {f"L.{k}": v for k, v in bert.state_dict().items()}, "L.", 0),
            ("llama", llama.state_dict(), "", 0), ("gpt2", gpt2.state_dict(), "", 0),
            ("torch", mha.state_dict(), "", 0), ("torch", mha_kv.state_dict(), "", 0),
            ("torch", gqa.state_dict(), "", 16), ("wqkvo", W, "", 0)]


@pytest.mark.parametrize("case", range(7))
def test_cpp_and_python_maps_agree_and_round_trip(case):
    names, sd, prefix, q_dim = upstream_state_dicts()[case]
    sd_np = {k: v.detach().numpy() for k, v in sd.items()}
    py = to_canonical(sd, names, prefix=prefix, q_dim=q_dim)
    cpp = dict(_core.map_names("to_canonical", names, sd_np, prefix, q_dim))
    assert list(py) == list(cpp)
    for k in py:
        np.testing.assert_array_equal(py[k].detach().numpy(), cpp[k], err_msg=k)
    py_back = from_canonical(py, names, prefix=prefix)
    cpp_back = dict(_core.map_names("from_canonical", names, cpp, prefix, q_dim))
    assert list(py_back) == list(cpp_back) == list(sd)  # the round trip gives the upstream keys back
    for k in sd:
        np.testing.assert_array_equal(py_back[k].detach().numpy(), sd_np[k], err_msg=k)
        np.testing.assert_array_equal(cpp_back[k], sd_np[k], err_msg=k)
