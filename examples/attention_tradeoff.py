"""Attention-type trade-off: MHA, GQA, MQA, linear and local attention in one small TransformerModel.

The same ``attn.torch.TransformerModel`` (encoder-decoder) with each ``attention_type`` on one
synthetic task (reverse a sequence of random tokens): parameter count (measured and by the exact
formula), KV-cache bytes per generated token at inference, training step time, greedy decoding
tokens/s (memory K/V projected once, KV cache or linear attention's state), and the task metric
(exact-sequence and token accuracy on held-out sequences).

``python examples/attention_tradeoff.py [--quick] [--out DIR]`` writes attention_tradeoff.md/.csv/.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table, median_ms, parser, pyplot, setup, write_csv, write_report  # noqa: E402

import attn.torch  # noqa: E402

BOS = 0


def variants(h: int, window: int) -> list:
    return [("MHA", "mha", {}, h), ("GQA-4", "gqa", {"num_groups": 4}, 4), ("GQA-2", "gqa", {"num_groups": 2}, 2),
            ("MQA", "mqa", {}, 1), ("linear (elu+1)", "linear", {}, h),
            (f"local (window {window})", "local", {"window_size": window, "cross_attention_type": "mha"}, h)]


def formula_params(v: int, e: int, h: int, hkv: int, ffn: int, layers_enc: int, layers_dec: int, max_len: int,
                   cross_hkv: int) -> int:
    """Exact parameter count of TransformerModel (weights and biases)."""
    d = e // h

    def attn_p(g):  # q, k, v, out projections with biases: E² (2 + 2·g/H) + 2E + 2·g·d
        return 2 * e * e + 2 * e * g * d + 2 * e + 2 * g * d

    ffn_p = 2 * e * ffn + ffn + e
    enc = layers_enc * (attn_p(hkv) + ffn_p + 4 * e) + 2 * e
    dec = layers_dec * (attn_p(hkv) + attn_p(cross_hkv) + ffn_p + 6 * e) + 2 * e
    return 2 * v * e + max_len * e + enc + dec + e * v + v


def make_data(n: int, length: int, vocab: int, gen: torch.Generator):
    src = torch.randint(1, vocab, (n, length), generator=gen)
    tgt = src.flip(1)
    return src, torch.cat([torch.full((n, 1), BOS), tgt[:, :-1]], dim=1), tgt


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    out = setup(args)
    if args.quick:
        vocab, length, e, h, ffn, layers, steps, batch, n_test, window, reps = 8, 6, 16, 4, 32, 1, 20, 16, 32, 2, 2
    else:
        vocab, length, e, h, ffn, layers, steps, batch, n_test, window, reps = 16, 24, 128, 8, 256, 2, 600, 32, \
            256, 4, 10
    config = (f"Configuration: reverse {length} random tokens (vocab {vocab - 1} + BOS); TransformerModel with "
              f"E = {e}, H = {h} (head_dim {e // h}), FFN {ffn}, {layers} encoder + {layers} decoder layers, pre-norm, "
              f"no dropout; AdamW lr 1e-3, batch {batch}, {steps} steps; fp32, {args.threads} threads, seed "
              f"{args.seed}; `--quick`: {args.quick}. Local attention is the self-attention only (its "
              "cross-attention is MHA).")
    gen = torch.Generator().manual_seed(args.seed)
    test_src, _, test_tgt = make_data(n_test, length, vocab, gen)
    rows, curves = [], {}
    for label, kind, kw, hkv in variants(h, window):
        torch.manual_seed(args.seed)
        model = attn.torch.TransformerModel(vocab, embed_dim=e, num_heads=h, num_encoder_layers=layers,
                                            num_decoder_layers=layers, max_len=length, ffn_dim=ffn,
                                            attention_type=kind, **kw)
        cross_hkv = h if kind == "local" else hkv
        n_params = sum(p.numel() for p in model.parameters())
        want = formula_params(vocab, e, h, hkv, ffn, layers, layers, length, cross_hkv)
        assert n_params == want, (label, n_params, want)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        curve, step_ms = [], []
        early, early_acc = max(1, steps // 4), float("nan")
        for s in tqdm(range(steps), desc=f"train {label}", leave=False, disable=args.quick):
            src, tgt_in, tgt = make_data(batch, length, vocab, gen)
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_ms.append((time.perf_counter() - t0) * 1e3)
            curve.append(loss.item())
            if s + 1 == early:  # learning speed: held-out sequence accuracy after a quarter of the steps
                model.eval()
                early_acc = float((model.generate(test_src, length, BOS) == test_tgt).all(1).float().mean())
                model.train()
        curves[label] = curve
        model.eval()
        pred = model.generate(test_src, length, BOS)
        tok_acc = float((pred == test_tgt).float().mean())
        seq_acc = float((pred == test_tgt).all(1).float().mean())
        dec_src = test_src[:batch]
        gen_ms = median_ms(lambda: model.generate(dec_src, length, BOS), reps)
        d = e // h
        kv_bytes = 0 if kind == "linear" else layers * 2 * hkv * d * 4  # decoder self-attention K and V, fp32
        state = layers * hkv * (d * d + d) * 4 if kind == "linear" else 0
        steady = sorted(step_ms[len(step_ms) // 5:])
        rows.append({"attention": label, "K/V heads": hkv, "parameters": n_params,
                     "KV-cache bytes / generated token": kv_bytes,
                     "memory K/V bytes / source token": layers * 2 * cross_hkv * d * 4,
                     "linear state bytes (constant)": state,
                     "train step ms (median)": steady[len(steady) // 2],
                     "decode tokens/s": batch * length / (gen_ms / 1e3),
                     "final train loss": sum(curve[-10:]) / len(curve[-10:]),
                     "token accuracy": tok_acc, "sequence accuracy": seq_acc,
                     f"sequence accuracy at step {max(1, steps // 4)}": early_acc})
    write_csv(rows, out / "attention_tradeoff.csv")
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    labels = [r["attention"] for r in rows]
    axes[0].bar(labels, [r["train step ms (median)"] for r in rows])
    axes[0].set_ylabel("train step ms (median)")
    axes[1].bar(labels, [r["decode tokens/s"] for r in rows])
    axes[1].set_ylabel("greedy decode tokens/s")
    for label, curve in curves.items():
        k = max(1, len(curve) // 50)
        axes[2].plot([sum(curve[i:i + k]) / len(curve[i:i + k]) for i in range(0, len(curve), k)], label=label)
    axes[2].set_xlabel(f"step / {max(1, steps // 50)}")
    axes[2].set_ylabel("train cross-entropy")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=7)
    for ax in axes[:2]:
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.suptitle("attn.torch.TransformerModel: attention types on sequence reversal")
    fig.tight_layout()
    fig.savefig(out / "attention_tradeoff.png", dpi=110)
    plt.close(fig)
    notes = ("Parameters: measured, equal to the exact formula (asserted): embeddings 2·V·E + max_len·E; per "
             "attention E²(2 + 2·Hkv/H) weights + 2E + 2·Hkv·d biases; FFN 2·E·F + F + E; LayerNorms 2E each; "
             "final norms; output E·V + V. KV-cache bytes per generated token: decoder self-attention K and V, "
             "layers · 2 · Hkv · d · 4 (fp32); linear attention keeps a constant state of layers · Hkv · (d² + d) · 4 "
             "bytes instead; local attention only needs the last window of keys, but attn's KVCache stores every "
             "token (the figure is what it stores). Step time: median after the first 20 % of steps; decode: "
             f"greedy, batch {batch}, median of {reps} runs, {length} tokens each.")
    report = write_report(out / "attention_tradeoff.md", "Attention-type trade-off (MHA / GQA / MQA / linear / local)",
                          config, [("Table", md_table(rows) + "\n\n" + notes)])
    if not args.quick:
        print(report)
    return rows


if __name__ == "__main__":
    main()
