#!/usr/bin/env python3
"""Writes the tokenizer goldens: a corpus assembled here (deterministic, seeded) and the ids the oracle,
Hugging Face `tokenizers` (PyPI), gives for it with the shared Qwen3 tokenizer.json.

Outputs (tests/data/tokenizer/):
  goldens.jsonl.zst   one JSON object per line:
                        {"cat": C, "text": S, "ids": [...]}                 encode golden (valid UTF-8)
                        {"cat": C, "hex": H, "ids": [...], "decoded": S}    raw bytes (invalid UTF-8);
                            ids = oracle(bytes.decode("utf-8", "replace"))
                        {"cat": "decode", "ids": [...], "decoded": S}       decode golden (any id sequence)
                      "decoded" is added to encode goldens when decode(ids) != text (NFC changed it).
  cli_sample.jsonl    a small uncompressed subset for the CLI end-to-end test
  (fuzz seeds)        tests/fuzz/corpus/tokenizer/seed_*

usage: tools/tokenizer_goldens.py [--tokenizer PATH] [--out DIR]
Needs: tokenizers (pip), zstd (command line).
"""
import argparse
import itertools
import json
import os
import random
import subprocess
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Memory Sparse Attention scales language models to very long contexts by routing queries to documents.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife.",
    "We'll see whether they've finished; I'd guess they're close, but you'll have to ask.",
    "Dr. Smith arrived at 10:45 a.m. on Jan. 3rd, 2024 -- exactly 15 minutes late!",
    "E-mail me at john.doe@example.com or visit https://www.example.org/path?q=1&lang=en#section.",
    "Hello, World! HELLO, WORLD! hello, world!",
    "   leading spaces and trailing spaces   ",
    "Tabs\tseparate\tcolumns\tin\tTSV files.",
    "Windows line endings\r\nare different\r\nfrom Unix ones\n.",
    "Prices: $3.50, €4,20, £1.99, ¥500 and ₹1,000.",
    "\"Quoted text\" and 'single quotes' and `backticks` and «guillemets» and “curly quotes”.",
    "I can't, won't, shouldn't, and don't; you CAN'T, WON'T, SHOULDN'T and DON'T.",
    "The year 1984 was followed by 1985; 3.14159 is pi and 2.71828 is e.",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "naïve café résumé coöperate façade jalapeño Zürich São Paulo Ångström",
    "Mr. O'Neil's dog's bone's color isn't what you'd think it'd be.",
    "One...two...three!!! Really??? Yes!!!",
    "Section 3.2 describes the document format: <|im_start|>[id]. doc[id]<|im_end|>.",
    "Please answer the question based on the above historical document information",
]
OTHER_SCRIPTS = {
    "chinese": ["我们今天去公园散步，天气非常好。", "记忆稀疏注意力机制可以扩展到一亿个词元。", "中华人民共和国成立于1949年10月1日。",
                "他说：“你好，世界！”然后离开了。", "繁體中文與簡體中文並存，例如：學習／学习。"],
    "japanese": ["今日は良い天気ですね。", "東京タワーは333メートルの高さです。", "ひらがなとカタカナと漢字を混ぜて書きます。",
                 "ｶﾀｶﾅ（半角）も使われることがあります。", "「こんにちは」と彼女は言った。"],
    "korean": ["안녕하세요, 만나서 반갑습니다.", "한국어는 한글로 씁니다.", "서울특별시 종로구 세종대로 175",
               "ᄒᆞᆫ글 옛 자모 ᄀᆞᄅᆞᆷ"],
    "arabic": ["مرحبا بالعالم", "اللغة العربية جميلة جداً.", "عدد السكان ١٢٣٤٥٦٧ نسمة في عام ٢٠٢٣.",
               "بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ"],
    "hebrew": ["שלום עולם", "עִבְרִית עִם נִקּוּד", "התאריך הוא 12/05/2023."],
    "cyrillic": ["Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.", "Україна, Беларусь, Србија, България",
                 "ПРОПИСНЫЕ и строчные Буквы 2024 г."],
    "greek": ["Γειά σου Κόσμε!", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.", "ά έ ή ί ό ύ ώ ϊ ϋ ΐ ΰ"],
    "devanagari": ["नमस्ते दुनिया", "हिन्दी भाषा देवनागरी लिपि में लिखी जाती है।", "संस्कृतम् ॐ १२३४५"],
    "thai": ["สวัสดีชาวโลก", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ"],
    "other": ["Tiếng Việt có nhiều dấu thanh: ả ã ạ ằ ẳ ẵ ặ", "Türkçe: İstanbul, ıslak, ĞÜŞÖÇ", "Polski: zażółć gęślą jaźń",
              "ქართული ენა", "Հայերեն լեզու", "አማርኛ ቋንቋ", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ", "བོད་ཡིག", "ಕನ್ನಡ ತೆಲುగు தமிழ் മലയാളം",
              "Deutsch: Straße, Maß, GROẞ", "Ελληνικά και English mixed 混合 text 123"],
}
EMOJI = ["👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇺🇸🇯🇵🇩🇪🇫🇷", "👍🏻👍🏼👍🏽👍🏾👍🏿", "1️⃣2️⃣#️⃣", "❤️‍🔥", "🧑‍🤝‍🧑", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
         "😀😃😄😁😆😅🤣😂", "🙂‍↔️🫨🪿", "☺︎ ☺️", "👁‍🗨", "🐈‍⬛", "🤷🏾‍♀️", "emoji🚀in😎text", "🇦", "🇦🇧🇨"]
CODE = [
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"Hello, %s!\\n\", \"world\");\n\treturn 0;\n}\n",
    "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(1, 2)}`);\n// comment\n/* block */\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "<!DOCTYPE html>\n<html><body><div class=\"x\">&nbsp;&lt;tag&gt;</div></body></html>",
    "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
    "#!/bin/bash\nfor f in *.txt; do echo \"$f\"; done | sort -u > out.log 2>&1\n",
    "template <typename T>\nstd::vector<T> v{1, 2, 3};\nauto x = std::move(v);  // C++17\n",
    "    indented   with   spaces\n\t\tand tabs\n  \t mixed\n",
    "x = {'a': 1, \"b\": 2}; y = x['a'] ** 2 // 3 % 4 != 5 <= 6 >= 7 == 8",
    "public static void main(String[] args) { System.out.println(\"Java\"); }",
    "\\begin{equation} E = mc^2 \\end{equation} % LaTeX",
    "a_b_c __init__ self.__dict__ $var @decorator #hashtag ~tilde ^caret |pipe",
    "if (x&&y||!z) { return a?b:c; } else if (p->q.r[0]) {}",
]
WS_ATOMS = [" ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\u00a0", "\u3000", "\x0b", "\x0c", "\x85", "\u2028",
            "\u2029", "\u200b", "\u180e", "\u2003", "\u202f", "\ufeff", "\u1680", "\x1c", "\x1f"]


def build_corpus(rng):
    items = []  # (cat, text)
    add = lambda cat, t: items.append((cat, t))

    for s in ENGLISH:
        add("english", s)
        add("english", s.upper())
        add("english", s.lower())
        add("english", " " + s)
        add("english", s + "\n")
    for _ in range(120):
        add("english", " ".join(rng.sample(ENGLISH, 3)))
    for lang, sents in OTHER_SCRIPTS.items():
        for s in sents:
            add(lang, s)
            add(lang, " " + s + " ")
            add(lang, s + "\n" + s)
        for _ in range(15):
            add(lang, "".join(rng.choice(sents) for _ in range(3)))
            add(lang, " ".join(rng.choice(sents + ENGLISH) for _ in range(3)))
    for e in EMOJI:
        add("emoji", e)
        add("emoji", "a" + e + "b")
        add("emoji", " " + e + " " + e)
        add("emoji", "Hello " + e + "!")
    for _ in range(40):
        add("emoji", "".join(rng.choice(EMOJI) for _ in range(rng.randint(2, 8))))
    for c in CODE:
        add("code", c)
        add("code", c.replace("\n", "\r\n"))
        add("code", c.replace("    ", "\t"))
    for _ in range(40):
        add("code", "\n".join(rng.sample(CODE, 3)))

    # Numbers of every length (Qwen splits digits one by one), with separators and other digit systems.
    for n in range(1, 61):
        d = "".join(rng.choice("0123456789") for _ in range(n))
        add("numbers", d)
        add("numbers", "x" + d + "y")
        add("numbers", " " + d + " apples")
        add("numbers", d[: n // 2] + "." + d[n // 2:])
    for s in ["1,234,567", "-42", "+3.14e-10", "0x1F", "1_000_000", "١٢٣٤٥٦٧٨٩٠", "۱۲۳", "०१२३", "１２３４",
              "²³¹", "½ ¼ ¾", "ⅠⅡⅢⅣ", "①②③", "𝟏𝟐𝟑", "10%", "$1,000.00", "2024-01-02T03:04:05Z", "v1.2.3",
              "3rd 21st 42nd", "1e10", "99.9%", "00000", "१२३abc४५६", "𝟘𝟙𝟚", "٣.١٤"]:
        add("numbers", s)
        add("numbers", "a " + s + " b")

    # Contractions in all cases (the regex is case-insensitive), with other apostrophes too.
    suffixes = ["s", "t", "re", "ve", "m", "ll", "d"]
    for suf in suffixes:
        for combo in itertools.product(*[(ch.lower(), ch.upper()) for ch in suf]):
            cs = "".join(combo)
            add("contractions", "it'" + cs)
            add("contractions", "IT'" + cs + " now")
            add("contractions", "'" + cs)
            add("contractions", " '" + cs + "x")
            add("contractions", "a’" + cs)
    for s in ["don't", "DON'T", "Don'T", "y'all'd've", "'ſ", "it'ſ", "'ﬅ", "'S'S'S", "''s", "' s", "'1", "'ß",
              "'K", "'\u212a", "'İ", "'ı", "rock 'n' roll", "'tis", "O'Reilly's"]:
        add("contractions", s)

    # Every whitespace combination between words, at the start and the end.
    for a in WS_ATOMS:
        for ctx in ("a{}b", "{}a", "a{}", "{}", "1{}2", "!{}?", "{}\u00e9"):
            add("whitespace", ctx.format(a))
    for a, b in itertools.product(WS_ATOMS, repeat=2):
        add("whitespace", "x" + a + b + "y")
        if rng.random() < 0.3:
            add("whitespace", a + b)
            add("whitespace", "word" + a + b)
    for _ in range(120):
        k = rng.randint(1, 8)
        add("whitespace", "w" + "".join(rng.choice(WS_ATOMS) for _ in range(k)) + rng.choice(["w", "", "1", "!"]))
    for n in range(1, 12):
        add("whitespace", "a" + " " * n + "b")
        add("whitespace", " " * n)
        add("whitespace", "trailing" + " " * n)
        add("whitespace", "\n" * n + "x")
        add("whitespace", "x" + "\r\n" * n)
        add("whitespace", "x" + "\r" * n + "y")
        add("whitespace", " \n" * n)

    # Added tokens: inline, adjacent, partial, nested.
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|vision_pad|>", "<tool_call>", "</tool_call>", "<think>", "</think>",
                "<|fim_prefix|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<|repo_name|>"]
    for sp in specials:
        add("special", sp)
        add("special", "a" + sp + "b")
        add("special", " " + sp + " ")
        add("special", sp + sp)
        add("special", "\n" + sp + "\n")
        add("special", sp[:-1])
        add("special", sp[1:])
        add("special", "<" + sp + ">")
    for _ in range(60):
        parts = [rng.choice(specials + ENGLISH[:6] + ["\n", " ", "user", "assistant", "[1]. "]) for _ in range(6)]
        add("special", "".join(parts))
    add("special", "<|im_start|>user\nWhat is MSA?<|im_end|>\n<|im_start|>assistant\n")
    add("special", "<|im_start|>[0]. First document.[0]<|im_end|><|im_start|>[1]. Second.[1]<|im_end|>")
    add("special", "<|im_end|<|im_end||im_end|><||im_end|>|")
    add("special", "<think>\n\n</think>\n\nanswer")

    # NFC: decomposed forms, Hangul, combining sequences, code points the oracle's NFC does not know.
    nfc_cases = ["e\u0301", "E\u0301\u0327", "a\u0316\u0301", "a\u0301\u0316", "\u1100\u1161\u11a8", "\u1100\u1161",
                 "\uac00\u11a8", "\u0958", "\uf900\uf901", "\u212b", "\u2126", "A\u030a", "\u0041\u0308\u0304",
                 "\u0915\u093c", "\u00c5\u0301", "q\u0307\u0323", "\u1e0b\u0323", "\u0344", "\u0340a",
                 "\U00011935\U00011930", "a\u0898\u0316", "\u0301\u0316", "x\u1ac1\u0316\u0301", "\u0d3b\u0d3c",
                 "\U0001d15e", "\u0f73", "\u0cc6\u0cc2\u0cd5", "\u0b47\u0b3e", "\u09c7\u09be", "\u1025\u102e",
                 "\U000110a5\U000110ba", "\u3099\u304b", "\u304b\u3099", "\uff76\uff9e", "\u00e9\u0301",
                 "\x00\u0301", "\x00e\u0301", "'\u0301s", "\u0301\u0301\u0301a"]
    for s in nfc_cases:
        add("nfc", s)
        add("nfc", "word " + s + " word")
        add("nfc", unicodedata.normalize("NFD", "Crème brûlée " + s))
    for s in ENGLISH[15:16] + OTHER_SCRIPTS["other"][:2] + OTHER_SCRIPTS["korean"][:2] + OTHER_SCRIPTS["greek"]:
        add("nfc", unicodedata.normalize("NFD", s))
        add("nfc", unicodedata.normalize("NFKD", s))

    # Letters/digits of recent Unicode versions (the oracle's regex is Unicode 16).
    for cp in [0x1C89, 0xA7CB, 0x105C0, 0x10D4A, 0x10D40, 0x11F04, 0x11F50, 0x13460, 0x16100, 0x16130, 0x1E030,
               0x1E4D0, 0x1E4F0, 0x1E5D0, 0x1E5F1, 0x2EBF0, 0x31350, 0x323AF, 0x1CCF0, 0x2EE60, 0xE0001, 0x10FFFF,
               0xFFFE, 0xFFFF, 0xE000, 0xF8FF, 0x0, 0x7F, 0x80, 0x9F, 0xAD, 0x34F, 0x1F3FB]:
        c = chr(cp)
        add("unicode", c)
        add("unicode", "a" + c + "b")
        add("unicode", "1" + c + c + "2")
        add("unicode", " " + c + "!")
    add("unicode", "nul\x00inside\x00\x00text")
    add("unicode", "\x00")
    add("unicode", "".join(chr(c) for c in range(1, 128)))
    add("unicode", "".join(chr(c) for c in range(0x80, 0x250)))

    # Random strings: code points from the whole range, from an alphabet of tricky characters, and random
    # bytes made valid UTF-8 (decoded with replacement).
    tricky = list("aZ09 '\t\n\r!?.,-_<|>") + WS_ATOMS + ["é", "e\u0301", "中", "ア", "한", "ب", "ж", "😀", "\u200d",
                                                         "\ufe0f", "🏽", "\U0001F1FA", "\u0301", "\u0316", "ſ", "S",
                                                         "<|im_end|>", "<think>", "ﬅ", "\u00a0", "\x00", "١"]
    for _ in range(300):
        add("random_alphabet", "".join(rng.choice(tricky) for _ in range(rng.randint(1, 40))))

    def rand_cp():
        r = rng.random()
        if r < 0.3:
            return rng.randint(0x20, 0x7E)
        if r < 0.6:
            return rng.randint(0x80, 0xFFFF)
        return rng.randint(0x10000, 0x10FFFF)

    for _ in range(300):
        s = "".join(chr(c) for c in (rand_cp() for _ in range(rng.randint(1, 30))) if not 0xD800 <= c < 0xE000)
        add("random_codepoints", s)
    for _ in range(300):
        b = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 60)))
        add("random_bytes_valid", b.decode("utf-8", "replace"))
    for _ in range(100):  # skewed towards multi-byte sequences
        b = bytes(rng.choice([rng.randint(0x80, 0xBF), rng.randint(0xC2, 0xF4), rng.randint(0x20, 0x7E)])
                  for _ in range(rng.randint(1, 60)))
        add("random_bytes_valid", b.decode("utf-8", "replace"))

    # 100 KB strings.
    big = []
    mixed = []
    while sum(map(len, mixed)) < 100_000:
        mixed.append(rng.choice(ENGLISH + CODE + sum(OTHER_SCRIPTS.values(), []) + EMOJI))
    big.append(" ".join(mixed))
    big.append("".join(rng.choice("0123456789") for _ in range(100_000)))
    big.append(" " * 100_000)
    big.append(" " * 99_999 + "x")
    big.append("a" * 100_000)
    big.append("ab" * 50_000)
    big.append("中" * 33_000)
    big.append("\n" * 50_000 + "\r\n" * 25_000)
    big.append("😀" * 25_000)
    big.append("e\u0301" * 33_000)
    big.append("<|im_end|>" * 10_000)
    big.append("".join(rng.choice(tricky) for _ in range(60_000)))
    for s in big:
        add("long", s)
    return items


