#!/usr/bin/env python3
"""Writes src/tokenizer/unicode_compat.inc: the few Unicode facts on which Hugging Face `tokenizers`
(the oracle of libmsa's tokenizer) and the Debian libraries libmsa uses (PCRE2, utf8proc) disagree.

Why: `tokenizers` matches the pre-tokenizer regex with Oniguruma (Unicode 16 in tokenizers 0.23), whose
\\s, \\p{L}, \\p{N} are newer than PCRE2 10.42's (Unicode 14), and normalises with the Rust crate
`unicode-normalization-alignments`, whose NFC data is *older* (Unicode 9) than utf8proc 2.8's (Unicode 15).
Every difference is measured here by asking the oracle itself, code point by code point:

  kHfWhiteSpace   the code points Oniguruma's \\s matches (replaces PCRE2's \\s, which adds U+180E)
  kHfLetterExtra  code points that are \\p{L} for the oracle but not for this PCRE2
  kHfNumberExtra  code points that are \\p{N} for the oracle but not for this PCRE2
  kHfNfcInert     code points utf8proc's NFC acts on (combining class != 0, or part of a composition)
                  that the oracle's NFC leaves alone (characters it does not know yet)

Run it again when the oracle (`pip install tokenizers==X`), PCRE2 or utf8proc changes, then re-run the
tokenizer goldens test. Needs: tokenizers, a C compiler, libpcre2-dev, libutf8proc-dev.

usage: tools/gen_tokenizer_unicode_compat.py [--tokenizer PATH] [--out PATH]
"""
import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

C_HELPER = r"""
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>
#include <stdio.h>
#include <string.h>
static int enc(unsigned c, unsigned char *o) {
  if (c < 0x80) { o[0] = c; return 1; }
  if (c < 0x800) { o[0] = 0xC0 | (c >> 6); o[1] = 0x80 | (c & 63); return 2; }
  if (c < 0x10000) { o[0] = 0xE0 | (c >> 12); o[1] = 0x80 | ((c >> 6) & 63); o[2] = 0x80 | (c & 63); return 3; }
  o[0] = 0xF0 | (c >> 18); o[1] = 0x80 | ((c >> 12) & 63); o[2] = 0x80 | ((c >> 6) & 63); o[3] = 0x80 | (c & 63);
  return 4;
}
int main(void) {
  const char *pats[3] = {"^\\p{L}$", "^\\p{N}$", "^\\s$"};
  const char *names = "LNS";
  unsigned char buf[8];
  for (int p = 0; p < 3; p++) {
    int ec; PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pats[p], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    printf("%c", names[p]);
    for (unsigned c = 0; c < 0x110000; c++) {
      if (c >= 0xD800 && c < 0xE000) continue;
      int n = enc(c, buf);
      if (pcre2_match(re, buf, n, 0, 0, md, NULL) >= 0) printf(" %u", c);
    }
    printf("\n");
    pcre2_match_data_free(md);
    pcre2_code_free(re);
  }
  unsigned char ver[64];
  pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, ver);
  printf("V %s %s\n", ver, utf8proc_unicode_version());
  for (utf8proc_int32_t c = 0; c < 0x110000; c++) {
    if (c >= 0xD800 && c < 0xE000) continue;
    const utf8proc_property_t *pr = utf8proc_get_property(c);
    if (pr->combining_class) printf("C %d %d\n", c, pr->combining_class);
    if (pr->decomp_seqindex != UINT16_MAX && pr->decomp_type == 0 && !(c >= 0xAC00 && c <= 0xD7A3)) {
      utf8proc_int32_t d[32], b[32];
      utf8proc_ssize_t n = utf8proc_decompose_char(c, d, 32, UTF8PROC_DECOMPOSE, NULL);
      for (int i = 0; i < n; i++) b[i] = d[i];
      utf8proc_ssize_t m = utf8proc_normalize_utf32(b, n, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
      printf("D %d %d", c, (m == 1 && b[0] == c));
      for (int i = 0; i < n; i++) printf(" %d", d[i]);
      printf("\n");
    }
  }
  return 0;
}
"""


