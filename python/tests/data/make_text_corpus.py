"""Writes text_corpus.txt: the hand-written lines of text_corpus_base.txt, then generated lines that
cover every whitespace, control and format character BERT's tokenizer treats specially, combining
mark sequences, random mixtures of scripts and symbols, and inputs long enough to be truncated.
Lines are separated by "\\n" only (a line may hold \\r, U+0085, U+2028). Deterministic (seeded).

    python python/tests/data/make_text_corpus.py
"""

import pathlib
import random

HERE = pathlib.Path(__file__).resolve().parent
rng = random.Random(20)

WHITESPACE = ["\t", "\x0b", "\x0c", "\r", "\x85", "\xa0", "\u1680", *map(chr, range(0x2000, 0x200B)),
              "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b", "\ufeff", "\x1c", "\x1f"]
CONTROL = [chr(c) for c in [*range(0x01, 0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x0A]
FORMAT = ["\u00ad", "\u0600", "\u061c", "\u06dd", "\u070f", "\u180e", *map(chr, range(0x200C, 0x2010)),
          *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2060, 0x2065)), *map(chr, range(0x2066, 0x2070)),
          "\ufeff", "\ufff9", "\ufffa", "\ufffb", "\U000110bd", "\U0001d173", "\U000e0001", "\U000e0041",
          "\ue000", "\uf8ff", "\U000f0000", "\ufffd", "\u08e2", "\U00013430"]
MARKS = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0307", "\u0308", "\u030a", "\u030c", "\u0323", "\u0327",
         "\u0328", "\u0331", "\u0345", "\u05b4", "\u0651", "\u093c", "\u0e31", "\u20dd", "\u20e3", "\u0903",
         "\u1ab0", "\u1dc0", "\u302a", "\u3099", "\ufe0f", "\U0001f3fb", "\u0489", "\u1734", "\u1885", "\ua9bd"]
BASES = ["a", "e", "i", "o", "u", "n", "c", "A", "E", "O", "ß", "ø", "α", "ω", "и", "ה", "ب", "क", "ก", "ㄱ", "한"]
WORDS = ("the of and to in is was for on that with as by at from his her an be this are which it not or "
         "have had one all were we when there can more so no out up into than its time only new some could "
         "these two may then first any like now such over also after between through during without "
         "embedding sentence vector attention transformer tokenizer unbelievable internationalization "
         "café naïve façade jalapeño Zürich São Paulo Kraków İzmir Ørsted Ægir Œuvre").split()
SCRIPTS = ["中", "国", "語", "学", "の", "は", "カ", "ナ", "한", "국", "Ж", "щ", "λ", "Ω", "ש", "ع", "ह", "ก", "ღ", "ᚠ",
           "😀", "👍", "🏽", "‍", "❤", "️", "🇫", "🇷", "𝐀", "𠀀", "豈", "㊀", "①", "ﬁ", "Ⅻ", "½", "²", "µ", "K", "Å"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["«", "»", "“", "”", "„", "‘", "’", "…", "—", "–", "·", "•",
                                                     "¿", "¡", "、", "。", "，", "！", "？", "【", "】", "《", "》",
                                                     "¶", "§", "†", "‡", "‰", "′", "※", "⁂", "⸮", "᙭", "𑇉", "꧁"]
SPECIAL = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[cls]", "[SEP", "SEP]"]


def word():
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(WORDS)
    if kind < 0.6:
        return "".join(rng.choice(SCRIPTS) for _ in range(rng.randint(1, 5)))
    if kind < 0.72:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4)))
    if kind < 0.8:
        return str(rng.choice([rng.randint(0, 10**9), round(rng.uniform(-1e4, 1e4), rng.randint(0, 5))]))
    if kind < 0.88:
        return rng.choice(BASES) + "".join(rng.choice(MARKS) for _ in range(rng.randint(1, 3))) + rng.choice(BASES)
    if kind < 0.93:
        return rng.choice(SPECIAL)
    return rng.choice(WORDS) + rng.choice(CONTROL + FORMAT) + rng.choice(WORDS)


def sep():
    return rng.choice([" "] * 8 + ["  ", "\t", "\u3000", "\xa0", "\u2009", ""])


def sentence(n):
    return "".join(word() + sep() for _ in range(n)).strip(" ")


lines = (HERE / "text_corpus_base.txt").read_text(encoding="utf-8").split("\n")
lines = [l for l in lines if l]
for ws in WHITESPACE:
    lines.append(f"white{ws}space{ws}{ws}between words{ws}")
for c in CONTROL:
    lines.append(f"con{c}trol char{c}{c} here {c}")
for c in FORMAT:
    lines.append(f"for{c}mat char{c} here{c}")
for _ in range(40):
    lines.append(" ".join(rng.choice(BASES) + "".join(rng.choice(MARKS) for _ in range(rng.randint(1, 4)))
                          + rng.choice(BASES) for _ in range(rng.randint(1, 8))))
for _ in range(120):
    lines.append(sentence(rng.randint(1, 30)))
# long words: over max_input_chars_per_word (100 code points) and just under it
for n in (99, 100, 101, 150, 400):
    lines.append("start " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)) + " end")
lines.append("é" * 101 + " " + "中" * 120)
# over-long inputs: truncated at 256 tokens
for n in (200, 300, 500, 1500):
    lines.append(sentence(n))
lines.append(" ".join(rng.choice(WORDS) for _ in range(600)))
lines.append("中文" * 400)
lines.append("!" * 1000)

(HERE / "text_corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
print(len(lines), "lines")
