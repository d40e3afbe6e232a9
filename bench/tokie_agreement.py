"""Where tokie gives the tokenizers library's ids: the check behind bertlearn's use of tokie (bertlearn/data/backends.py).

    python bench/tokie_agreement.py [--fuzz 100000]

Encodes the same texts with tokie (`encode_batch_flat`) and with the tokenizers library (`encode_batch_fast`),
both from the packaged MiniLM's tokenizer.json (uncased) and a cased copy of it, cut left and right at several
lengths, and counts the texts whose ids differ, per kind of text:
- real texts of every CSV under ../shared/data (ASCII and not);
- fuzzed ASCII: random ASCII strings (control characters included) and strings of vocabulary words, punctuation,
  whitespace, long words and special-token strings, without DEL (what bertlearn sends to tokie);
- fuzzed ASCII with DEL, and random strings of other scripts and symbols (what bertlearn keeps from tokie).
Run it again before raising tokie's upper bound in pyproject.toml: the first two kinds must stay at 0.
"""

from __future__ import annotations

import argparse
from importlib import metadata
import json
import random
import string
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402


def real_texts() -> list[str]:
    texts = []
    for csv in sorted(DATA_ROOT.glob("*/*.csv")):
        df = pd.read_csv(csv)
        for col in df.columns:
            if col.startswith("text"):
                texts += df[col].dropna().astype(str).tolist()
    return texts


def fuzzed(n: int, vocab: list[str], seed: int = 1) -> tuple[list[str], list[str], list[str]]:
    """(ASCII without DEL, ASCII with DEL, other scripts) strings."""
    rng = random.Random(seed)
    codes = [chr(i) for i in range(128)]
    pieces = string.punctuation + " \t\n\r\x0b\x0c\x00\x7f"
    ascii_texts = []
    for _ in range(n):
        k = rng.random()
        if k < 0.4:
            ascii_texts.append("".join(rng.choice(codes) for _ in range(rng.randint(0, 60))))
        elif k < 0.8:
            parts = []
            for _ in range(rng.randint(0, 30)):
                w = rng.choice(vocab).replace("##", "") if rng.random() < 0.8 else rng.choice(pieces)
                w = w.upper() if rng.random() < 0.3 else w.capitalize() if rng.random() < 0.2 else w
                parts += [w, rng.choice(["", " ", "  ", "\t", "-", "'", ".", "\n"])]
            ascii_texts.append("".join(parts))
        else:
            alphabet = string.ascii_letters + string.digits
            ascii_texts.append(" ".join("".join(rng.choice(alphabet) for _ in range(rng.choice([1, 5, 50, 99, 100, 101,
                                                                                                  150])))
                                        for _ in range(rng.randint(1, 4))))
    ascii_texts += ["[CLS] a [SEP] b [PAD] [MASK] [UNK] [cls] [Sep]", "[CLS]", "a[SEP]b", "x [MASK]y", "[UNK][UNK]"]
    other_codes = [chr(c) for c in range(160, 0x3000, 7)]
    others = ["".join(rng.choice(other_codes) for _ in range(rng.randint(1, 40))) for _ in range(n // 10)]
    return ([t for t in ascii_texts if "\x7f" not in t], [t for t in ascii_texts if "\x7f" in t], others)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fuzz", type=int, default=100_000, help="fuzzed ASCII strings")
    args = ap.parse_args()
    import tokie
    from tokenizers import Tokenizer

    from bertlearn import default_model_path
    uncased = json.loads((default_model_path() / "tokenizer.json").read_text())
    cased = json.loads(json.dumps(uncased))
    cased["normalizer"]["lowercase"] = False
    vocab = [w for w in uncased["model"]["vocab"] if w.isascii() and not w.startswith("[")]
    real = real_texts()
    fuzz_ascii, fuzz_del, fuzz_other = fuzzed(args.fuzz, vocab)
    kinds = {"real, ASCII without DEL": [t for t in real if t.isascii() and "\x7f" not in t],
             "real, other": [t for t in real if not (t.isascii() and "\x7f" not in t)],
             "fuzzed ASCII without DEL": fuzz_ascii, "fuzzed ASCII with DEL": fuzz_del,
             "fuzzed other scripts and symbols": fuzz_other}
    settings = [(name, side, maxlen) for name in ("uncased", "cased") for side in ("right", "left")
                for maxlen in (None, 128, 9, 3)]
    print(f"tokie {metadata.version('tokie')} against tokenizers {metadata.version('tokenizers')}; texts whose ids differ, of all texts\n")
    print("| kind | texts | " + " | ".join(f"{n} {s} {m or 'no cut'}" for n, s, m in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    with tempfile.TemporaryDirectory() as tmp:
        pairs = []
        for name, side, maxlen in settings:
            definition = uncased if name == "uncased" else cased
            path = Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(definition))
            ref, fast = Tokenizer.from_str(json.dumps(definition)), tokie.Tokenizer.from_json(str(path))
            ref.no_padding()
            fast.no_padding()
            if maxlen:
                ref.enable_truncation(maxlen, strategy="longest_first", direction=side)
                fast.enable_truncation(maxlen, direction=side)
            else:
                ref.no_truncation()
                fast.no_truncation()
            pairs.append((ref, fast))
        for kind, texts in kinds.items():
            counts = []
            for ref, fast in pairs:
                values, lengths = fast.encode_batch_flat(texts)
                ends = lengths.cumsum()
                got = [values[e - n:e].tolist() for e, n in zip(ends, lengths)]
                counts.append(sum(a.ids != b for a, b in zip(ref.encode_batch_fast(texts), got)))
            print(f"| {kind} | {len(texts):,} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    print(f"\nmachine: {describe()}")


if __name__ == "__main__":
    main()
