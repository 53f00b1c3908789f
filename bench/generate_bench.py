#!/usr/bin/env python3
"""Generation benchmark (docs/generation.md): tokens/s of attn.models.CausalLM with the KV cache
(f32 / bf16 / i8, contiguous / paged) against recomputing the whole sequence per token, and
against transformers' generate on torch for the same random LLaMA-shaped model, in one process.

The model is a random transformers LlamaForCausalLM (default 8 layers, E = 1024, 16 query heads,
4 kv heads, F = 2816, V = 32000), saved with save_pretrained and loaded by attn, so both sides run
the same weights. Per prompt length: prefill time and decode tokens/s (greedy, new tokens after the
first, which the prefill gives), medians of --repeats interleaved runs; decode's read traffic per
token (f32 weights every layer and the head read once, plus the K/V cache at the context length)
against a same-run read-bandwidth probe (torch.sum over 1 GiB on the same threads).

--accuracy: bf16 and i8 caches against f32 over --accuracy-steps teacher-forced steps (max |logit
difference|, argmax agreement) and free-running greedy agreement (first differing step).

    python bench/generate_bench.py --prompts 128 --repeats 3 --json gen128.json
    python bench/generate_bench.py --tiny --prompts 16 --new 32            # the tiny test model's shape
Run inside /work/bin/bench-lock with autogroup nice -20 (HELPERS.md); the script re-executes itself
once with OPENBLAS_CORETYPE set (attn's projections run on OpenBLAS; see docs/nn.md).
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time


def ensure_env(threads):
    want = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    flags = open("/proc/cpuinfo").read()
    if "avx512_bf16" in flags:
        want["OPENBLAS_CORETYPE"] = "Cooperlake"
    elif "avx512f" in flags:
        want["OPENBLAS_CORETYPE"] = "SkylakeX"
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    env = dict(os.environ)
    env.update(want)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--tiny", action="store_true", help="the test's tiny LM: 2 layers, E=32, 4/2 heads, F=64, V=258")
    ap.add_argument("--prompts", default="128,2048")
    ap.add_argument("--new", type=int, default=32, help="new tokens per cached run")
    ap.add_argument("--nocache-new", type=int, default=4, help="new tokens per recomputing run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="f32:contiguous,f32:paged,bf16:contiguous,bf16:paged,i8:contiguous,i8:paged")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-nocache", action="store_true")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--accuracy-steps", type=int, default=256)
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.tiny:
        a.layers, a.hidden, a.heads, a.kv_heads, a.ffn, a.vocab = 2, 32, 4, 2, 64, 258
    ensure_env(a.threads)

    import numpy as np
    import torch
    import transformers

    import attn.models

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=8192,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        attn_implementation="sdpa")
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # weights of a size where the logits are not flat (the accuracy figures need it)
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.ndim == 2:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]))
    tmp = tempfile.mkdtemp(prefix="attn_gen_bench_")
    hf.save_pretrained(tmp, safe_serialization=True)
    lm = attn.models.CausalLM(tmp)
    n_params = sum(p.numel() for p in hf.parameters())
    E, hd = a.hidden, a.hidden // a.heads
    weight_bytes = 4 * (n_params - a.vocab * E)  # every parameter but the embedding table (one row is read)

    # Read bandwidth: torch.sum over 1 GiB of float32, same threads, median of 5.
    big = torch.ones(256 * 1024 * 1024, dtype=torch.float32)
    big.sum()
    bw = []
    for _ in range(5):
        t0 = time.perf_counter()
        big.sum()
        bw.append(big.numel() * 4 / (time.perf_counter() - t0))
    del big
    read_bw = statistics.median(bw)

    rng = np.random.default_rng(0)
    configs = [tuple(c.split(":")) for c in a.configs.split(",") if c]
    out = {"cpu": cpu_name(), "threads": a.threads, "torch": torch.__version__,
           "transformers": transformers.__version__, "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
           "model": {"layers": a.layers, "hidden": a.hidden, "heads": a.heads, "kv_heads": a.kv_heads,
                     "ffn": a.ffn, "vocab": a.vocab, "params": n_params},
           "read_bandwidth_GBps": read_bw / 1e9, "new_tokens": a.new, "repeats": a.repeats, "results": []}
    print(f"# {out['cpu']}, {a.threads} threads, OPENBLAS_CORETYPE={out['openblas_coretype']}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"# model: {a.layers} layers, E={E}, Hq={a.heads}, Hkv={a.kv_heads}, F={a.ffn}, V={a.vocab}, "
          f"{n_params / 1e6:.1f} M params; read bandwidth {read_bw / 1e9:.1f} GB/s")

    def kv_bytes(ctx, dt):
        per = {"f32": 4, "bf16": 2, "i8": 1}[dt]
        b = a.layers * 2 * a.kv_heads * ctx * hd * per
        if dt == "i8":
            b += a.layers * 2 * a.kv_heads * ctx * 4  # per-token scales
        return b

    for P in [int(p) for p in a.prompts.split(",")]:
        prompt = rng.integers(0, a.vocab, P).tolist()
        runs = {}

        def record(key, prefill, steps, seconds):
            r = runs.setdefault(key, {"prefill": [], "rate": []})
            r["prefill"].append(prefill)
            r["rate"].append(steps / seconds if seconds > 0 else float("nan"))

        for rep in range(a.repeats):
            for dt, layout in configs:
                r = lm.generate(prompt, a.new, kv_dtype=dt, paged=layout == "paged", stop_tokens=[], return_dict=True)
                record(("attn", dt, layout), r["prefill_seconds"], r["decode_steps"], r["decode_seconds"])
            if not a.no_nocache:
                r = lm.generate(prompt, a.nocache_new, use_cache=False, stop_tokens=[], return_dict=True)
                record(("attn", "none", "recompute"), r["prefill_seconds"], r["decode_steps"], r["decode_seconds"])
            if not a.no_torch:
                ids = torch.tensor([prompt])
                mask = torch.ones_like(ids)
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    hf(ids, attention_mask=mask, use_cache=True)
                    prefill = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    hf.generate(ids, attention_mask=mask, max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False)
                    total = time.perf_counter() - t0
                record(("torch", "f32", "generate"), prefill, a.new - 1, max(total - prefill, 1e-9))
                record(("torch", "f32", "generate_end_to_end"), prefill, a.new, total)
            print(f"# prompt {P}: repeat {rep + 1}/{a.repeats} done", flush=True)

        print(f"\nprompt {P}: median of {a.repeats} (decode: tokens after the first; bandwidth share: "
              "weights + KV read per token / probe)")
        print(f"{'impl':6} {'cache':5} {'layout':20} {'prefill ms':>11} {'decode tok/s':>13} {'spread':>8} "
              f"{'read share':>10}")
        for (impl, dt, layout), r in runs.items():
            pre = statistics.median(r["prefill"]) * 1e3
            rate = statistics.median(r["rate"])
            spread = (max(r["rate"]) - min(r["rate"])) / rate if rate > 0 else float("nan")
            share = ""
            if impl == "attn" and dt != "none":
                share_v = (weight_bytes + kv_bytes(P + a.new // 2, dt)) * rate / read_bw
                share = f"{100 * share_v:.0f} %"
            print(f"{impl:6} {dt:5} {layout:20} {pre:11.1f} {rate:13.2f} {100 * spread:7.0f}% {share:>10}")
            out["results"].append({"prompt": P, "impl": impl, "kv_dtype": dt, "layout": layout,
                                   "prefill_ms": r["prefill"], "decode_tokens_per_s": r["rate"],
                                   "median_prefill_ms": pre, "median_decode_tokens_per_s": rate})

    if a.accuracy:
        P = int(a.prompts.split(",")[0])
        prompt = rng.integers(0, a.vocab, P).tolist()
        greedy = lm.generate(prompt, a.accuracy_steps, stop_tokens=[]).tolist()
        seq = prompt + greedy
        ref = lm.cached_logits(seq[:-1], prefill=P)[P - 1:]
        out["accuracy"] = {"prompt": P, "steps": a.accuracy_steps, "max_abs_logit": float(np.abs(ref).max())}
        print(f"\naccuracy: prompt {P}, {a.accuracy_steps} steps, max |logit| {np.abs(ref).max():.2f}")
        for dt in ("bf16", "i8"):
            got = lm.cached_logits(seq[:-1], prefill=P, kv_dtype=dt)[P - 1:]
            err = float(np.abs(got - ref).max())
            agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
            free = lm.generate(prompt, a.accuracy_steps, kv_dtype=dt, stop_tokens=[]).tolist()
            first = next((i for i, (x, y) in enumerate(zip(free, greedy)) if x != y), None)
            same = sum(x == y for x, y in zip(free, greedy))
            print(f"  {dt}: max |Δlogit| {err:.3g}, median |Δlogit| {float(np.median(np.abs(got - ref))):.3g}, "
                  f"teacher-forced argmax agreement {100 * agree:.1f} %, free-running greedy: {same}/{len(greedy)} "
                  f"equal, first difference at step {first}")
            out["accuracy"][dt] = {"max_abs_diff": err, "median_abs_diff": float(np.median(np.abs(got - ref))),
                                   "argmax_agreement": agree, "free_running_equal": same, "first_difference": first}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