def ranges(points):
    out = []
    for c in sorted(points):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def run_helper():
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "h.c")
        exe = os.path.join(d, "h")
        with open(src, "w") as f:
            f.write(C_HELPER)
        subprocess.run(["cc", "-O2", src, "-o", exe, "-lpcre2-8", "-lutf8proc"], check=True)
        return subprocess.run([exe], check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "..", "shared", "data", "qwen3-tokenizer",
                                                          "tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "src", "tokenizer", "unicode_compat.inc"))
    args = ap.parse_args()

    import tokenizers
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    pts = tok.pre_tokenizer.pre_tokenize_str
    nfc = tok.normalizer.normalize_str

    # 1. The oracle's classes, read through the Qwen pre-tokenizer regex:
    #    "a"+c is one piece iff c is \p{L}; "!"+c is one piece iff c is neither \s, \p{L} nor \p{N};
    #    c+c is two pieces iff c is \p{N} (else \s).
    hf = {"L": set(), "N": set(), "S": set()}
    for c in range(0x110000):
        if 0xD800 <= c < 0xE000 or c in (10, 13):
            continue
        ch = chr(c)
        if len(pts("a" + ch)) == 1:
            hf["L"].add(c)
        elif len(pts("!" + ch)) == 1:
            pass
        elif len(pts(ch + ch)) == 2:
            hf["N"].add(c)
        else:
            hf["S"].add(c)
    hf["S"] |= {10, 13}

    out = run_helper().split("\n")
    pc = {}
    ccc = {}
    decomp = []
    versions = None
    for line in out:
        if not line:
            continue
        f = line.split()
        if f[0] in ("L", "N", "S"):
            pc[f[0]] = set(map(int, f[1:]))
        elif f[0] == "V":
            versions = (f[1], f[2])
        elif f[0] == "C":
            ccc[int(f[1])] = int(f[2])
        elif f[0] == "D":
            decomp.append((int(f[1]), f[2] == "1", [int(x) for x in f[3:]]))
    for k in ("L", "N"):
        lost = pc[k] - hf[k]
        if lost:
            sys.exit(f"PCRE2 has {len(lost)} \\p{{{k}}} code points the oracle lacks; the translation only adds: "
                     f"{[hex(c) for c in sorted(lost)[:10]]}")
    letter_extra = hf["L"] - pc["L"]
    number_extra = hf["N"] - pc["N"]

    # 2. NFC: combining classes the oracle knows. "#" composes with nothing.
    inert = set()
    for c, k in ccc.items():
        if nfc(chr(c)) != chr(c):
            continue  # singleton / excluded: decomposed by both
        if k >= 230:  # put a lower class (U+0316, 220) after it: a known class sorts it behind
            s, exp = "#" + chr(c) + "\u0316", "#\u0316" + chr(c)
        else:  # put U+0301 (230) before it: a known lower class sorts it in front
            s, exp = "#\u0301" + chr(c), "#" + chr(c) + "\u0301"
        if nfc(s) != exp:
            inert.add(c)
    # 3. NFC: compositions the oracle does not make (both parts are then unknown to it).
    for c, stable, d in decomp:
        if not stable:
            if nfc(chr(c)) == chr(c):
                sys.exit(f"oracle keeps U+{c:04X}, which utf8proc decomposes; not handled")
            continue
        if nfc("".join(map(chr, d))) != chr(c):
            inert.update(x for x in d if ccc.get(x, 0) == 0 or x in inert)

    def emit(name, pts_, comment):
        r = ranges(pts_)
        lines = [f"// {comment}", f"static const uint32_t {name}[][2] = {{"]
        row = "   "
        for a, b in r:
            item = f" {{0x{a:X}, 0x{b:X}}},"
            if len(row) + len(item) > 110:
                lines.append(row)
                row = "   "
            row += item
        lines.append(row)
        lines.append("};")
        return "\n".join(lines) + "\n"

    text = ("// Generated by tools/gen_tokenizer_unicode_compat.py; do not edit.\n"
            f"// Oracle: tokenizers {tokenizers.__version__}; PCRE2 Unicode {versions[0]}; "
            f"utf8proc Unicode {versions[1]}.\n"
            "// See the tool for what each table means and how it was measured.\n"
            f"#define MSA_TOK_COMPAT_PCRE2_UNICODE \"{versions[0]}\"\n"
            f"#define MSA_TOK_COMPAT_UTF8PROC_UNICODE \"{versions[1]}\"\n\n")
    text += emit("kHfWhiteSpace", hf["S"], "Oniguruma \\s (Unicode White_Space)") + "\n"
    text += emit("kHfLetterExtra", letter_extra, "\\p{L} for the oracle, not for this PCRE2") + "\n"
    text += emit("kHfNumberExtra", number_extra, "\\p{N} for the oracle, not for this PCRE2") + "\n"
    text += emit("kHfNfcInert", inert, "left alone by the oracle's NFC, acted on by utf8proc's")
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}: {len(hf['S'])} white space, {len(letter_extra)} letters, {len(number_extra)} "
          f"numbers, {len(inert)} NFC-inert code points")


if __name__ == "__main__":
    main()
