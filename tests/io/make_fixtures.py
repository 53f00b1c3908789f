"""Writes tests/io/fixtures/*.safetensors for tests/io/module_state_test.cpp: the state dict of an
upstream module (torch.nn.MultiheadAttention, Hugging Face BertAttention / LlamaAttention /
GPT2Attention; small configs, random weights, float64) under "model." + its own names, an input
"x" [B, L, E] and that module's output "y". For BERT, "y" is the output of output.dense (captured
by a hook, before the residual and LayerNorm that are not attention's). Run from the repository
root: python tests/io/make_fixtures.py"""

import os

import torch
from safetensors.torch import save_file
from transformers import BertConfig, GPT2Config, LlamaConfig
from transformers.models.bert.modeling_bert import BertAttention
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

out = os.path.join(os.path.dirname(__file__), "fixtures")
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
B, L, E, H = 2, 7, 16, 4


def randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype) * 0.3)
    return m.eval()


def write(name, module, x, y, **meta):
    sd = {f"model.{k}": v.contiguous() for k, v in module.state_dict().items()}
    sd.update({"x": x.contiguous(), "y": y.detach().contiguous()})
    save_file(sd, os.path.join(out, name), metadata={k: str(v) for k, v in meta.items()})


x = torch.randn(B, L, E, dtype=torch.float64)
with torch.no_grad():
    mha = randomize(torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64))
    write("torch_mha.safetensors", mha, x, mha(x, x, x, need_weights=False)[0], heads=H)

    cfg = BertConfig(hidden_size=E, num_attention_heads=H, intermediate_size=8, attention_probs_dropout_prob=0.0,
                     hidden_dropout_prob=0.0, attn_implementation="eager")
    bert = randomize(BertAttention(cfg).double())
    seen = {}
    bert.output.dense.register_forward_hook(lambda m, i, o: seen.setdefault("y", o))
    bert(x)
    write("hf_bert.safetensors", bert, x, seen["y"], heads=H)

    cfg = GPT2Config(n_embd=E, n_head=H, n_positions=16, attn_pdrop=0.0, resid_pdrop=0.0, attn_implementation="sdpa")
    gpt2 = randomize(GPT2Attention(cfg, layer_idx=0).double())
    write("gpt2.safetensors", gpt2, x, gpt2(x)[0], heads=H, causal=1)

    cfg = LlamaConfig(hidden_size=E, num_attention_heads=H, num_key_value_heads=2, head_dim=E // H,
                      attention_dropout=0.0, rope_theta=10000.0, attn_implementation="sdpa")
    llama = randomize(LlamaAttention(cfg, layer_idx=0).double())
    cos, sin = LlamaRotaryEmbedding(cfg)(x, torch.arange(L)[None].expand(B, L))
    write("llama.safetensors", llama, x, llama(x, position_embeddings=(cos, sin), attention_mask=None)[0],
          heads=H, kv_heads=2, causal=1, rope_theta=10000.0)
