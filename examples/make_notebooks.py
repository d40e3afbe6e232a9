"""Write the example notebooks from the cell sources below (so they are reviewed as code, not JSON).

    python examples/make_notebooks.py        # rewrites examples/*.ipynb without outputs

tests/test_notebooks.py executes each one top to bottom (nbclient) on small real data.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

SETUP = '''import os
from pathlib import Path

import matplotlib
import pandas as pd

from bertlearn import BertDataBunch, BertLearner

# the real datasets live beside the repository (../shared/data); BERTLEARN_DATA points elsewhere
DATA = Path(os.environ.get("BERTLEARN_DATA", "../../shared/data"))
ROWS = int(os.environ.get("NOTEBOOK_ROWS", "2000"))  # training rows: small, so the notebook runs on a CPU'''

NOTEBOOKS = {
    "quickstart": [
        ("md", "# bertlearn quickstart\n\nFine-tune the packaged all-MiniLM-L6-v2 on SST-2 movie-review sentences: "
               "a databunch, a learner, `fit`. Then predict, save, and load the result in a Hugging Face "
               "`pipeline`."),
        ("code", SETUP),
        ("code", 'train = pd.read_csv(DATA / "sst2" / "train.csv").sample(n=ROWS, random_state=0)\n'
                 'valid = pd.read_csv(DATA / "sst2" / "valid.csv")\n'
                 'databunch = BertDataBunch.from_df(train, valid, None, text_col="text", label_col="label", bs=32, '
                 'maxlen=64,\n'
                 '                                  seed=0)  # seed: the same batches on every run\n'
                 'databunch.show_batch(max_n=4)'),
        ("md", "`None` as the tokenizer and model means the packaged all-MiniLM-L6-v2; pass `'bert-base-uncased'` "
               "or a local folder for another encoder."),
        ("code", 'learner = BertLearner.from_pretrained_model(databunch, None, metrics=None, device=None, logger=None,\n'
                 '                                            output_dir="runs/quickstart", seed=0)\n'
                 'suggestion = learner.lr_find()\n'
                 'suggestion'),
        ("code", "learner.fit(1, lr=1e-4)\nresults = learner.validate()\nresults"),
        ("code", 'learner.predict_batch(["a gorgeous, witty, seductive movie", "a dull and lifeless mess"])'),
        ("code", 'path = learner.save_model()\n'
                 'from transformers import pipeline\n'
                 'classifier = pipeline("text-classification", model=str(path))\n'
                 'classifier("an utterly charming and hilarious film")'),
        ("code", 'print(f"SST-2 dev accuracy after {ROWS} training rows: {results[\'accuracy\']:.3f}")'),
    ],
    "multi_label": [
        ("md", "# Multi-label: several emotions per comment (GoEmotions)\n\nLabels are 0/1 columns; the loss is "
               "BCE-with-logits, probabilities are sigmoids, and `tune_thresholds` picks a threshold per label on "
               "the validation set. Here a subset of six frequent, fairly lexical emotions keeps the notebook "
               "small. Each label is rare, so `pos_weight='balanced'` weights its positives by its "
               "negatives/positives ratio: with plain BCE the packaged MiniLM stays at the label priors."),
        ("code", SETUP),
        ("code", 'LABELS = ["admiration", "amusement", "anger", "gratitude", "love", "neutral"]\n'
                 'def load(name):\n'
                 '    df = pd.read_csv(DATA / "goemotions" / f"{name}.csv")\n'
                 '    return df[["text", *LABELS]]\n'
                 'train = load("train").sample(n=ROWS * 2, random_state=0)\n'
                 'valid, test = load("valid").sample(n=800, random_state=0), load("test")\n'
                 'databunch = BertDataBunch.from_df(train, valid, None, text_col="text", label_col=LABELS,\n'
                 '                                  multi_label=True, pos_weight="balanced", bs=32, maxlen=64, seed=0)\n'
                 'databunch.show_batch(max_n=4)'),
        ("code", 'learner = BertLearner.from_pretrained_model(databunch, None, metrics=None, device=None, logger=None,\n'
                 '                                            output_dir="runs/multi_label", seed=0)\n'
                 'learner.fit(2, lr=1e-4)'),
        ("code", "thresholds = learner.tune_thresholds()\ndict(zip(LABELS, thresholds))"),
        ("code", 'import torch\n'
                 'from bertlearn.metrics import evaluate\n'
                 'logits = learner.predict_logits(test["text"].tolist())\n'
                 'report = evaluate(logits, test[LABELS].to_numpy("float32"), "multi_label_classification", LABELS,\n'
                 '                  thresholds=thresholds)\n'
                 'report'),
        ("code", 'learner.predict_labels(["Thank you so much, this made my day!", "lol that is hilarious",\n'
                 '                        "This is outrageous and I am furious"])'),
        ("code", 'print(f"test macro-F1 over {len(LABELS)} emotions: {report[\'f1_macro\']:.3f}")'),
    ],
    "pairs": [
        ("md", "# Sentence pairs: paraphrase detection (MRPC)\n\n`text_col=['text_a', 'text_b']` encodes the two "
               "sentences as one input with segment ids, as BERT was pretrained; prediction takes `(a, b)` pairs."),
        ("code", SETUP),
        ("code", 'train = pd.read_csv(DATA / "mrpc" / "train.csv")\n'
                 'test = pd.read_csv(DATA / "mrpc" / "test.csv")\n'
                 'train = train.sample(n=min(ROWS, len(train)), random_state=0)\n'
                 'databunch = BertDataBunch.from_df(train, test, None, text_col=["text_a", "text_b"], label_col="label",\n'
                 '                                  bs=32, maxlen=128, seed=0)\n'
                 'databunch.show_batch(max_n=3)'),
        ("code", 'learner = BertLearner.from_pretrained_model(databunch, None, metrics=None, device=None, logger=None,\n'
                 '                                            output_dir="runs/pairs", seed=0)\n'
                 'learner.fit(2, lr=1e-4)\n'
                 'results = learner.validate()\n'
                 'results'),
        ("code", 'learner.predict_batch([("The cat sat on the mat.", "A cat was sitting on the mat."),\n'
                 '                       ("The company reported a loss.", "Stocks rallied on Friday.")])'),
        ("code", 'majority = (test["label"] == "equivalent").mean()\n'
                 'print(f"MRPC test accuracy {results[\'accuracy\']:.3f} (majority class {majority:.3f})")'),
    ],
    "interpretation": [
        ("md", "# Interpretation: what does the model get wrong? (TREC-6 questions)\n\nfastai's "
               "`ClassificationInterpretation` works on a `BertLearner`: confusion matrix, most confused pairs, a "
               "classification report and the top losses shown as texts. Plots can be saved as PNG."),
        ("code", SETUP),
        ("code", 'train = pd.read_csv(DATA / "trec6" / "train.csv").sample(n=ROWS, random_state=0)\n'
                 'test = pd.read_csv(DATA / "trec6" / "test.csv")\n'
                 'databunch = BertDataBunch.from_df(train, test, None, bs=32, maxlen=48, seed=0)\n'
                 'learner = BertLearner.from_pretrained_model(databunch, None, metrics=None, device=None, logger=None,\n'
                 '                                            output_dir="runs/interpretation", seed=0)\n'
                 'learner.fit(3, lr=1e-4)'),
        ("code", "learner.recorder.plot_loss()"),
        ("code", "learner.show_results(max_n=6)"),
        ("code", 'from bertlearn import ClassificationInterpretation\n'
                 'interp = ClassificationInterpretation.from_learner(learner)\n'
                 'interp.plot_confusion_matrix()\n'
                 'import matplotlib.pyplot as plt\n'
                 'plt.savefig("confusion_matrix.png")'),
        ("code", "interp.most_confused()[:5]"),
        ("code", "interp.print_classification_report()"),
        ("code", "interp.plot_top_losses(6)"),
        ("code", 'print(f"TREC-6 test accuracy: {learner.validate()[\'accuracy\']:.3f}")'),
    ],
    "polysemy": [
        ("md", "# One word, many meanings: contextual vs static vectors\n\nA BERT hidden state depends on the "
               "sentence: *apple* the fruit and *Apple* the company get different vectors, and so do the river "
               "*bank* and the money *bank*. The input-embedding table (what a word2vec-style model has) gives one "
               "vector per word whatever the sentence. Runs on the packaged all-MiniLM-L6-v2; no data files needed."),
        ("code", 'import matplotlib.pyplot as plt\n'
                 'import numpy as np\n'
                 'import pandas as pd\n'
                 'from bertlearn import cosine_similarity_matrix, word_in_context\n'
                 'from bertlearn.embed import EXAMPLE_SENSES, project_2d, sense_separation'),
        ("code", 'word = "apple"\n'
                 'senses = [sense for sense, sents in EXAMPLE_SENSES[word].items() for _ in sents]\n'
                 'sentences = [s for sents in EXAMPLE_SENSES[word].values() for s in sents]\n'
                 'wic = word_in_context(word, sentences)   # None = the packaged model\n'
                 'sim = cosine_similarity_matrix(wic.contextual)\n'
                 'labels = [f"{i + 1} {s}" for i, s in enumerate(senses)]\n'
                 'pd.DataFrame(sim, index=labels, columns=labels).round(2)'),
        ("md", "The static vector is the same in every sentence, so its similarity matrix is all ones:"),
        ("code", 'static = cosine_similarity_matrix(np.stack([wic.static] * len(sentences)))\n'
                 'pd.DataFrame(static, index=labels, columns=labels).round(2)'),
        ("code", 'fig, axes = plt.subplots(1, 3, figsize=(15, 4))\n'
                 'results = {}\n'
                 'for ax, word in zip(axes, EXAMPLE_SENSES):\n'
                 '    senses = [sense for sense, sents in EXAMPLE_SENSES[word].items() for _ in sents]\n'
                 '    sentences = [s for sents in EXAMPLE_SENSES[word].values() for s in sents]\n'
                 '    wic = word_in_context(word, sentences)\n'
                 '    results[word] = sense_separation(cosine_similarity_matrix(wic.contextual), senses)\n'
                 '    points = project_2d(wic.contextual)\n'
                 '    for sense in EXAMPLE_SENSES[word]:\n'
                 '        idx = [i for i, s in enumerate(senses) if s == sense]\n'
                 '        ax.scatter(points[idx, 0], points[idx, 1], label=sense, s=60)\n'
                 '    ax.set_title(f"{word!r}: contextual vectors (PCA)")\n'
                 '    ax.legend()\n'
                 'plt.tight_layout()'),
        ("code", 'pd.DataFrame(results).T.round(3)'),
        ("code", 'separated = sum(r["same_sense"] > r["cross_sense"] for r in results.values())\n'
                 'print(f"contextual vectors separate the senses of {separated}/{len(results)} words; "\n'
                 '      f"static vectors separate 0/{len(results)}")'),
    ],
    "ner": [
        ("md", "# Named entities (token classification) on WNUT-17\n\nWNUT-17 tags emerging entities (people, "
               "locations, corporations, products, creative works, groups) in tweets and forum posts, one word and "
               "its tag per line (CoNLL). `BertNERDataBunch` reads the files as fast-bert's did; a word's first "
               "sub-word carries its tag; `validate()` scores entities with seqeval (conlleval-compatible); "
               "`predict` returns entities with character offsets, like the Hugging Face pipeline."),
        ("code", SETUP.replace("from bertlearn import BertDataBunch, BertLearner",
                               "from bertlearn import BertNERDataBunch, BertNERLearner, BertNERPredictor\n"
                               "from bertlearn.data import TaggedSentences, read_conll")),
        ("code", 'full = read_conll(DATA / "wnut17" / "train.conll")\n'
                 'train = TaggedSentences(full.words[:ROWS], full.tags[:ROWS], source="train.conll")\n'
                 'dev = read_conll(DATA / "wnut17" / "dev.conll")\n'
                 'databunch = BertNERDataBunch.from_sentences(train, dev, None, bs=32, maxlen=128, seed=0)\n'
                 'print(databunch.labels, databunch.scheme)\n'
                 'databunch.show_batch(max_n=4)'),
        ("md", "The constructor reads the folder directly, as fast-bert's did: `BertNERDataBunch(DATA / 'wnut17', "
               "None, train_file='train.conll', val_file='dev.conll', label_file=None, batch_size_per_gpu=32, "
               "max_seq_length=128)`; here a subset keeps the notebook small."),
        ("code", 'learner = BertNERLearner.from_pretrained_model(databunch, None, output_dir="runs/ner", seed=0)\n'
                 'learner.fit(3, lr=1e-4)\n'
                 'results = learner.validate()\n'
                 '{k: round(v, 3) for k, v in results.items() if "_" not in k}'),
        ("code", 'learner.report().round(3)'),
        ("code", 'learner.confusions()'),
        ("code", 'learner.predict("Going to see Star Wars with Chris at the Apple store in London tomorrow")'),
        ("code", 'learner.predict_tokens([["Chris", "works", "at", "Google", "in", "London"]])'),
        ("code", 'path = learner.save_model()\n'
                 'from transformers import pipeline\n'
                 'tagger = pipeline("token-classification", model=str(path), aggregation_strategy="first")\n'
                 'text = "Chris flew to London to see the new iPhone"\n'
                 'print(tagger(text))\n'
                 'print(BertNERPredictor(path).predict(text))'),
        ("code", 'test = read_conll(DATA / "wnut17" / "test.conll")\n'
                 'from bertlearn.tasks.token_classification import entity_scores\n'
                 'scores = entity_scores(test.tags, learner.predict_tokens(test.words))\n'
                 'print(f"WNUT-17 test entity F1 after {ROWS} training sentences: {scores[\'f1\']:.3f}")'),
    ],
}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = build(cells)
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name}-{i}"  # stable ids: regenerating gives the same file
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote examples/{name}.ipynb")


if __name__ == "__main__":
    main()