def invalid_utf8_cases(rng):
    cases = [b"\xff", b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
             b"\xf0\x8f\xbf\xbf", b"\xe2\x82", b"abc\xe2\x82", b"\xe2\x82abc", b"\x80\x80\x80", b"\xf0\x9f\x98",
             b"\xf0\x9f\x98\x80\x80", b"a\xc3", b"\xc3\x28", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
             b"<|im_\xffend|>", b"<|im_end|>\xff<|im_start|>", b"\xe4\xb8\xad\xe4\xb8", b"caf\xe9", b"\x00\xff\x00",
             b"\xc2", b"\xdf\xbf\xdf", b"\xef\xbb\xbf\xef\xbb", b"\xed\x9f\xbf\xed\xa0", b"\xe0\xa0"]
    for _ in range(250):
        cases.append(bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 50))))
    for _ in range(100):
        s = rng.choice(ENGLISH + sum(OTHER_SCRIPTS.values(), []) + EMOJI).encode()
        i = rng.randint(0, len(s))
        j = rng.randint(i, min(len(s), i + 3))
        cases.append(s[:i] + s[j:] if rng.random() < 0.5 else s[:i] + bytes([rng.randint(0x80, 0xFF)]) + s[i:])
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "..", "shared", "data", "qwen3-tokenizer",
                                                          "tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "tokenizer"))
    args = ap.parse_args()
    from tokenizers import Tokenizer
    import tokenizers

    tok = Tokenizer.from_file(args.tokenizer)
    rng = random.Random(20240601)
    corpus = build_corpus(rng)
    records = []
    seen = set()
    for cat, text in corpus:
        if (cat, text) in seen:
            continue
        seen.add((cat, text))
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.encode(text, add_special_tokens=True).ids == ids
        rec = {"cat": cat, "text": text, "ids": ids}
        dec = tok.decode(ids, skip_special_tokens=False)
        if dec != text:
            rec["decoded"] = dec
        records.append(rec)
    n_text = len(records)
    for b in invalid_utf8_cases(rng):
        text = b.decode("utf-8", "replace")
        ids = tok.encode(text, add_special_tokens=False).ids
        records.append({"cat": "invalid_utf8", "hex": b.hex(), "ids": ids,
                        "decoded": tok.decode(ids, skip_special_tokens=False)})
    # Decode goldens: every id of the vocabulary once, in random groups, plus byte-token soup.
    vocab = tok.get_vocab_size(with_added_tokens=True)
    all_ids = list(range(vocab))
    rng.shuffle(all_ids)
    i = 0
    while i < len(all_ids):
        k = rng.randint(1, 12)
        ids = all_ids[i:i + k]
        i += k
        records.append({"cat": "decode", "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    byte_ids = [tok.token_to_id(c) for c in
                [chr(x) for x in range(0x21, 0x7F)] + [chr(x) for x in range(0xA1, 0x144) if x != 0xAD]]
    byte_ids = [x for x in byte_ids if x is not None]
    for _ in range(400):
        ids = [rng.choice(byte_ids) for _ in range(rng.randint(1, 20))]
        records.append({"cat": "decode", "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})

    os.makedirs(args.out, exist_ok=True)
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path = os.path.join(args.out, "goldens.jsonl.zst")
    subprocess.run(["zstd", "-19", "-q", "-f", "-o", path], input=raw, check=True)
    # CLI sample: short encode goldens of every category.
    sample = []
    by_cat = {}
    for r in records[:n_text]:
        if len(r["text"]) <= 400:
            by_cat.setdefault(r["cat"], []).append(r)
    for cat in sorted(by_cat):
        sample += rng.sample(by_cat[cat], min(12, len(by_cat[cat])))
    with open(os.path.join(args.out, "cli_sample.jsonl"), "w", encoding="utf-8") as f:
        for r in sample:
            rec = {"text": r["text"], "ids": r["ids"]}
            if "decoded" in r:
                rec["decoded"] = r["decoded"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    seeds = os.path.join(ROOT, "tests", "fuzz", "corpus", "tokenizer")
    os.makedirs(seeds, exist_ok=True)
    for k, r in enumerate(rng.sample([r for r in records[:n_text] if len(r["text"]) < 300], 32)):
        with open(os.path.join(seeds, f"seed_{k:02d}"), "wb") as f:
            f.write(r["text"].encode())
    cats = {}
    for r in records:
        cats[r["cat"]] = cats.get(r["cat"], 0) + 1
    print(f"tokenizers {tokenizers.__version__}: {n_text} text goldens, {len(records)} records, "
          f"{len(raw) / 1e6:.1f} MB raw -> {os.path.getsize(path) / 1e6:.2f} MB; {cats}")


if __name__ == "__main__":
    main()
