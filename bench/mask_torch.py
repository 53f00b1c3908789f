#!/usr/bin/env python3
"""attn's forward with a float bias, a bool mask and no mask against torch's CPU SDPA with the same
attn_mask, same process, interleaved (docs/performance.md, "additive score terms").

For each shape (B=1, H, N, D) and dtype: attn.torch.scaled_dot_product_attention and
torch.nn.functional.scaled_dot_product_attention with attn_mask = None, a bool mask (70 % kept)
[N, N], a float bias [N, N] (broadcast over B and H: stride 0) and a float bias [1, H, N, N].
Medians of --reps rounds after one warm-up, every contender of a shape called once per round.
ratio = torch / attn (> 1: attn faster); cost = a masked run's time / the unmasked run's time
of the same library.

    python bench/mask_torch.py [--dtypes float32,bfloat16] [--D 64,128] [--N 1024,2048] [--H 8,16]
                               [--threads 2] [--reps 5] [--json out.json]
"""
import argparse, json, os, platform, statistics, sys, time

import torch
import torch.nn.functional as F

import attn
from attn.torch import scaled_dot_product_attention as attn_sdpa, set_num_threads


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def interleaved_ms(fns, reps):
    for fn in fns:
        fn()
    ts = [[] for _ in fns]
    for _ in range(reps):
        for fn, t in zip(fns, ts):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(t) for t in ts]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--D", default="64,128")
    ap.add_argument("--N", default="1024,2048")
    ap.add_argument("--H", default="8,16")
    ap.add_argument("--masks", default="none,bool,bias_nn,bias_1hnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true", help="time attn only")
    ap.add_argument("--json")
    args = ap.parse_args()
    if "OMP_PROC_BIND" not in os.environ:  # pin threads: re-execute once with them set
        env = dict(os.environ, OMP_PROC_BIND="spread", OMP_PLACES="cores")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    ints = lambda s: [int(x) for x in s.split(",")]
    masks = args.masks.split(",")
    print(f"attn {attn.__file__} vs torch {torch.__version__}, {args.threads} threads pinned, {cpu_name()}; "
          f"ratio = torch / attn, cost = masked / unmasked of the same library", flush=True)
    rows = []
    g = torch.Generator().manual_seed(0)
    for dtype in [getattr(torch, d) for d in args.dtypes.split(",")]:
        for D in ints(args.D):
            for N in ints(args.N):
                for H in ints(args.H):
                    q, k, v = (torch.randn(1, H, N, D, generator=g).to(dtype) for _ in range(3))
                    mask_of = {
                        "none": None,
                        "bool": torch.rand(N, N, generator=g) < 0.7,
                        "bias_nn": torch.randn(N, N, generator=g).to(dtype),
                        "bias_1hnn": torch.randn(1, H, N, N, generator=g).to(dtype),
                    }
                    fns, names = [], []
                    for m in masks:
                        mk = mask_of[m]
                        fns.append(lambda mk=mk: attn_sdpa(q, k, v, attn_mask=mk))
                        names.append(("attn", m))
                        if not args.no_torch:
                            fns.append(lambda mk=mk: F.scaled_dot_product_attention(q, k, v, attn_mask=mk))
                            names.append(("torch", m))
                    with torch.no_grad():
                        ms = dict(zip(names, interleaved_ms(fns, args.reps)))
                    gflop = 4.0 * H * N * N * D / 1e9
                    for m in masks:
                        row = dict(dtype=str(dtype).replace("torch.", ""), H=H, N=N, D=D, mask=m, attn_ms=ms[("attn", m)],
                                   attn_gflops=gflop / ms[("attn", m)] * 1e3,
                                   attn_cost=ms[("attn", m)] / ms[("attn", "none")] if "none" in masks else None)
                        if not args.no_torch:
                            row.update(torch_ms=ms[("torch", m)], ratio=ms[("torch", m)] / ms[("attn", m)],
                                       torch_cost=ms[("torch", m)] / ms[("torch", "none")] if "none" in masks else None)
                        rows.append(row)
                        tail = (f"  torch {row['torch_ms']:8.2f} ms  ratio {row['ratio']:5.2f}x"
                                + (f"  torch cost {row['torch_cost']:4.2f}" if row.get("torch_cost") else "")
                                if not args.no_torch else "")
                        cost = f"  cost {row['attn_cost']:4.2f}" if row["attn_cost"] else ""
                        print(f"{row['dtype']:<9} H={H:<3} N={N:<5} D={D:<4} {m:<10} attn {row['attn_ms']:8.2f} ms "
                              f"{row['attn_gflops']:6.1f} GFLOP/s{cost}{tail}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpu=cpu_name(), threads=args.threads, torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
