"""The examples under examples/ in their --quick form (seconds each): they run end to end, write
their tables and plots, and their measured facts hold (the broken gene attention gives no gradient
to the MHA's V rows and out_proj, the fixed one gives one to the prior; linear attention refuses
the prior; every attention type's parameter count equals its formula)."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gene_attention_quick(tmp_path):
    res = load("gene_attention").main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    for f in ("gene_attention.md", "gene_attention_gradients.csv", "gene_attention_timing.csv",
              "gene_attention_loss.csv", "gene_attention_loss.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    grads = {(r["model"], r["parameter"]): r["gradient"] for r in res["grads"]}
    assert grads[("broken", "mha.in_proj_weight[V]")] == "zero"
    assert grads[("broken", "mha.out_proj.weight")] == "none"
    assert grads[("broken", "mha.in_proj_weight[Q]")] not in ("none", "zero")
    assert grads[("fixed (learnable log M)", "log_prior")] not in ("none", "zero")
    assert all(r["relative (Frobenius)"] > 1e-3 for r in res["diff"])  # the broken output differs
    report = (tmp_path / "gene_attention.md").read_text()
    assert "ValueError: mask: has shape" in report and "expected key padding only" in report


def test_seq_autoencoder_quick(tmp_path):
    res = load("seq_autoencoder").main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    for f in ("seq_autoencoder.md", "seq_autoencoder_timing.csv", "seq_autoencoder_quality.csv",
              "seq_autoencoder.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    assert len(res["timing"]) == 9 and len(res["quality"]) == 3
    saved = {r["configuration"]: r["saved for backward (MiB)"] for r in res["timing"]}
    ck = [k for k in saved if "checkpointing" in k][0]
    bf = [k for k in saved if "bf16" in k][0]
    assert saved[ck] < saved[bf]  # checkpointing keeps less for backward


def test_attention_tradeoff_quick(tmp_path):
    rows = load("attention_tradeoff").main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    for f in ("attention_tradeoff.md", "attention_tradeoff.csv", "attention_tradeoff.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    kinds = [r["attention"] for r in rows]
    assert kinds[:4] == ["MHA", "GQA-4", "GQA-2", "MQA"] and len(rows) == 6
    by = {r["attention"]: r for r in rows}
    assert by["MQA"]["KV-cache bytes / generated token"] < by["GQA-2"]["KV-cache bytes / generated token"]
    assert by["linear (elu+1)"]["KV-cache bytes / generated token"] == 0
