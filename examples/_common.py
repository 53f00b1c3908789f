"""What the examples share: the CPU's name, threads, median timings, CSV/Markdown tables, plots."""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def cpu_name() -> str:
    """The CPU as /proc/cpuinfo names it, with the core count torch uses."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small configuration that runs in seconds (CI)")
    p.add_argument("--out", type=Path, default=None, help="where the tables and plots go (default examples/results)")
    p.add_argument("--threads", type=int, default=2, help="torch and attn threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args) -> Path:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    import attn.torch
    attn.torch.set_num_threads(args.threads)
    out = args.out or (HERE / "results")
    out.mkdir(parents=True, exist_ok=True)
    return out


def median_ms(fn, reps: int, warmup: int = 1) -> float:
    """Median wall time of fn() in milliseconds over reps runs after warmup runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def paired_ms(fa, fb, reps: int, flip: int = 0) -> tuple[list, list]:
    """(fa's times, fb's times) in milliseconds: one warm-up call of each, then reps pairs timed back
    to back, the order alternating (fb first in the even pairs when flip is odd). Adjacent calls see
    the same machine state, so the ratios of a pair's times cancel a drift slower than one pair
    (this VM's speed moves by tens of percent over seconds)."""
    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    fa()
    fb()
    ta, tb = [], []
    for i in range(reps):
        if (i + flip) % 2 == 0:
            ta.append(timed(fa))
            tb.append(timed(fb))
        else:
            tb.append(timed(fb))
            ta.append(timed(fa))
    return ta, tb


def saved_bytes(fn) -> int:
    """(bytes, fn()): the bytes of the tensors autograd saves for backward while fn() runs
    (distinct storages; what a checkpointed region recomputes is not saved, so it does not count)."""
    seen = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def write_csv(rows: list, path: Path) -> None:
    """rows: dicts with one key order -> a CSV file."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def md_table(rows: list) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_report(path: Path, title: str, config: str, sections: list) -> str:
    """A Markdown report: title, the CPU, the configuration, then (heading, text) sections."""
    md = [f"# {title}", "", f"CPU: {cpu_name()}", "", config, ""]
    for heading, text in sections:
        md += [f"## {heading}", "", text, ""]
    out = "\n".join(md)
    path.write_text(out)
    return out


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
