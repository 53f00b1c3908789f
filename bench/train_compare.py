#!/usr/bin/env python3
"""Training step of attn against torch in one sitting (docs/training.md, "Training step against
torch"): `attn train regression` / `attn train lm` and bench/train_torch.py on the same
architecture, sizes and threads, fp32 and bf16 (attn --bf16; torch under autocast bf16), the two
frameworks alternating within each round (order flipped every round). Prints one line per run and a
markdown table of medians over rounds: ms/step (each run's median step, first step dropped on the
torch side), torch/attn (> 1: attn is faster), peak RSS.

This VM's speed drifts by tens of percent within a minute, so the figure to read is paired: each
round's torch run divided by the attn run next to it (the two run back to back), the median of
those per-round ratios and their range. Use many short rounds (e.g. --rounds 8 --steps 6): each
pair then spans a few seconds, and the median over pairs resists the drift that a ratio of the
two frameworks' separate medians does not.

--perf also runs each attn configuration once under `perf record` and splits its CPU samples into
GEMMs (OpenBLAS, oneDNN and its JIT code, attn's bf16 operand rounding), attention (attn's SDPA
kernels, src/cpu), OpenMP waiting (libgomp) and the rest, with the top symbols; --profile N gives
the torch side's split from the torch profiler over N more steps (bench/train_torch.py).

    bench/train_compare.py --attn build/release/tools/attn/attn --models regression lm --modes f32 bf16 \
        --rounds 8 --steps 6 --threads 2
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def attn_cmd(a, model, bf16):
    common = ["--dim", str(a.dim), "--heads", str(a.heads), "--layers", str(a.layers), "--seq-len", str(a.seq_len),
              "--batch", str(a.batch), "--steps", str(a.steps), "--threads", str(a.threads), "--csv", "", "--plot", "",
              "--quiet", "--eval-every", "1000000"]
    if model == "regression":
        cmd = [a.attn, "train", "regression", "--ffn", str(a.ffn), "--positions", "learned", "--eval-size", "4"] + common
    else:
        cmd = [a.attn, "train", "lm", "--ffn", str(a.lm_ffn), "--kv-heads", str(a.kv_heads), "--eval-tokens", "1",
               "--save", "", "--sample", "0"] + common
    return cmd + (["--bf16"] if bf16 else [])


def torch_cmd(a, model, bf16, profile):
    cmd = [sys.executable, os.path.join(HERE, "train_torch.py"), "--model", model, "--dim", str(a.dim), "--heads",
           str(a.heads), "--kv-heads", str(a.kv_heads), "--ffn", str(a.ffn if model == "regression" else a.lm_ffn),
           "--layers", str(a.layers), "--seq-len", str(a.seq_len), "--batch", str(a.batch), "--steps", str(a.steps),
           "--threads", str(a.threads), "--profile", str(profile)]
    return cmd + (["--bf16"] if bf16 else [])


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def parse_attn(out):
    m = re.search(r"median ([0-9.]+) ms", out)
    kept = re.search(r"activations\s+kept ([0-9.]+) MiB, peak RSS ([0-9.]+) MiB", out)
    params = re.search(r"(\d+) parameters", out)
    return dict(median_ms=float(m.group(1)), kept_mib=float(kept.group(1)), peak_rss_mib=float(kept.group(2)),
                params=int(params.group(1)))


def perf_split(a, model, bf16):
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        run(["perf", "record", "-q", "-F", "499", "-o", data, "--"] + attn_cmd(a, model, bf16))
        rep = run(["perf", "report", "--stdio", "--no-children", "--sort", "dso,sym", "-i", data])
    cats = {"gemm": 0.0, "attention": 0.0, "omp_wait": 0.0, "rest": 0.0}
    top = []
    for line in rep.splitlines():
        # dso may have spaces ("[JIT] tid 123"); the GEMM side is tested first, since attn's bf16
        # rounding (attn::nn::detail::RoundBf16<attn::cpu::isa::...>) names an attn::cpu ISA too.
        m = re.match(r"\s*([0-9.]+)%\s+(\S+(?: tid \d+)?)\s+\[.\]\s+(.*)$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        if "openblas" in dso or "blas" in dso or "dnnl" in dso or "dnnl" in sym or dso.startswith("[JIT]") or \
                (dso == "[unknown]" and sym.startswith("0x")) or "roundbf16" in sym.lower() or \
                ("gemm" in sym and "attn::cpu" not in sym):
            c = "gemm"
        elif "attn::cpu" in sym or "sdpa" in sym.lower():
            c = "attention"
        elif "gomp" in dso:
            c = "omp_wait"
        else:
            c = "rest"
        cats[c] += pct
        if len(top) < 14:
            top.append(f"{pct:.1f}% {dso} {sym[:90]}")
    return cats, top


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", required=True)
    ap.add_argument("--models", nargs="+", default=["regression", "lm"])
    ap.add_argument("--modes", nargs="+", default=["f32", "bf16"])
    for k, v in dict(dim=256, heads=8, kv_heads=2, ffn=1024, lm_ffn=704, layers=4, seq_len=512, batch=4, steps=8,
                     threads=2, rounds=1, profile=0).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--perf", action="store_true")
    a = ap.parse_args()
    results = {}
    for r in range(a.rounds):
        for model in a.models:
            for mode in a.modes:
                bf16 = mode == "bf16"
                order = ["attn", "torch"] if r % 2 == 0 else ["torch", "attn"]
                for fw in order:
                    if fw == "attn":
                        res = parse_attn(run(attn_cmd(a, model, bf16)))
                    else:
                        res = json.loads(run(torch_cmd(a, model, bf16, a.profile if r == 0 else 0)).strip().splitlines()[-1])
                    results.setdefault((model, mode, fw), []).append(res)
                    extra = f", split {res['split_ms_per_step']}" if "split_ms_per_step" in res else ""
                    print(f"round {r} {model} {mode} {fw}: median {res['median_ms']:.1f} ms/step, peak RSS "
                          f"{res['peak_rss_mib']:.0f} MiB, {res['params']} parameters{extra}", flush=True)
                    if "top_ops_ms_per_step" in res:
                        print("   torch top ops (ms/step):", res["top_ops_ms_per_step"], flush=True)
    if results:
        print("\n| model | mode | attn ms/step | torch ms/step | torch / attn (medians) | torch / attn per round: "
              "median (min-max) | attn peak RSS | torch peak RSS (before model) |")
        print("|---|---|---|---|---|---|---|---|")
        for model in a.models:
            for mode in a.modes:
                at, to = results[(model, mode, "attn")], results[(model, mode, "torch")]
                ma = statistics.median(x["median_ms"] for x in at)
                mt = statistics.median(x["median_ms"] for x in to)
                pairs = [t["median_ms"] / x["median_ms"] for x, t in zip(at, to)]  # the same round: back to back
                print(f"| {model} | {mode} | {ma:.0f} | {mt:.0f} | {mt / ma:.2f} | **{statistics.median(pairs):.2f}** "
                      f"({min(pairs):.2f}-{max(pairs):.2f}, {len(pairs)} rounds) | "
                      f"{statistics.median(x['peak_rss_mib'] for x in at):.0f} MiB | "
                      f"{statistics.median(x['peak_rss_mib'] for x in to):.0f} MiB ({to[0]['base_rss_mib']:.0f}) |")
    if a.perf:
        for model in a.models:
            for mode in a.modes:
                cats, top = perf_split(a, model, mode == "bf16")
                print(f"\nattn {model} {mode} perf split (% of CPU samples): " +
                      ", ".join(f"{k} {v:.1f}" for k, v in cats.items()))
                for t in top:
                    print("   " + t)


if __name__ == "__main__":
    main()
