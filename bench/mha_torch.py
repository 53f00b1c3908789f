#!/usr/bin/env python3
"""The torch side of `attn bench --op mha` (bench/mha_bench.cpp), run in the same sitting.

For every configuration of attn's JSON (`attn bench --op mha --json F`), times on the same
threads: torch.nn.MultiheadAttention (mha; need_weights=False) or, for gqa/mqa, which torch's
module cannot express, the same composition in torch (one fused nn.Linear for q/k/v,
F.scaled_dot_product_attention(enable_gqa=True), nn.Linear out); and torch's SDPA alone on
[B, H, N, hd] tensors. Forward, and forward+backward (gradients of the input and every
parameter). With attn's `--bf16-matmuls` JSON, torch runs under torch.autocast("cpu", bfloat16).
Prints speed-up = torch / attn end to end beside its Amdahl bound: torch's time with
only its attention share sped up by attn's SDPA ratio, 1 / ((1 - a) + a / s).

With `--gemms` and a `--bf16-matmuls` JSON, instead: torch's bf16 matmul (MKL / its oneDNN) on
the same-shape projection GEMMs that attn's paired reference times (bare, on bf16 tensors; torch's
results are bf16, attn's fp32, both accumulated in fp32),
against that reference's rate in attn's run (another process, so not paired: which is the best
bf16 GEMM here, not a ratio to trust to 5 %).

    python bench/mha_torch.py attn_mha.json [--threads 2] [--reps 5] [--json out.json] [--gemms]
"""
import argparse, json, statistics, time

import torch
import torch.nn.functional as F


def median_ms(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


class Composition(torch.nn.Module):
    """GQA/MQA self-attention in torch: fused q/k/v Linear, SDPA with enable_gqa, out Linear."""

    def __init__(self, E, H, Hkv):
        super().__init__()
        self.H, self.Hkv, self.hd = H, Hkv, E // H
        self.qkv = torch.nn.Linear(E, E + 2 * Hkv * self.hd)
        self.out = torch.nn.Linear(E, E)

    def forward(self, x, causal):
        B, N, E = x.shape
        kv = self.Hkv * self.hd
        q, k, v = self.qkv(x).split([E, kv, kv], dim=-1)
        q = q.view(B, N, self.H, self.hd).transpose(1, 2)
        k = k.view(B, N, self.Hkv, self.hd).transpose(1, 2)
        v = v.view(B, N, self.Hkv, self.hd).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=self.Hkv != self.H)
        return self.out(o.transpose(1, 2).reshape(B, N, E))


def time_config(r, causal, reps, bf16=False):
    B, E, H, Hkv, N = r["B"], r["E"], r["Hq"], r["Hkv"], r["N"]
    bwd = r["op"] == "fwdbwd"
    x = torch.randn(B, N, E, requires_grad=bwd)
    if r["kind"] == "mha":
        m = torch.nn.MultiheadAttention(E, H, batch_first=True)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(N) if causal else None
        run = lambda: m(x, x, x, need_weights=False, attn_mask=mask, is_causal=causal)[0]
    else:
        m = Composition(E, H, Hkv)
        run = lambda: m(x, causal)
    dout = torch.randn(B, N, E)

    def module():
        y = run()
        if bwd:
            y.backward(dout)

    hd = E // H
    q = torch.randn(B, H, N, hd, requires_grad=bwd)
    k = torch.randn(B, Hkv, N, hd, requires_grad=bwd)
    v = torch.randn(B, Hkv, N, hd, requires_grad=bwd)
    do = torch.randn(B, H, N, hd)

    def sdpa():
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=Hkv != H)
        if bwd:
            o.backward(do)

    with torch.no_grad() if not bwd else torch.enable_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        return median_ms(module, reps), median_ms(sdpa, reps)


def projection_gemms(r):
    """The bare projection GEMMs of one configuration (as bench/mha_bench.cpp's paired reference):
    bf16 operands, fp32 results; forward: fused QKV and out; backward adds dx and dW of each."""
    B, N, E, Hkv, Hq = r["B"], r["N"], r["E"], r["Hkv"], r["Hq"]
    M, kv = B * N, Hkv * (E // Hq)
    g = torch.Generator().manual_seed(1)
    t = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)
    x, ctx, dout, dq, dk, dv = t(M, E), t(M, E), t(M, E), t(M, E), t(M, kv), t(M, kv)
    wqkv, wo = t(E + 2 * kv, E), t(E, E)
    wq, wk, wv = wqkv[:E], wqkv[E:E + kv], wqkv[E + kv:]
    fwd = [lambda: x @ wqkv.t(), lambda: ctx @ wo.t()]
    bwd = [lambda: dout @ wo, lambda: dout.t() @ ctx, lambda: dq @ wq, lambda: dk @ wk, lambda: dv @ wv,
           lambda: dq.t() @ x, lambda: dk.t() @ x, lambda: dv.t() @ x]
    fns = fwd + (bwd if r["op"] == "fwdbwd" else [])
    flops = 2 * M * E * (E + 2 * kv) + 2 * M * E * E
    return fns, flops * (3 if r["op"] == "fwdbwd" else 1)


