# Adds an ErrorKind to every ATTN_CHECK call (second argument), classified from the call's text.
import re, sys
def classify(call):
    lits = " ".join(re.findall(r'"((?:[^"\\]|\\.)*)"', call)).lower()
    if "dtype" in lits: return "dtype"
    if "overlap" in lits or "stride" in lits or "null data pointer" in lits: return "layout"
    if "read-only" in lits or "cannot run" in lits: return "unsupported"
    if "sequence of" in lits or "is a " in lits: return "type"
    if "rank" in lits or "shape" in lits or "broadcast" in lits or "entries" in lits: return "shape"
    return "value"
for path in sys.argv[1:]:
    s = open(path).read()
    out, i, n = [], 0, 0
    while True:
        j = s.find("ATTN_CHECK(", i)
        if j < 0: out.append(s[i:]); break
        if s[j-8:j] == "#define " or s[j-3:j] == "/// ":
            out.append(s[i:j+11]); i = j + 11; continue
        k = j + len("ATTN_CHECK(")
        depth, q, comma, end = 0, False, None, None
        m = k
        while m < len(s):
            c = s[m]
            if q:
                if c == "\\": m += 2; continue
                if c == '"': q = False
            elif c == '"': q = True
            elif c in "([{": depth += 1
            elif c in ")]}":
                if depth == 0: end = m; break
                depth -= 1
            elif c == "," and depth == 0 and comma is None: comma = m
            m += 1
        call = s[j:end+1]
        kind = classify(call)
        out.append(s[i:comma+1] + " " + kind + ",")
        i = comma + 1
        n += 1
    open(path, "w").write("".join(out))
    print(path, n)
