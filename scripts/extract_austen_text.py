#!/usr/bin/env python3
"""Regenerates data/text/persuasion.txt, the text `attn train lm` trains on (data/text/README.md).

Jane Austen's novels (1811-1818; she died in 1817) are in the public domain. Debian packages them
for R as r-cran-janeaustenr (the text of Project Gutenberg's editions, one element per line, in
R's lazy-load database data/Rdata.rdb). This script reads that database with a minimal reader of
R's XDR serialization (character vectors, lists, attributes: what the package holds) and writes
one novel's lines joined by newlines:

    apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb pkg
    python3 scripts/extract_austen_text.py pkg/usr/lib/R/site-library/janeaustenr/data persuasion \
        data/text/persuasion.txt
"""
import gzip
import struct
import sys
import zlib


class RReader:
    """R's serialize() format, XDR ("X\\n"), versions 2 and 3."""

    def __init__(self, data):
        self.b, self.p, self.refs = data, 0, []

    def int(self):
        (v,) = struct.unpack(">i", self.b[self.p:self.p + 4])
        self.p += 4
        return v

    def top(self):
        if self.b[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.p = 2
        version = self.int()
        self.int(), self.int()  # writer's and minimal reader's R versions
        if version == 3:
            n = self.int()  # native encoding name
            self.p += n
        return self.item()

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (254, 242):  # NILVALUE_SXP, EMPTYENV_SXP
            return None
        if kind == 255:  # REFSXP
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # SYMSXP
            name = self.item()
            self.refs.append(name)
            return name
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.p:self.p + n].decode("utf-8")
            self.p += n
            return s
        if kind == 2:  # LISTSXP (pairlist): [attr] [tag] car cdr
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            car, cdr = self.item(), self.item()
            return [(tag, car)] + (cdr if isinstance(cdr, list) else [])
        if kind in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            n = self.int()
            value = [self.item() for _ in range(n)]
        elif kind in (10, 13):  # LGLSXP, INTSXP
            n = self.int()
            value = list(struct.unpack(">%di" % n, self.b[self.p:self.p + 4 * n]))
            self.p += 4 * n
        elif kind == 14:  # REALSXP
            n = self.int()
            value = list(struct.unpack(">%dd" % n, self.b[self.p:self.p + 8 * n]))
            self.p += 8 * n
        else:
            raise ValueError("R object type %d is not handled" % kind)
        if has_attr:
            return (value, dict(self.item()))
        return value


def main():
    data_dir, name, out = sys.argv[1:4]
    index, _ = RReader(gzip.decompress(open(data_dir + "/Rdata.rdx", "rb").read())).top()
    variables = dict(zip(index[0][1]["names"], index[0][0]))  # name -> [offset, length]
    offset, length = variables[name]
    blob = open(data_dir + "/Rdata.rdb", "rb").read()[offset:offset + length]
    lines = RReader(zlib.decompress(blob[4:])).top()  # 4-byte length, then zlib
    if isinstance(lines, tuple):
        lines = lines[0]
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(line or "" for line in lines) + "\n")


if __name__ == "__main__":
    main()
