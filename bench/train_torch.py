#!/usr/bin/env python3
"""The torch side of the training-step benchmark of `attn train regression` (docs/training.md).

Builds the same model as attn's RegressionTransformer with `--positions learned` in torch —
token-type Embedding(3, E) + Linear(1, E) of the value + learned positions Embedding(L, E),
torch.nn.TransformerEncoder of pre-norm (norm_first) TransformerEncoderLayer(E, heads, ffn,
dropout=0, activation=gelu, batch_first) with a final LayerNorm, mean pooling over the valid
positions, Linear(E, 1) — on batches of the same task (lengths uniform in [L/2, L], key padding
mask), and times training steps (zero_grad, forward, MSE, backward, clip_grad_norm 1, AdamW) on the
given threads. Prints the median step time in ms.

    python bench/train_torch.py --dim 256 --heads 8 --ffn 1024 --layers 4 --seq-len 512 --batch 4 \
        --steps 12 --threads 2
"""
import argparse, statistics, time

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


def batch(B, L, gen):
    lengths = torch.randint((L + 1) // 2, L + 1, (B,), generator=gen)
    types = torch.randint(0, 3, (B, L), generator=gen)
    values = torch.rand(B, L, generator=gen) * 2 - 1
    return types, values, lengths, torch.randn(B, generator=gen)


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(dim=256, heads=8, ffn=1024, layers=4, seq_len=512, batch=4, steps=12, threads=2).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Regression(a.dim, a.heads, a.ffn, a.layers, a.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    ts = []
    for _ in range(a.steps):
        types, values, lengths, y = batch(a.batch, a.seq_len, gen)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.mse_loss(model(types, values, lengths), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ts.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}: {params} parameters, {a.threads} threads, median step "
          f"{1e3 * statistics.median(ts[1:]):.1f} ms over {a.steps - 1} steps (first step dropped)")


if __name__ == "__main__":
    main()
