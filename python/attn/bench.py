"""attn vs torch.nn.functional.scaled_dot_product_attention on the CPU, same process.

    python -m attn.bench [--quick] [--threads 2] [--reps 5] [--json FILE]

SDPA: B=1, H=16, D in {64, 128}, N in {1024, 2048}, non-causal, forward and forward+backward,
fp32 and bf16. MultiheadAttention: E in {512, 1024}, H=E/64, N=2048, B=1, need_weights=False.
Medians of --reps runs after one warm-up; ratio = torch time / attn time (> 1: attn is faster).
Both libraries get the same thread count (torch.set_num_threads and attn's num_threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from . import _core
from .torch import MultiheadAttention, scaled_dot_product_attention, set_num_threads


def _median_s(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_sdpa(shapes, dtypes, reps):
    rows = []
    for D, N in shapes:
        for dtype in dtypes:
            q, k, v = (torch.randn(1, 16, N, D, dtype=dtype) for _ in range(3))
            flops = 4 * 16 * N * N * D
            for mode in ("fwd", "fwd+bwd"):
                def run(f):
                    if mode == "fwd":
                        with torch.no_grad():
                            return lambda: f(q, k, v)
                    qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
                    return lambda: f(qq, kk, vv).backward(torch.ones_like(qq))
                t_attn = _median_s(run(scaled_dot_product_attention), reps)
                t_torch = _median_s(run(F.scaled_dot_product_attention), reps)
                total = flops * (3.5 if mode != "fwd" else 1)
                rows.append(dict(kind="sdpa", mode=mode, dtype=str(dtype).replace("torch.", ""), D=D, N=N,
                                 attn_ms=t_attn * 1e3, torch_ms=t_torch * 1e3, ratio=t_torch / t_attn,
                                 attn_gflops=total / t_attn / 1e9))
                print(_fmt(rows[-1]), flush=True)
    return rows


def bench_mha(embeds, n, reps):
    rows = []
    for E in embeds:
        ref = torch.nn.MultiheadAttention(E, E // 64, batch_first=True).eval()
        ours = MultiheadAttention(E, E // 64, batch_first=True).eval()
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(1, n, E)
        with torch.no_grad():
            t_attn = _median_s(lambda: ours(x, x, x, need_weights=False), reps)
            t_torch = _median_s(lambda: ref(x, x, x, need_weights=False), reps)
        rows.append(dict(kind="mha", mode="fwd", dtype="float32", D=64, N=n, E=E, attn_ms=t_attn * 1e3,
                         torch_ms=t_torch * 1e3, ratio=t_torch / t_attn))
        print(_fmt(rows[-1]), flush=True)
    return rows


def _fmt(r):
    shape = f"E={r['E']:<5} H={r['E'] // 64:<3} N={r['N']:<5}" if r["kind"] == "mha" else f"H=16 D={r['D']:<4} N={r['N']:<5}"
    return (f"{r['kind']:<5} {r['mode']:<8} {r['dtype']:<9} {shape}  attn {r['attn_ms']:9.2f} ms  "
            f"torch {r['torch_ms']:9.2f} ms  ratio {r['ratio']:5.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one tiny shape per table (smoke test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", help="write the rows with the machine description here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    print(f"attn {_core.version()} vs torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus; ratio = torch / attn")
    if args.quick:
        rows = bench_sdpa([(64, 128)], [torch.float32], 1) + bench_mha([128], 128, 1)
    else:
        rows = bench_sdpa([(64, 1024), (128, 1024), (64, 2048), (128, 2048)], [torch.float32, torch.bfloat16],
                          args.reps) + bench_mha([512, 1024], 2048, args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(threads=args.threads, torch=torch.__version__, machine=platform.machine(),
                           rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
