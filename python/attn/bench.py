"""attn vs torch.nn.functional.scaled_dot_product_attention on the CPU, same process.

    python -m attn.bench [--quick] [--tables sdpa,mha,modules] [--dtypes float32,bfloat16] [--threads 2]
                         [--reps 5] [--json FILE]

sdpa: B=1, H=16, D in {64, 128}, N in {1024, 2048}, non-causal, forward and forward+backward,
fp32 and bf16. mha: the drop-in MultiheadAttention, E in {512, 1024}, H=E/64, N=2048, B=1,
need_weights=False. modules: the seeds' classes (docs/modules.md) MultiHeadAttention and
GroupQueryAttention (E/256 groups) against the same computation in torch (the seeds' pattern:
nn.Linear projections + torch's SDPA, enable_gqa for GQA) and, for MHA, torch.nn.MultiheadAttention;
E in {512, 1024}, H=E/64, N in {512, 2048}, B=1, fp32 and bf16, forward and forward+backward. The
projections are the same torch GEMMs on both sides, so the speed-up is bounded by the attention's
share: each row also times both SDPAs alone on the module's shapes and gives
share = torch SDPA / torch module, r = torch SDPA / attn SDPA and the Amdahl bound
1 / ((1 - share) + share / r) on the speed-up over Linear+SDPA.

Medians of --reps runs after one warm-up, the contenders of a row interleaved in each rep;
ratio = torch time / attn time (> 1: attn is faster). Both libraries get the same thread count
(torch.set_num_threads and attn's num_threads), pinned (OMP_PROC_BIND=spread, OMP_PLACES=cores:
the process re-executes itself once with them unless they are set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from . import _core
from .torch import GroupQueryAttention, MultiHeadAttention, MultiheadAttention, scaled_dot_product_attention, \
    set_num_threads


def _median_s(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _interleaved_medians_s(fns, reps: int):
    """Median seconds of each of fns, one warm-up each, then `reps` rounds calling each in turn."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


class LinearSdpaAttention(torch.nn.Module):
    """The seeds' pattern in plain torch: nn.Linear q/k/v/out projections and torch's SDPA."""

    def __init__(self, embed_dim, num_heads, num_groups, dtype):
        super().__init__()
        self.h, self.g, self.d = num_heads, num_groups, embed_dim // num_heads
        kv = num_groups * self.d
        self.q_proj = torch.nn.Linear(embed_dim, embed_dim, dtype=dtype)
        self.k_proj = torch.nn.Linear(embed_dim, kv, dtype=dtype)
        self.v_proj = torch.nn.Linear(embed_dim, kv, dtype=dtype)
        self.out_proj = torch.nn.Linear(embed_dim, embed_dim, dtype=dtype)

    def forward(self, x):
        b, n, e = x.shape
        q = self.q_proj(x).view(b, n, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.g, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.g, self.d).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.g != self.h)
        return self.out_proj(o.transpose(1, 2).reshape(b, n, e))


