"""Every bad input bertlearn is tested against, with the message it gets.

One list serves two purposes: `tests/test_bad_inputs.py` checks each scenario raises a `BertLearnError`
(or warns, where the input is usable), and `python tests/bad_inputs.py` writes the table in
docs/reliability.md from the very same runs, so the document cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import make_texts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Ctx:
    """A scratch folder with train.csv / val.csv / labels.csv, the tiny tokenizer and model folder."""

    def __init__(self, root: Path, model_dir: Path, tokenizer):
        self.root, self.model_dir, self.tokenizer = root, model_dir, tokenizer
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        make_texts(40, seed=1).to_csv(self.data / "train.csv", index=False)
        make_texts(16, seed=2).to_csv(self.data / "val.csv", index=False)
        (self.data / "labels.csv").write_text("negative\npositive\n")

    def train(self) -> pd.DataFrame:
        return pd.read_csv(self.data / "train.csv")

    def write(self, df: pd.DataFrame, name: str = "train.csv", **kwargs) -> None:
        df.to_csv(self.data / name, index=False, **kwargs)

    def bunch(self, **kwargs):
        from bertlearn import BertDataBunch
        kwargs.setdefault("maxlen", 32)
        tokenizer = kwargs.pop("tokenizer", self.tokenizer)
        return BertDataBunch(self.data, self.data, tokenizer, device="cpu", **kwargs)

    def learner(self, **kwargs):
        from bertlearn import BertLearner
        return BertLearner.from_pretrained_model(self.bunch(), str(self.model_dir), None, "cpu", None,
                                                 output_dir=self.root / "out", **kwargs)


def _edit(ctx: Ctx, fn: Callable[[pd.DataFrame], pd.DataFrame], name: str = "train.csv") -> None:
    df = pd.read_csv(ctx.data / name)
    ctx.write(fn(df), name)


def _set(df, row, col, value):
    df = df.astype({col: object})
    df.loc[row, col] = value
    return df


# (what, how it is triggered): each function raises or warns
SCENARIOS: list[tuple[str, Callable[[Ctx], object]]] = [
    ("data folder missing", lambda c: __import__("bertlearn").BertDataBunch(c.root / "nowhere", None, c.tokenizer)),
    ("train file missing", lambda c: c.bunch(train_file="trian.csv")),
    ("empty CSV (0 bytes)", lambda c: ((c.data / "train.csv").write_text(""), c.bunch())),
    ("header-only CSV", lambda c: ((c.data / "train.csv").write_text("text,label\n"), c.bunch())),
    ("TSV passed as CSV", lambda c: (c.write(c.train(), sep="\t"), c.bunch())),
    ("TSV text starting with a quote (rows would merge)", lambda c: (
        _typed(c, "train.tsv", 'text\tlabel\n"the movie\tpositive\nboring film\tnegative\na "great" film\tpositive\n'),
        _typed(c, "val.tsv", "text\tlabel\nok\tpositive\nbad\tnegative\n"),
        c.bunch(train_file="train.tsv", val_file="val.tsv", sep="\t", label_file=None))),
    ("TSV rows merged by a quote closed lines later (warning)", lambda c: (
        _typed(c, "train.tsv", 'text\tlabel\n"the movie\tpositive\nboring film\tnegative\ngreat film"\tpositive\n'
                               'ok\tnegative\n'),
        _typed(c, "val.tsv", "text\tlabel\nok\tpositive\nbad\tnegative\n"),
        c.bunch(train_file="train.tsv", val_file="val.tsv", sep="\t", label_file=None))),
    ("quoting= not a csv constant", lambda c: c.bunch(quoting="none")),
    ("CSV header naming a column twice", lambda c: (c.write(c.train().assign(extra=c.train()["label"]),
                                                            header=["text", "label", "label"]), c.bunch())),
    ("a comma in every text, not row names", lambda c: (
        _typed(c, "train.csv", "text,label\n" + "Paris, France,europe\nTokyo, Japan,asia\n" * 4), c.bunch())),
    ("row names in front of every row (warning)", lambda c: (
        _typed(c, "train.csv", "text,label\n" + "".join(f"{i},{t},{l}\n" for i, (t, l) in enumerate(
            zip(c.train()["text"], c.train()["label"])))), c.bunch())),
    ("a label column of lists, single-label", lambda c: _list_labels(c)),
    ("numbers as class labels streamed from disk (a class per row)", lambda c: _many_scores(c)),
    ("text_col misspelt", lambda c: c.bunch(text_col="txt")),
    ("label_col misspelt", lambda c: c.bunch(label_col="lable")),
    ("integer column out of range", lambda c: c.bunch(label_col=7)),
    ("empty and missing texts", lambda c: (_edit(c, lambda d: _set(_set(d, 2, "text", ""), 5, "text", None)), c.bunch())),
    ("numbers in the text column", lambda c: (_edit(c, lambda d: d.assign(text=range(len(d)))), c.bunch())),
    ("missing labels", lambda c: (_edit(c, lambda d: _set(d, 3, "label", None)), c.bunch())),
    ("a single class", lambda c: (_edit(c, lambda d: d.assign(label="positive")), (c.data / "labels.csv").unlink(),
                                  c.bunch())),
    ("validation label unseen in training", lambda c: (_edit(c, lambda d: _set(d, 0, "label", "neutral"), "val.csv"),
                                                       c.bunch())),
    ("labels.csv lacks a label of the data", lambda c: ((c.data / "labels.csv").write_text("negative\n"),
                                                        c.bunch())),
    ("labels.csv has a label absent from the data", lambda c: (
        (c.data / "labels.csv").write_text("negative\nneutral\npositive\n"), c.bunch())),
    ("multi-label columns not 0/1", lambda c: (_edit(c, lambda d: d.assign(a=2, b=0)),
                                               _edit(c, lambda d: d.assign(a=0, b=1), "val.csv"),
                                               c.bunch(label_col=["a", "b"], multi_label=True, label_file=None))),
    ("labels.csv names labels the multi-label columns lack", lambda c: (
        _edit(c, lambda d: d.assign(a=1, b=0)), _edit(c, lambda d: d.assign(a=0, b=1), "val.csv"),
        c.bunch(label_col=["a", "b"], multi_label=True))),
    ("one side of a sentence pair missing", lambda c: (
        _edit(c, lambda d: _set(d.assign(text_b=d["text"]), 4, "text_b", None)),
        _edit(c, lambda d: d.assign(text_b=d["text"]), "val.csv"), c.bunch(text_col=["text", "text_b"]))),
    ("regression target not numeric", lambda c: (_edit(c, lambda d: d.assign(score="high")),
                                                 _edit(c, lambda d: d.assign(score=1.0), "val.csv"),
                                                 c.bunch(label_col="score", regression=True))),
    ("regression given classification labels", lambda c: (_edit(c, lambda d: d.assign(score=2.5)),
                                                         _edit(c, lambda d: d.assign(score=1.0), "val.csv"),
                                                         c.bunch(label_col="score", regression=True,
                                                                 labels=["negative", "positive"]))),
    ("regression beside a classification's labels.csv (warning)", lambda c: (
        _edit(c, lambda d: d.assign(score=d.index % 3)), _edit(c, lambda d: d.assign(score=1.0), "val.csv"),
        c.bunch(label_col="score", regression=True))),
    ("a text of zero-width spaces only", lambda c: (_edit(c, lambda d: _set(d, 2, "text", "\u200b\u200b")),
                                                    c.bunch())),
    ("label_file misspelt", lambda c: c.bunch(label_file="lables.csv")),
    ("bs=0", lambda c: c.bunch(bs=0)),
    ("maxlen above the tokenizer's limit (clipped)", lambda c: c.bunch(maxlen=100_000)),
    ("Windows-1252 bytes (read as cp1252)", lambda c: (
        (c.data / "train.csv").write_bytes(("text,label\n" + "caf\xe9 good film,positive\nbad \u2026 movie,negative\n" * 3)
                                           .encode("cp1252")), c.bunch(label_file=None))),
    ("maxlen above the model's max_position_embeddings (clipped)", lambda c: _short_model(c)),
    ("a databunch cut for a shorter model, given to a longer one (warning)", lambda c: _reused_cut(c)),
    ("padding_side='left' on a BERT tokenizer (warning)", lambda c: c.bunch(tokenizer=_left_padding(c))),
    ("grad_accumulation_steps=0", lambda c: c.learner(grad_accumulation_steps=0)),
    ("sentence pairs with segment ids, model with one segment embedding", lambda c: _one_segment_pairs(c)),
    ("masked-LM adaptation of a model without a masked-LM head", lambda c: _xlnet_lm(c)),
    ("logger given as a string", lambda c: __import__("bertlearn").BertLearner.from_pretrained_model(
        c.bunch(), str(c.model_dir), None, "cpu", "mylog")),
    ("one metric dict instead of a list", lambda c: __import__("bertlearn").BertLearner.from_pretrained_model(
        c.bunch(), str(c.model_dir), {"name": "accuracy", "function": len}, "cpu", None)),
    ("text_col and label_col the same column", lambda c: c.bunch(text_col="label")),
    ("a misspelt learner option", lambda c: c.learner(lerning_rate=1e-4)),
    ("fastai's loss_func given to the factory", lambda c: c.learner(loss_func=__import__("torch").nn.L1Loss())),
    ("lr=0", lambda c: c.learner().fit(1, lr=0)),
    ("lr='fast'", lambda c: c.learner().fit(1, lr="fast")),
    ("lr=1e-2 (trains, with a warning)", lambda c: _fit_quiet(c.learner(), 1, "1e-2")),
    ("epochs=0", lambda c: c.learner().fit(0, lr=1e-4)),
    ("hub model name while offline", lambda c: __import__("bertlearn").load_model("bert-base-uncased", labels=["a", "b"])),
    ("model folder without config or weights", lambda c: (
        (c.root / "empty_model").mkdir(), __import__("bertlearn").load_model(str(c.root / "empty_model"), labels=["a", "b"]))),
    ("checkpoint with another label count", lambda c: __import__("bertlearn").load_model(
        str(c.learner().save_model(c.root / "two")), labels=["a", "b", "c"])),
    ("predict before fit (warning)", lambda c: c.learner().predict("good film")),
    ("load_learner on a missing file", lambda c: __import__("bertlearn").load_learner(c.root / "export.pkl")),
    ("predictor on a folder without weights", lambda c: (
        (c.learner().save_model(c.root / "m") / "model.safetensors").unlink(),
        __import__("bertlearn").BertClassificationPredictor(c.root / "m"))),
    ("resume from a corrupt checkpoint", lambda c: _corrupt_resume(c)),
    ("to_onnx into a folder holding another export's graph", lambda c: (
        c.learner().to_onnx(c.root / "exp" / "a.onnx"), c.learner().to_onnx(c.root / "exp" / "b.onnx"))),
    ("OnnxPredictor on a graph its folder's bertlearn.json does not record (warning)",
     lambda c: _graph_beside_another(c)),
    ("resume in another precision (bf16 autocast added)", lambda c: _changed_resume(c, change=_bf16)),
    ("resume with another model config (no dropout)", lambda c: _changed_resume(
        c, model_dir=__import__("conftest").without_dropout(c.model_dir, c.root / "nodrop"))),
    ("resume with another loss (label_smoothing=0.3)", lambda c: _changed_resume(c, change=_label_smoothing)),
    ("resume on another model folder of the same config (warning)", lambda c: _other_folder_resume(c)),
    ("NER: a CoNLL line without a tag", lambda c: _ner(c, "Jane\tB-PER\nDoe\n")),
    ("NER: a tag outside the label file", lambda c: _ner(c, "Jane\tB-PER\nParis\tB-LOC\n", labels="O\nB-PER\n")),
    ("NER: an empty CoNLL file", lambda c: _ner(c, "-DOCSTART- O\n\n")),
    ("NER: tag_scheme='IOB2' broken (I- after another type)", lambda c: _ner(c, "Jane\tB-PER\nParis\tI-LOC\n",
                                                                            tag_scheme="IOB2")),
    ("NER: a JSONL span outside the text", lambda c: _ner_jsonl(c, '{"text": "Jane", "labels": [[0, 9, "PER"]]}')),
    ("NER: overlapping JSONL spans", lambda c: _ner_jsonl(
        c, '{"text": "Jane Doe", "labels": [[0, 4, "PER"], [2, 8, "PER"]]}')),
    ("NER: a label folder in BertNERDataBunch's second place", lambda c: __import__("bertlearn").BertNERDataBunch(
        c.data, c.data, c.tokenizer, train_file="train.txt")),
    ("NER: a BertNERDataBunch given to BertLearner", lambda c: __import__("bertlearn").BertLearner.from_pretrained_model(
        _ner(c, "Jane\tB-PER\nruns\tO\n"), str(c.model_dir), device="cpu")),
    ("predictor on a regression folder with 3 outputs", lambda c: _multi_output_regression(c)),
    ("predictor on a folder saved again with its labels reordered", lambda c: _saved_again_reordered(c)),
    ("validate(dl=) on another databunch's label order", lambda c: _foreign_loader(c)),
    ("predictor on a folder saved again as multi-label", lambda c: _saved_again_as(c, problem_type=
                                                                                  "multi_label_classification")),
    ("predictor on a folder saved again with a head of 3 outputs", lambda c: _saved_again_as(c, num_labels=3)),
    ("resume with wd_bn_bias switched", lambda c: _changed_resume(c, change=_wd_bn_bias)),
    ("stride without sliding windows", lambda c: c.bunch(stride=8)),
    ("truncation='tail' with sliding windows", lambda c: c.bunch(truncation="tail",
                                                                              long_text="sliding_window")),
    ("NER from_df: valid_pct=1.5", lambda c: __import__("bertlearn").BertNERDataBunch.from_df(
        pd.DataFrame({"tokens": [["Jane", "runs"]] * 4, "tags": [["B-PER", "O"]] * 4}), None, c.tokenizer,
        valid_pct=1.5)),
    ("two metrics of one name", lambda c: __import__("bertlearn").to_fastai_metrics([
        {"name": "f1", "function": __import__("bertlearn").accuracy},
        {"name": "f1", "function": __import__("bertlearn.metrics").metrics.f1}])),
    ("fit with a ParamScheduler and bertlearn's fit options", lambda c: c.learner().fit(
        1, cbs=[__import__("fastai.callback.schedule").callback.schedule.ParamScheduler(
            {"lr": __import__("fastai.callback.schedule").callback.schedule.SchedCos(1e-3, 1e-5)})],
        layer_decay=0.5)),
    ("grad_accumulation_steps on a learner without an accumulation callback", lambda c: _accumulation_unset(c)),
    ("a GPU bf16 export loaded on the CPU (warning)", lambda c: _gpu_bf16_export(c)),
    ("grad_accumulation_steps changed after the factory", lambda c: _accumulation_changed(c)),
    ("save_model with a tokenizer whose folder would read texts otherwise", lambda c: _lowercase_turned_off_on_the_object(c)),
    ("bs and batch_size_per_gpu both given", lambda c: c.bunch(bs=8, batch_size_per_gpu=16)),
    ("valid_pct beside a validation file", lambda c: c.bunch(valid_pct=0.3)),
    ("chunksize without on_disk (warning)", lambda c: __import__("bertlearn").BertDataBunch.from_csv(
        c.data, c.tokenizer, chunksize=100, maxlen=32, device="cpu")),
    ("max_grad_norm=-1", lambda c: c.learner(max_grad_norm=-1)),
    ("a fast-bert metric dict given to the masked-LM learner", lambda c: _lm_metric_dict(c)),
    ("empty texts given to predict_batch (warning)", lambda c: __import__("bertlearn").BertClassificationPredictor(
        c.learner().save_model(c.root / "m"), device="cpu").predict_batch(["good film", "  "])),
    ("NER test sentences given as raw strings", lambda c: __import__("bertlearn").BertNERDataBunch.from_df(
        pd.DataFrame({"tokens": [["Jane", "runs"]] * 4, "tags": [["B-PER", "O"]] * 4}), None, c.tokenizer,
        test=["Jane runs fast"])),
    ("ONNX folder given PyTorch options (warning)", lambda c: (
        c.learner().to_onnx(c.root / "exp"),
        __import__("bertlearn").load_predictor(c.root / "exp", device="cpu", precision="bf16"))),
]


def _typed(c: Ctx, name: str, text: str) -> None:
    (c.data / name).write_text(text)


def _list_labels(c: Ctx):
    from bertlearn import BertDataBunch
    df = c.train().assign(tags=lambda d: [[label] for label in d["label"]])
    return BertDataBunch.from_df(df, df, c.tokenizer, label_col="tags", maxlen=32, device="cpu")


def _many_scores(c: Ctx):
    # a class per row needs over 100 distinct values: 300 rows of scores, none repeated
    df = pd.concat([c.train()] * 8, ignore_index=True)[:300]
    c.write(df.assign(score=[f"{i * 0.37:.2f}" for i in range(300)]))
    _edit(c, lambda d: d.assign(score="1.0"), "val.csv")
    return c.bunch(label_col="score", label_file=None, on_disk=True)


def _ner(c: Ctx, train: str, *, labels: str | None = None, **kwargs):
    from bertlearn import BertNERDataBunch
    (c.data / "train.txt").write_text(train)
    (c.data / "val.txt").write_text("Jane\tB-PER\nruns\tO\n")
    if labels is not None:
        (c.data / "labels.txt").write_text(labels)
    return BertNERDataBunch(c.data, c.tokenizer, label_file="labels.txt" if labels is not None else None,
                            bs=4, maxlen=32, device="cpu", **kwargs)


def _ner_jsonl(c: Ctx, line: str):
    from bertlearn import BertNERDataBunch
    (c.data / "d.jsonl").write_text(line + "\n")
    return BertNERDataBunch.from_jsonl(c.data, "d.jsonl", c.tokenizer)


def _short_model(c: Ctx):
    from transformers import BertConfig, BertModel

    from bertlearn import BertLearner
    config = BertConfig(vocab_size=len(c.tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=16)
    BertModel(config).save_pretrained(c.root / "short")
    return BertLearner.from_pretrained_model(c.bunch(maxlen=64), str(c.root / "short"), None, "cpu", None)


def _reused_cut(c: Ctx):
    from bertlearn import BertLearner
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first learner's own cut is the scenario above
        learner = _short_model(c)
    return BertLearner.from_pretrained_model(learner.dls, str(c.model_dir), None, "cpu", None)


def _left_padding(c: Ctx):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(c.model_dir, padding_side="left")


def _lowercase_turned_off_on_the_object(c: Ctx):
    from transformers import AutoTokenizer

    from bertlearn import BertLearner
    tok = AutoTokenizer.from_pretrained(c.model_dir)
    tok.do_lower_case = False  # nothing to the fast tokenizer, yet written to the folder
    BertLearner.from_pretrained_model(c.bunch(tokenizer=tok), str(c.model_dir), None, "cpu", None,
                                      output_dir=c.root / "out").save_model(c.root / "m")


def _lm_metric_dict(c: Ctx):
    from bertlearn import BertLMDataBunch, BertLMLearner, accuracy
    db = BertLMDataBunch.from_raw_corpus(c.data, make_texts(200, seed=1)["text"].tolist(), c.tokenizer, maxlen=32,
                                         device="cpu")
    BertLMLearner.from_pretrained_model(db, str(c.model_dir), device="cpu",
                                        metrics=[{"name": "acc", "function": accuracy}])


def _one_segment_pairs(c: Ctx):
    from transformers import AutoModel, RobertaConfig

    from bertlearn import BertDataBunch, BertLearner
    config = RobertaConfig(vocab_size=len(c.tokenizer), pad_token_id=c.tokenizer.pad_token_id, hidden_size=32,
                           num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                           max_position_embeddings=66, type_vocab_size=1)
    AutoModel.from_config(config).save_pretrained(c.root / "roberta")
    df = c.train().assign(text_b=lambda d: d["text"].iloc[::-1].values)
    db = BertDataBunch.from_df(df, df, c.tokenizer, text_col=["text", "text_b"], maxlen=32, device="cpu",
                               token_type_ids=True)
    return BertLearner.from_pretrained_model(db, str(c.root / "roberta"), None, "cpu", None)


def _xlnet_lm(c: Ctx):
    from conftest import build_tiny_architecture

    from bertlearn import BertLMLearner
    return BertLMLearner.load_head(str(build_tiny_architecture("xlnet", c.root / "xlnet")))


def _fit_quiet(learner, epochs, lr):
    with learner.no_bar(), learner.no_logging():
        learner.fit(epochs, lr=lr)


def _corrupt_resume(c: Ctx):
    learner = c.learner()
    _fit_quiet_ckpt(learner)
    weights = learner.output_dir / "checkpoints" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    learner.fit(1, lr=1e-4, resume=True)


def _fit_quiet_ckpt(learner):
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=1e-4, checkpoint=True)


def _graph_beside_another(c: Ctx):
    # a folder as two exports into it left it before the second was refused: a.onnx beside b.onnx's settings
    import shutil
    from bertlearn import OnnxPredictor
    shutil.copy(c.learner().to_onnx(c.root / "first" / "a.onnx"), c.root / "a.onnx")
    c.learner().to_onnx(c.root / "exp" / "b.onnx")
    shutil.copy(c.root / "a.onnx", c.root / "exp" / "a.onnx")
    OnnxPredictor(c.root / "exp" / "a.onnx")


def _changed_resume(c: Ctx, *, change: Callable = lambda learner: None, model_dir: Path | None = None,
                    first_dir: Path | None = None):
    # a checkpoint of the tiny model (or first_dir's), resumed by a learner on model_dir that `change` edits
    from bertlearn import BertLearner

    def learner(folder):
        return BertLearner.from_pretrained_model(c.bunch(), str(folder or c.model_dir), None, "cpu", None,
                                                 output_dir=c.root / "out")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first fit's own (a collapsed tiny model) are not the scenario
        _fit_quiet_ckpt(learner(first_dir))
    resumed = learner(model_dir)
    change(resumed)
    with resumed.no_bar(), resumed.no_logging():
        resumed.fit(1, lr=1e-4, resume=True)


def _bf16(learner):
    from bertlearn.callbacks import BF16Autocast
    learner.add_cb(BF16Autocast("cpu"))  # what is_fp16=True adds where bf16 is native


def _label_smoothing(learner):
    from bertlearn.losses import CrossEntropyLossFlat
    learner.loss_func = CrossEntropyLossFlat(label_smoothing=0.3)


def _other_folder_resume(c: Ctx):
    # two models of the same config, other random weights, each in its folder
    import torch
    from transformers import AutoConfig, AutoModel
    for seed, name in ((1, "first"), (2, "other")):
        torch.manual_seed(seed)
        AutoModel.from_config(AutoConfig.from_pretrained(c.model_dir)).save_pretrained(c.root / name)
    _changed_resume(c, first_dir=c.root / "first", model_dir=c.root / "other")


def _multi_output_regression(c: Ctx):
    from transformers import AutoModelForSequenceClassification, AutoConfig

    from bertlearn import BertClassificationPredictor
    config = AutoConfig.from_pretrained(c.model_dir, num_labels=3, problem_type="regression",
                                        id2label={0: "valence", 1: "arousal", 2: "dominance"})
    AutoModelForSequenceClassification.from_pretrained(c.model_dir, config=config).save_pretrained(c.root / "vad")
    c.tokenizer.save_pretrained(c.root / "vad")
    return BertClassificationPredictor(c.root / "vad", device="cpu")


def _saved_again_reordered(c: Ctx):
    from transformers import AutoModelForSequenceClassification

    from bertlearn import BertClassificationPredictor
    folder = c.learner().save_model(c.root / "again")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    model.config.id2label, model.config.label2id = {0: "positive", 1: "negative"}, {"positive": 0, "negative": 1}
    model.save_pretrained(folder)
    return BertClassificationPredictor(folder, device="cpu")


def _saved_again_as(c: Ctx, **config):
    from transformers import AutoModelForSequenceClassification

    from bertlearn import BertClassificationPredictor
    folder = c.learner().save_model(c.root / "again")
    model = AutoModelForSequenceClassification.from_pretrained(folder, ignore_mismatched_sizes=True, **config)
    model.save_pretrained(folder)
    return BertClassificationPredictor(folder, device="cpu")


def _wd_bn_bias(learner):
    learner.wd_bn_bias = True


def _accumulation_unset(c: Ctx):
    learner = c.learner()
    learner.grad_accumulation_steps = 4
    return learner.fit(1, 1e-4)


def _accumulation_changed(c: Ctx):
    learner = c.learner(grad_accumulation_steps=2)
    learner.grad_accumulation_steps = 1
    return learner.fit(1, 1e-4)


def _gpu_bf16_export(c: Ctx):
    from bertlearn import load_learner
    from bertlearn.callbacks import BF16Autocast
    learner = c.learner()
    learner.add_cb(BF16Autocast("cuda"))
    return load_learner(learner.export("bf16.pkl"))


def _foreign_loader(c: Ctx):
    (c.data / "labels_reordered.csv").write_text("positive\nnegative\n")
    return c.learner().validate(dl=c.bunch(label_file="labels_reordered.csv").valid, quiet=True)


def run(scenario: Callable[[Ctx], object], ctx: Ctx) -> tuple[str, str]:
    """Run one scenario; return (outcome, message) where outcome is the exception or warning class name."""
    from bertlearn import BertLearnError
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scenario(ctx)
        except BertLearnError as e:
            return type(e).__name__, str(e)
    ours = [w for w in caught if issubclass(w.category, UserWarning)
            and not str(w.message).startswith(("load_learner`", "`torch"))]
    if ours:
        return "UserWarning", str(ours[0].message)
    return "nothing", ""


def neutral(message: str, ctx: Ctx) -> str:
    """Replace the scratch folder's path so the document does not depend on where it ran."""
    message = message.replace(str(ctx.root), "<tmp>")
    # what a CPU trains in depends on its bf16 hardware
    message = re.sub(r"it now trains and predicts in (bf16 autocast|float32)$",
                     "it now trains and predicts in bf16 autocast (float32 on a CPU without bf16 hardware)", message)
    return re.sub(r"\(OSError: .*?\)|Original error: .*$", "(...)", message)