def time_gemms(attn, reps):
    print(f"{'kind':4} {'op':6} {'E':>5} {'Hq':>3} {'Hkv':>4} {'N':>5} {'torch GF/s':>10} {'attn ref GF/s':>13} "
          f"{'torch/attn':>10}")
    rows = []
    for r in attn["results"]:
        fns, flops = projection_gemms(r)
        with torch.no_grad():
            ms = median_ms(lambda: [f() for f in fns], max(reps, 7))
        rate = flops / ms * 1e-6
        ref = r.get("paired_ref_gflops", 0.0)
        rows.append(dict(r, torch_gemm_gflops=rate))
        print(f"{r['kind']:4} {r['op']:6} {r['E']:5} {r['Hq']:3} {r['Hkv']:4} {r['N']:5} {rate:10.1f} {ref:13.1f} "
              f"{rate / ref if ref else 0:9.2f}x", flush=True)
    ratios = sorted(x["torch_gemm_gflops"] / x["paired_ref_gflops"] for x in rows if x.get("paired_ref_gflops"))
    if ratios:
        print(f"torch bf16 matmul / attn's oneDNN reference over {len(ratios)} configurations: median "
              f"{statistics.median(ratios):.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f} (separate processes)")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("attn_json")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--gemms", action="store_true",
                    help="time torch's bf16 matmul on the projection GEMMs of a --bf16-matmuls JSON")
    a = ap.parse_args()
    attn = json.load(open(a.attn_json))
    threads = a.threads or attn["machine"]["threads"]
    torch.set_num_threads(threads)
    bf16 = bool(attn.get("bf16_matmuls", False))
    if a.gemms:
        if not bf16:
            raise SystemExit("--gemms needs the JSON of `attn bench --op mha --bf16-matmuls`")
        print(f"torch {torch.__version__} on {attn['machine']['cpu']}, {threads} threads: bf16 matmuls of the "
              f"projection GEMMs (attn's paired reference shapes), medians of {max(a.reps, 7)}")
        rows = time_gemms(attn, a.reps)
        if a.json:
            json.dump({"machine": attn["machine"], "torch": torch.__version__, "threads": threads, "results": rows},
                      open(a.json, "w"), indent=2)
        return
    print(f"torch {torch.__version__} on {attn['machine']['cpu']}, {threads} threads; attn from {a.attn_json}"
          + ("; torch under autocast(bf16) (its SDPA in bf16), attn with bf16 matmuls and fp32 SDPA" if bf16 else ""))
    print(f"{'kind':4} {'op':6} {'E':>5} {'Hq':>3} {'Hkv':>4} {'N':>5} {'torch ms':>9} {'attn ms':>8} {'speed-up':>8} "
          f"{'torch attn%':>11} {'sdpa ratio':>10} {'Amdahl':>7}")
    rows = []
    for r in attn["results"]:
        t_mod, t_sdpa = time_config(r, attn["causal"], a.reps, bf16)
        share = min(t_sdpa / t_mod, 1.0)
        s = t_sdpa / r["sdpa_ms"]
        bound = 1.0 / ((1 - share) + share / s)
        speed = t_mod / r["module_ms"]
        rows.append(dict(r, torch_ms=t_mod, torch_sdpa_ms=t_sdpa, speedup=speed, torch_attn_share=share,
                         sdpa_ratio=s, amdahl_bound=bound))
        print(f"{r['kind']:4} {r['op']:6} {r['E']:5} {r['Hq']:3} {r['Hkv']:4} {r['N']:5} {t_mod:9.2f} "
              f"{r['module_ms']:8.2f} {speed:7.2f}x {100 * share:10.0f}% {s:9.2f}x {bound:6.2f}x", flush=True)
    print("mha: torch.nn.MultiheadAttention; gqa/mqa: a torch composition (fused Linear, SDPA enable_gqa, Linear). "
          "Amdahl = 1 / ((1 - a) + a / s), a = torch's SDPA share of its module time, s = torch SDPA / attn SDPA.")
    if a.json:
        json.dump({"machine": attn["machine"], "torch": torch.__version__, "threads": threads, "bf16": bf16,
                   "results": rows},
                  open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