def bench_modules(embeds, lengths, dtypes, reps):
    rows = []
    for dtype in dtypes:
        for E in embeds:
            H = E // 64
            for N in lengths:
                for kind, G in (("mha", H), ("gqa", max(1, E // 256))):
                    ours = (MultiHeadAttention(E, H, dtype=dtype) if kind == "mha"
                            else GroupQueryAttention(E, H, G, dtype=dtype))
                    ref = LinearSdpaAttention(E, H, G, dtype)
                    ref.load_state_dict(ours.state_dict())
                    contenders = {"attn": ours, "linear_sdpa": ref}
                    if kind == "mha":
                        mha = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=dtype)
                        contenders["torch_mha"] = lambda t, m=mha: m(t, t, t, need_weights=False)[0]
                    x = torch.randn(1, N, E, dtype=dtype)
                    shapes = ((1, H, N, 64), (1, G, N, 64))
                    q, k, v = torch.randn(shapes[0], dtype=dtype), *(torch.randn(shapes[1], dtype=dtype) for _ in "kv")
                    sdpas = {"attn_sdpa": lambda q, k, v: scaled_dot_product_attention(q, k, v, enable_gqa=G != H),
                             "torch_sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=G != H)}
                    for mode in ("fwd", "fwd+bwd"):
                        fns = []
                        for f in contenders.values():
                            fns.append(_run(lambda t, f=f: f(t), (x,), mode))
                        for f in sdpas.values():
                            fns.append(_run(f, (q, k, v), mode))
                        names = list(contenders) + list(sdpas)
                        t = dict(zip(names, _interleaved_medians_s(fns, reps)))
                        share = t["torch_sdpa"] / t["linear_sdpa"]
                        r = t["torch_sdpa"] / t["attn_sdpa"]
                        row = dict(kind="modules", cls=kind, mode=mode, dtype=str(dtype).replace("torch.", ""), E=E,
                                   H=H, G=G, N=N, **{f"{n}_ms": v * 1e3 for n, v in t.items()},
                                   ratio_linear_sdpa=t["linear_sdpa"] / t["attn"], attention_share=share,
                                   sdpa_ratio=r, amdahl_bound=1 / ((1 - share) + share / r))
                        if "torch_mha" in t:
                            row["ratio_torch_mha"] = t["torch_mha"] / t["attn"]
                        rows.append(row)
                        print(_fmt_module(row), flush=True)
    return rows


def _run(f, inputs, mode):
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                f(*inputs)
        return fwd
    leaves = [t.clone().requires_grad_() for t in inputs]

    def fwd_bwd():
        out = f(*leaves)
        out.backward(torch.ones_like(out))
    return fwd_bwd


def _fmt_module(r):
    mha = f"  torch MHA {r['torch_mha_ms']:8.1f} ms ({r['ratio_torch_mha']:4.2f}x)" if "torch_mha_ms" in r else " " * 30
    return (f"{r['cls']:<4} {r['mode']:<8} {r['dtype']:<9} E={r['E']:<5} H={r['H']:<3} G={r['G']:<3} N={r['N']:<5} "
            f"attn {r['attn_ms']:8.1f} ms  Linear+SDPA {r['linear_sdpa_ms']:8.1f} ms ({r['ratio_linear_sdpa']:4.2f}x)"
            f"{mha}  | SDPA attn {r['attn_sdpa_ms']:7.1f} torch {r['torch_sdpa_ms']:7.1f} ms: share "
            f"{r['attention_share']:4.2f}, r {r['sdpa_ratio']:4.2f}, bound {r['amdahl_bound']:4.2f}x")


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


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one tiny shape per table (smoke test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", help="write the rows with the machine description here")
    ap.add_argument("--tables", default="sdpa,mha,modules", help="comma-separated subset of sdpa, mha, modules")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated subset of float32, bfloat16")
    args = ap.parse_args(argv)
    tables = args.tables.split(",")
    for t in tables:
        if t not in ("sdpa", "mha", "modules"):
            ap.error(f"--tables: {t!r} is not one of sdpa, mha, modules")
    dtypes = []
    for d in args.dtypes.split(","):
        if d not in ("float32", "bfloat16"):
            ap.error(f"--dtypes: {d!r} is not one of float32, bfloat16")
        dtypes.append(getattr(torch, d))
    if "OMP_PROC_BIND" not in os.environ and argv is None:  # pin threads: re-execute once with them set
        env = dict(os.environ, OMP_PROC_BIND="spread", OMP_PLACES="cores")
        os.execve(sys.executable, [sys.executable, "-m", "attn.bench", *sys.argv[1:]], env)
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    print(f"attn {_core.version()} vs torch {torch.__version__}, {args.threads} threads "
          f"(OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND')}, OMP_PLACES={os.environ.get('OMP_PLACES')}), "
          f"{_cpu_name()}, {os.cpu_count()} cpus; ratio = torch / attn")
    rows = []
    if args.quick:
        rows += bench_sdpa([(64, 128)], [torch.float32], 1) if "sdpa" in tables else []
        rows += bench_mha([128], 128, 1) if "mha" in tables else []
        rows += bench_modules([128], [64], [torch.float32], 1) if "modules" in tables else []
    else:
        if "sdpa" in tables:
            rows += bench_sdpa([(64, 1024), (128, 1024), (64, 2048), (128, 2048)], dtypes, args.reps)
        if "mha" in tables:
            rows += bench_mha([512, 1024], 2048, args.reps)
        if "modules" in tables:
            rows += bench_modules([512, 1024], [512, 2048], dtypes, args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(threads=args.threads, torch=torch.__version__, machine=platform.machine(),
                           cpu=_cpu_name(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