def build_ctx(root: Path) -> Ctx:
    from transformers import AutoTokenizer
    import conftest

    class _Factory:
        def mktemp(self, name):
            p = root / name
            p.mkdir(parents=True, exist_ok=True)
            return p

    model_dir = conftest.tiny_model_dir.__wrapped__(_Factory())
    return Ctx(root / "case", model_dir, AutoTokenizer.from_pretrained(model_dir))


def outcomes() -> list[tuple[str, str, str]]:
    """(what, outcome, neutral message) for every scenario, each in a fresh scratch folder."""
    out = []
    for what, scenario in SCENARIOS:
        with tempfile.TemporaryDirectory() as d:
            ctx = build_ctx(Path(d))
            outcome, message = run(scenario, ctx)
            out.append((what, outcome, neutral(message, ctx)))
    return out


def table(results: list[tuple[str, str, str]] | None = None) -> str:
    rows = ["| bad input | outcome | message |", "|---|---|---|"]
    for what, outcome, message in results or outcomes():
        rows.append(f"| {what} | {outcome} | {message.replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    doc = ROOT / "docs" / "reliability.md"
    text = doc.read_text()
    start, end = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"
    new = text[: text.index(start) + len(start)] + "\n" + table() + "\n" + text[text.index(end):]
    doc.write_text(new)
    print(f"wrote {doc}")
