"""Attention-type trade-off: MHA, GQA, MQA, linear and local attention in one small TransformerModel.

The same ``attn.torch.TransformerModel`` (encoder-decoder) with each ``attention_type`` on one
synthetic task: parameter count (measured and by the exact formula), KV-cache bytes per generated
token at inference, training step time, greedy decoding tokens/s (memory K/V projected once, KV cache
or linear attention's state), and the task metric on held-out data.

Tasks (``--task``):
  recall   multi-query associative recall (the default): the source is P key-value pairs
           ``k1 v1 k2 v2 ...`` (distinct keys), the decoder reads the P keys again in a random order
           and must output each one's value. Attention has to find the matching key by content
           and read the value stored beside it; a fixed-size state (linear attention) has to hold
           all P bindings at once. This is the task on which Arora et al. 2023 ("Zoology: Measuring
           and Improving Recall in Efficient Language Models") separate softmax from linear
           attention. Metric: accuracy of the values (teacher-forced: each answer depends only on
           its query) and the first step at which held-out accuracy reached 95 %.
  reverse  reverse a sequence of random tokens (greedy decoding); every attention type solves it.

``python examples/attention_tradeoff.py [--quick] [--task recall|reverse] [--out DIR]`` writes
attention_tradeoff.md/.csv/.png.
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


def reverse_data(n: int, length: int, vocab: int, gen: torch.Generator):
    """Reversal: src [n, length] random tokens 1..vocab-1; decoder input BOS + target shifted."""
    src = torch.randint(1, vocab, (n, length), generator=gen)
    tgt = src.flip(1)
    return src, torch.cat([torch.full((n, 1), BOS), tgt[:, :-1]], dim=1), tgt


def recall_data(n: int, pairs: int, symbols: int, gen: torch.Generator):
    """Associative recall: keys are tokens 1..symbols, values symbols+1..2·symbols. src [n, 2·pairs]
    = k1 v1 ... (distinct keys); decoder input [n, pairs] = the same keys permuted; target = their values."""
    keys = torch.stack([torch.randperm(symbols, generator=gen)[:pairs] for _ in range(n)]) + 1
    vals = torch.randint(symbols + 1, 2 * symbols + 1, (n, pairs), generator=gen)
    order = torch.stack([torch.randperm(pairs, generator=gen) for _ in range(n)])
    src = torch.stack([keys, vals], dim=2).flatten(1)
    return src, keys.gather(1, order), vals.gather(1, order)


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--task", choices=("recall", "reverse"), default="recall", help="the synthetic task (default: recall)")
    args = p.parse_args(argv)
    out = setup(args)
    recall = args.task == "recall"
    if args.quick:
        e, h, ffn, layers, steps, batch, n_test, window, reps, every = 16, 4, 32, 1, 20, 16, 32, 2, 2, 10
        length, vocab, symbols, lr = (4, 9, 4, 3e-3) if recall else (6, 8, 0, 1e-3)
    else:
        e, h, ffn, layers, batch, n_test, window, reps, every = 128, 8, 256, 2, 32, 256, 4, 10, 100
        length, vocab, symbols, lr, steps = (8, 33, 16, 3e-3, 3000) if recall else (24, 16, 0, 1e-3, 600)
    if recall:
        task = (f"multi-query associative recall: {length} key-value pairs (keys and values each from {symbols} "
                f"symbols; vocab {vocab} with BOS), the {length} keys queried again in random order")
        max_len = 2 * length

        def data(n):
            return recall_data(n, length, symbols, gen)
    else:
        task = f"reverse {length} random tokens (vocab {vocab - 1} + BOS)"
        max_len = length

        def data(n):
            return reverse_data(n, length, vocab, gen)
    config = (f"Configuration: {task}; TransformerModel with E = {e}, H = {h} (head_dim {e // h}), FFN {ffn}, "
              f"{layers} encoder + {layers} decoder layers, pre-norm, no dropout; AdamW lr {lr:g}, batch {batch}, "
              f"{steps} steps; fp32, {args.threads} threads, seed {args.seed}; `--quick`: {args.quick}. Local "
              "attention is the self-attention only (its cross-attention is MHA).")
    gen = torch.Generator().manual_seed(args.seed)
    test_src, test_in, test_tgt = data(n_test)

    @torch.no_grad()
    def predict(model):
        model.eval()
        # recall: each answer depends only on its own query, so the teacher-forced argmax is the answer
        pred = model(test_src, test_in).argmax(-1) if recall else model.generate(test_src, length, BOS)
        model.train()
        return pred

    rows, curves = [], {}
    reach = f"first step with held-out token accuracy ≥ 95 % (checked every {every})"
    for label, kind, kw, hkv in variants(h, window):
        torch.manual_seed(args.seed)
        model = attn.torch.TransformerModel(vocab, embed_dim=e, num_heads=h, num_encoder_layers=layers,
                                            num_decoder_layers=layers, max_len=max_len, ffn_dim=ffn,
                                            attention_type=kind, **kw)
        cross_hkv = h if kind == "local" else hkv
        n_params = sum(p.numel() for p in model.parameters())
        want = formula_params(vocab, e, h, hkv, ffn, layers, layers, max_len, cross_hkv)
        assert n_params == want, (label, n_params, want)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        curve, step_ms, reached = [], [], None
        for s in tqdm(range(steps), desc=f"train {label}", leave=False, disable=args.quick):
            src, tgt_in, tgt = data(batch)
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_ms.append((time.perf_counter() - t0) * 1e3)
            curve.append(loss.item())
            if reached is None and (s + 1) % every == 0 and float((predict(model) == test_tgt).float().mean()) >= 0.95:
                reached = s + 1
        curves[label] = curve
        pred = predict(model)
        model.eval()
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
                     reach: reached if reached is not None else f"not within {steps}"})
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
    fig.suptitle("attn.torch.TransformerModel: attention types on " + ("associative recall" if recall else "sequence reversal"))
    fig.tight_layout()
    fig.savefig(out / "attention_tradeoff.png", dpi=110)
    plt.close(fig)
    notes = ("Parameters: measured, equal to the exact formula (asserted): embeddings 2·V·E + max_len·E; per "
             "attention E²(2 + 2·Hkv/H) weights + 2E + 2·Hkv·d biases; FFN 2·E·F + F + E; LayerNorms 2E each; "
             "final norms; output E·V + V. KV-cache bytes per generated token: decoder self-attention K and V, "
             "layers · 2 · Hkv · d · 4 (fp32); linear attention keeps a constant state of layers · Hkv · (d² + d) · 4 "
             "bytes instead; local attention only needs the last window of keys, but attn's KVCache stores every "
             "token (the figure is what it stores). Step time: median after the first 20 % of steps; decode: "
             f"greedy, batch {batch}, median of {reps} runs, {length} tokens each (for recall a speed figure only: the "
             "accuracy is teacher-forced). Sequence accuracy: every token of a held-out sequence right.")
    report = write_report(out / "attention_tradeoff.md", "Attention-type trade-off (MHA / GQA / MQA / linear / local)",
                          config, [("Table", md_table(rows) + "\n\n" + notes)])
    if not args.quick:
        print(report)
    return rows


if __name__ == "__main__":
    main()
