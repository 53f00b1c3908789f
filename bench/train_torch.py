#!/usr/bin/env python3
"""The torch side of the training-step benchmark against `attn train regression` and `attn train lm`
(docs/training.md, "Training step against torch"; bench/train_compare.py runs both sides).

--model regression: attn's RegressionTransformer with `--positions learned` in torch — token-type
Embedding(3, E) + Linear(1, E) of the value + learned positions Embedding(L, E),
torch.nn.TransformerEncoder of pre-norm (norm_first) TransformerEncoderLayer(E, heads, ffn,
dropout=0, activation=gelu, batch_first) with a final LayerNorm, mean pooling over the valid
positions, Linear(E, 1) — on batches of the same task (lengths uniform in [L/2, L], key padding
mask); MSE.

--model lm: attn's TrainableLlama (`attn train lm`) as transformers' LlamaForCausalLM of the same
config (byte vocabulary 256, RMSNorm eps 1e-5, RoPE θ 1e4, GQA, SwiGLU, no biases, untied head,
torch's SDPA), next-token cross-entropy on random byte windows.

One step = zero_grad, forward, loss, backward, clip_grad_norm 1, AdamW, timed on the given threads;
--bf16 runs forward and loss under torch.autocast("cpu", bfloat16) (weights, gradients and AdamW
stay fp32, as attn's --bf16). Prints the median step time (first step dropped), the peak RSS and
the RSS before the model was built, and with --profile N the split of N more steps by the torch
profiler's self CPU time: GEMMs (mm, addmm, bmm, linear's kernels), attention (the SDPA kernels
forward and backward) and the rest. The last line is the same as JSON.

    python bench/train_torch.py --model lm --dim 256 --heads 8 --kv-heads 2 --ffn 704 --layers 4 \
        --seq-len 512 --batch 4 --steps 8 --threads 2 --bf16 --profile 2
"""
import argparse, json, resource, statistics, time

import torch


class Regression(torch.nn.Module):
    def __init__(self, E, H, F, layers, L):
        super().__init__()
        self.tok = torch.nn.Embedding(3, E)
        self.val = torch.nn.Linear(1, E)
        self.pos = torch.nn.Embedding(L, E)
        layer = torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0, activation="gelu", batch_first=True,
                                                 norm_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, layers, norm=torch.nn.LayerNorm(E), enable_nested_tensor=False)
        self.head = torch.nn.Linear(E, 1)

    def forward(self, types, values, lengths):
        B, L = types.shape
        x = self.tok(types) + self.val(values.unsqueeze(-1)) + self.pos(torch.arange(L))[None]
        pad = torch.arange(L)[None, :] >= lengths[:, None]  # True = padding (torch's convention)
        h = self.enc(x, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / lengths[:, None].to(h.dtype)).squeeze(-1)


def regression_batch(B, L, gen):
    lengths = torch.randint((L + 1) // 2, L + 1, (B,), generator=gen)
    types = torch.randint(0, 3, (B, L), generator=gen)
    values = torch.rand(B, L, generator=gen) * 2 - 1
    return (types, values, lengths), torch.randn(B, generator=gen)


def make_lm(a):
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=256, hidden_size=a.dim, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                         num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=a.seq_len,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, attention_bias=False,
                         mlp_bias=False, use_cache=False)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::_addmm_activation",
            "mkldnn", "aten::linear_backward", "aten::_mkldnn")
ATTN_OPS = ("scaled_dot_product", "flash_attention", "efficient_attention")


def category(name):
    if any(k in name for k in ATTN_OPS):
        return "attention"
    if any(name.startswith(k) or k in name for k in GEMM_OPS):
        return "gemm"
    return "rest"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("regression", "lm"), default="regression")
    for k, v in dict(dim=256, heads=8, kv_heads=2, ffn=1024, layers=4, seq_len=512, batch=4, steps=12, threads=2,
                     profile=0).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base_rss = rss_mib()
    gen = torch.Generator().manual_seed(0)
    if a.model == "regression":
        model = Regression(a.dim, a.heads, a.ffn, a.layers, a.seq_len)
        wd = 0.01

        def data():
            return regression_batch(a.batch, a.seq_len, gen)

        def loss_of(inputs, y):
            return torch.nn.functional.mse_loss(model(*inputs).float(), y)
    else:
        model = make_lm(a)
        wd = 0.1

        def data():
            ids = torch.randint(0, 256, (a.batch, a.seq_len + 1), generator=gen)
            return (ids[:, :-1],), ids[:, 1:]

        def loss_of(inputs, y):
            logits = model(input_ids=inputs[0]).logits
            return torch.nn.functional.cross_entropy(logits.float().reshape(-1, 256), y.reshape(-1))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=wd)

    def step():
        inputs, y = data()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = loss_of(inputs, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return time.perf_counter() - t0

    ts = [step() for _ in range(a.steps)]
    median_ms = 1e3 * statistics.median(ts[1:] if len(ts) > 1 else ts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    params = sum(p.numel() for p in model.parameters())
    out = dict(framework="torch", version=torch.__version__, model=a.model, bf16=a.bf16, threads=a.threads,
               params=params, steps=a.steps, median_ms=round(median_ms, 2), step_ms=[round(1e3 * t, 2) for t in ts],
               peak_rss_mib=round(peak, 1), base_rss_mib=round(base_rss, 1))
    print(f"torch {torch.__version__} {a.model}{' bf16 autocast' if a.bf16 else ''}: {params} parameters, "
          f"{a.threads} threads, median step {median_ms:.1f} ms over {max(len(ts) - 1, 1)} steps (first dropped), "
          f"peak RSS {peak:.1f} MiB (RSS before the model {base_rss:.1f} MiB)")
    if a.profile > 0:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.profile):
                step()
        split = {"gemm": 0.0, "attention": 0.0, "rest": 0.0}
        ops = {}
        for e in prof.key_averages():
            us = e.self_cpu_time_total
            split[category(e.key)] += us
            ops[e.key] = us
        total = sum(split.values())
        out["split_ms_per_step"] = {k: round(v / 1e3 / a.profile, 1) for k, v in split.items()}
        out["top_ops_ms_per_step"] = {k: round(v / 1e3 / a.profile, 1)
                                      for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:12]}
        print("profile (self CPU time per step): " + ", ".join(
            f"{k} {v / 1e3 / a.profile:.0f} ms ({100 * v / total:.0f} %)" for k, v in split.items()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
