"""ONNX export and the ONNX Runtime predictor: same outputs as PyTorch, for every task kind."""

from __future__ import annotations

import re
import warnings

import pandas as pd

import pytest
from conftest import make_texts

from bertlearn import BertDataBunch, BertLearner, BertLearnError, ModelError, OnnxPredictor

pytest.importorskip("onnxruntime")


def test_parity_with_pytorch_on_cpu(trained_learner, tmp_path):
    texts = make_texts(40, seed=11)["text"].tolist() + ["good", "a " * 60 + "bad"]  # batch and length vary
    onnx_file = trained_learner.to_onnx(tmp_path / "onnx")
    assert onnx_file.name == "model.onnx" and onnx_file.is_file()
    pred = OnnxPredictor(tmp_path / "onnx", bs=16)
    expected = trained_learner.predict_logits(texts)
    got = pred.predict_logits(texts)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4
    assert pred.predict_batch(texts[:3])[0][0][0] == trained_learner.predict_batch(texts[:3])[0][0][0]
    assert pred.predict_labels(texts) == trained_learner.predict_labels(texts)
    assert pred.labels == ["negative", "positive"]


def test_dynamic_axes_in_the_graph(trained_learner, tmp_path):
    import onnx
    model = onnx.load(str(trained_learner.to_onnx(tmp_path / "m.onnx")))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [d.dim_param != "" for d in dims] == [True, True], inp.name  # symbolic batch and sequence


@pytest.mark.parametrize("task", ["multi_label", "pairs", "regression"])
def test_other_tasks_survive_export(task, tiny_model_dir, tmp_path):
    df, valid = make_texts(64, seed=1), make_texts(16, seed=2)
    kw = {}
    if task == "multi_label":
        for d in (df, valid):
            d["pos"] = (d["label"] == "positive").astype(int)
            d["long"] = (d["text"].str.split().str.len() > 12).astype(int)
        kw = dict(label_col=["pos", "long"], multi_label=True)
    elif task == "pairs":
        for d in (df, valid):
            d["b"] = d["text"].str.split().str[:2].str.join(" ")
        kw = dict(text_col=["text", "b"])
    else:
        for d in (df, valid):
            d["score"] = d["text"].str.split().str.len().astype(float)
        kw = dict(label_col="score", regression=True)
    db = BertDataBunch.from_df(df, valid, str(tiny_model_dir), bs=16, maxlen=48, device="cpu", **kw)
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=1e-3)
    learner.thresholds = [0.4, 0.6] if task == "multi_label" else learner.thresholds
    texts = list(zip(valid["text"], valid["b"])) if task == "pairs" else valid["text"].tolist()
    pred = OnnxPredictor(learner.to_onnx(tmp_path / "onnx"))
    assert (pred.predict_logits(texts) - learner.predict_logits(texts)).abs().max().item() < 1e-4
    if task == "regression":
        assert pred.predict_labels(texts) == pytest.approx(learner.predict_labels(texts), abs=1e-4)
    else:
        assert pred.predict_labels(texts) == learner.predict_labels(texts)
    if task == "multi_label":
        assert pred.thresholds == [0.4, 0.6]


def test_missing_onnx_file_is_explained(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"holds no model.onnx \(it holds \['config.json'\]\); pass the folder "
                                         r"written by learner.to_onnx\(path\)"):
        OnnxPredictor(tmp_path)


def test_interrupted_export_keeps_the_previous_folder(tiny_learner, tmp_path, monkeypatch):
    import torch
    folder = tmp_path / "onnx"
    tiny_learner.to_onnx(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with torch.no_grad():  # the next export differs from the first in its weights
        next(tiny_learner.model.parameters()).add_(1.0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(type(tiny_learner.dls.encoder.tokenizer), "save_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_learner.to_onnx(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the old export, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_export_into_a_save_model_folder_keeps_its_files(trained_learner, tmp_path):
    folder = trained_learner.save_model(tmp_path / "model")
    weights = (folder / "model.safetensors").read_bytes()
    trained_learner.to_onnx(folder / "model.onnx")
    assert (folder / "model.safetensors").read_bytes() == weights
    texts = ["good fun", "the acting was poor"]
    assert OnnxPredictor(folder).predict_labels(texts) == trained_learner.predict_labels(texts)


def test_export_into_a_users_folder_leaves_the_folder_itself_alone(trained_learner, tmp_path, monkeypatch):
    import os
    (tmp_path / "notes.txt").write_text("mine")
    before = os.stat(tmp_path).st_ino
    monkeypatch.chdir(tmp_path)
    onnx_file = trained_learner.to_onnx("model.onnx")  # a bare file name: the working directory gets the export
    assert os.stat(tmp_path).st_ino == before and (tmp_path / "notes.txt").read_text() == "mine"
    assert onnx_file == tmp_path / "model.onnx" or onnx_file.resolve() == (tmp_path / "model.onnx").resolve()
    texts = ["good fun", "the acting was poor"]
    assert OnnxPredictor(tmp_path).predict_labels(texts) == trained_learner.predict_labels(texts)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_beside_weights_of_another_state_is_refused_and_a_saved_precision_kept(tiny_learner, tmp_path):
    import json

    from bertlearn.errors import ModelError
    from conftest import quiet_fit
    folder = tiny_learner.save_model(tmp_path / "model")
    saved = json.loads((folder / "bertlearn.json").read_text())
    tiny_learner.to_onnx(folder)  # the same weights: the folder holds both, its PyTorch settings kept
    after = json.loads((folder / "bertlearn.json").read_text())
    assert after.get("precision") == saved.get("precision") and "precision" in saved
    weights = (folder / "model.safetensors").read_bytes()
    quiet_fit(tiny_learner, 1, lr=1e-3)  # trained since the save: an export there would sit beside stale weights
    with pytest.raises(ModelError, match=r"^to_onnx\('.*model'\): the folder holds model\.safetensors from an earlier "
                                         r"save_model whose weights differ from this model's \(\d+ tensors, e\.g\. "
                                         r".*\), and load_predictor, bertlearn predict and serve read those first\. "
                                         r"Call save_model on the folder first, or export elsewhere \(to_onnx\(\) "
                                         r"writes output_dir/onnx\)$"):
        tiny_learner.to_onnx(folder)
    assert (folder / "model.safetensors").read_bytes() == weights
    tiny_learner.save_model(folder)
    tiny_learner.to_onnx(folder)  # after saving again, the export is the saved model's
    texts = ["good fun", "the acting was poor"]
    assert OnnxPredictor(folder).predict_labels(texts) == tiny_learner.predict_labels(texts)


def test_an_opset_the_exporter_cannot_write_is_refused_not_replaced(tiny_learner, tmp_path):
    import onnx
    import torch

    from bertlearn.errors import ModelError
    with pytest.raises(ModelError, match=rf"^opset=14: torch {re.escape(torch.__version__)}'s ONNX exporter could "
                                         r"not write this model in opset 14 and kept opset 18; pass opset=18 or later"):
        tiny_learner.to_onnx(tmp_path / "old", opset=14)
    assert not (tmp_path / "old").exists()
    path = tiny_learner.to_onnx(tmp_path / "new", opset=20)
    assert {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""] == 20


def test_serve_onnx_refuses_an_export_of_other_weights_than_the_save_beside_it(tiny_learner, tmp_path, monkeypatch,
                                                                               capsys):
    # `bertlearn serve P --onnx` serves P/onnx as P's model; before the digest, an export made after more training
    # (or a save made after the export) was served with nothing to tell
    import hashlib
    import json

    from safetensors.torch import load_file

    import bertlearn.serve
    from bertlearn.cli import main
    from conftest import quiet_fit
    served = []
    monkeypatch.setattr(bertlearn.serve, "serve", lambda path, **kw: served.append(path))
    folder = tiny_learner.save_model(tmp_path / "model")
    tiny_learner.to_onnx(folder / "onnx")
    # the digest by hand: SHA-256 over the saved tensors as float32, sorted by name, each after its name and shape
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(folder / "model.safetensors")).items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.float().numpy().tobytes())
    for f in (folder, folder / "onnx"):
        assert json.loads((f / "bertlearn.json").read_text())["weights_sha256"] == digest.hexdigest()
    assert main(["serve", str(folder), "--onnx"]) == 0 and served == [folder / "onnx"]

    quiet_fit(tiny_learner, 1, lr=1e-3)
    tiny_learner.to_onnx(folder / "onnx")  # exported after more training, beside the older save
    assert main(["serve", str(folder), "--onnx"]) != 0 and len(served) == 1
    err = capsys.readouterr().err
    assert (f"'{folder / 'onnx'}' holds other weights than '{folder}' (weights_sha256 " in err
            and "the export was made after the model trained further, or comes from another run. Export the saved "
                "model again (learner.to_onnx("
                f"'{folder / 'onnx'}') after save_model('{folder}'), or bertlearn train --onnx), or serve '{folder}' "
                "without --onnx" in err)
    tiny_learner.save_model(folder)  # saving again drops the old onnx/ (the folder is replaced whole)
    tiny_learner.to_onnx(folder / "onnx")
    assert main(["serve", str(folder), "--onnx"]) == 0 and len(served) == 2


def test_an_export_under_its_own_file_name_opens_as_an_onnx_folder(trained_learner, tmp_path):
    # to_onnx("exports/sentiment.onnx") records the name, but load_predictor and bertlearn predict looked only for
    # model.onnx and asked for a save_model folder
    from bertlearn import load_predictor
    from bertlearn.cli import main
    trained_learner.to_onnx(tmp_path / "exports" / "sentiment.onnx")
    texts = ["good fun", "the acting was poor"]
    predictor = load_predictor(tmp_path / "exports")
    assert isinstance(predictor, OnnxPredictor) and predictor.predict_labels(texts) == \
        trained_learner.predict_labels(texts)
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "exports"), "--input", str(tmp_path / "new.csv"), "--output",
                 str(tmp_path / "pred.csv")]) == 0
    assert pd.read_csv(tmp_path / "pred.csv")["prediction"].tolist() == trained_learner.predict_labels(texts)


def test_load_predictor_takes_device_for_an_onnx_folder_and_says_what_it_cannot_take(trained_learner, tmp_path):
    # before: device, precision and cuda_graphs were dropped without a word (device='cpu' ran on CUDA wherever
    # onnxruntime-gpu saw one; precision='bf16' ran float32)
    import warnings

    import onnxruntime as ort

    from bertlearn import load_predictor
    trained_learner.to_onnx(tmp_path / "exp")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_predictor(tmp_path / "exp", device="cpu").session.get_providers() == ["CPUExecutionProvider"]
    with pytest.warns(UserWarning, match=r"^precision='bf16', cuda_graphs=True: PyTorch predictor options, which an "
                                         r"ONNX model does not take; it runs on ONNX Runtime as it was exported \(open "
                                         r"the save_model folder to use them\)$"):
        load_predictor(tmp_path / "exp", device="cpu", precision="bf16", cuda_graphs=True)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.warns(UserWarning, match=r"^device='cuda:1': this onnxruntime has no CUDA provider \(pip install "
                                             r"onnxruntime-gpu\), so the ONNX model runs on the CPU$"):
            predictor = load_predictor(tmp_path / "exp", device="cuda:1")
        assert predictor.session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match=r"^device='mps': an ONNX model runs on 'cpu' or 'cuda'"):
        load_predictor(tmp_path / "exp", device="mps")
    with pytest.raises(ModelError, match=r"^device='gpu' is not a device; an ONNX model runs on 'cpu' or 'cuda'"):
        load_predictor(tmp_path / "exp", device="gpu")
    # a precision no folder takes was refused for a save_model folder and taken without a word for an ONNX one
    with pytest.raises(BertLearnError, match=r"^precision='fp16' is not one of \['auto', 'fp32', 'bf16'\]"):
        load_predictor(tmp_path / "exp", device="cpu", precision="fp16")


def test_onnx_device_picks_the_provider(monkeypatch):
    import onnxruntime as ort

    from bertlearn.predict import _onnx_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert _onnx_providers("cuda:1", "auto", False, "auto") == [("CUDAExecutionProvider", {"device_id": 1}),
                                                                "CPUExecutionProvider"]
    assert _onnx_providers("cuda", "fp32", False, False) == [("CUDAExecutionProvider", {"device_id": 0}),
                                                             "CPUExecutionProvider"]
    assert _onnx_providers("cpu", "auto", False, "auto") == ["CPUExecutionProvider"]
    assert _onnx_providers(None, "auto", False, "auto") is None  # ONNX Runtime's own choice


def test_serve_onnx_refuses_an_export_with_other_prediction_settings_than_the_save(tiny_model_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    # before: only the weights were compared, so save_model, then tune_thresholds (same weights), then to_onnx served
    # other multi-label decisions with --onnx than without it
    import bertlearn.serve
    from bertlearn import load_predictor
    from bertlearn.cli import main

    def rows(n, seed):
        df = make_texts(n, seed)
        return pd.DataFrame({"text": df.text, "pos": (df.label == "positive").astype(int),
                             "neg": (df.label == "negative").astype(int)})

    db = BertDataBunch.from_df(rows(32, 1), rows(16, 2), str(tiny_model_dir), label_col=["pos", "neg"],
                               multi_label=True, bs=16, maxlen=32, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path,
                                                seed=0)
    served = []
    monkeypatch.setattr(bertlearn.serve, "serve", lambda path, **kw: served.append(path))
    folder = learner.save_model(tmp_path / "model")
    learner.thresholds = [0.2, 0.8]  # what tune_thresholds() sets
    learner.to_onnx(folder / "onnx")
    assert load_predictor(folder).thresholds == 0.5 and load_predictor(folder / "onnx").thresholds == [0.2, 0.8]
    assert main(["serve", str(folder), "--onnx"]) == 1 and served == []
    assert capsys.readouterr().err == (
        f"bertlearn serve: error: '{folder / 'onnx'}' predicts with other settings than '{folder}' (in their "
        "bertlearn.json, the save's against the export's: thresholds 0.5 against [0.2, 0.8]): the export was made "
        "after those settings changed (tune_thresholds() after save_model, say), or comes from another run. Export "
        f"again after saving (learner.save_model('{folder}') then learner.to_onnx('{folder / 'onnx'}'), or bertlearn "
        f"train --onnx), or serve '{folder}' without --onnx\n")
    # every differing setting is named with both values
    db.encoder.maxlen = 24
    learner.to_onnx(folder / "onnx")
    assert main(["serve", str(folder), "--onnx"]) == 1
    assert "(in their bertlearn.json, the save's against the export's: thresholds 0.5 against [0.2, 0.8]; maxlen 32 " \
           "against 24): " in capsys.readouterr().err
    db.encoder.maxlen = 32
    learner.save_model(folder)  # the fix it names: save, then export
    learner.to_onnx(folder / "onnx")
    assert main(["serve", str(folder), "--onnx"]) == 0 and served == [folder / "onnx"]


def test_one_threshold_and_that_threshold_per_label_are_the_same_setting(tmp_path):
    # the check compared the JSON values: 0.5 against [0.5, 0.5] was refused though both decide alike
    import json

    from bertlearn import ModelError
    from bertlearn.saved import check_same_settings
    saved, export = tmp_path / "m", tmp_path / "m" / "onnx"
    export.mkdir(parents=True)
    (saved / "bertlearn.json").write_text(json.dumps({"thresholds": 0.5, "maxlen": 32}))
    (export / "bertlearn.json").write_text(json.dumps({"thresholds": [0.5, 0.5], "maxlen": 32}))
    check_same_settings(saved, export)
    (export / "bertlearn.json").write_text(json.dumps({"thresholds": [0.5, 0.4], "maxlen": 32}))
    with pytest.raises(ModelError, match=r"\(in their bertlearn\.json, the save's against the export's: thresholds "
                                         r"0\.5 against \[0\.5, 0\.4\]\)"):
        check_same_settings(saved, export)


def test_a_save_from_before_word_split_and_a_split_words_export_differ(tmp_path):
    # an NER save written before "word_split" cut raw text the tokenizer's way: an export that cuts it with
    # split_words (a JSONL-trained model's) reads other words, so the pair is refused, not skipped as unknown
    import json

    from bertlearn import ModelError
    from bertlearn.saved import check_same_settings
    saved, export = tmp_path / "m", tmp_path / "m" / "onnx"
    export.mkdir(parents=True)
    (saved / "bertlearn.json").write_text(json.dumps({"labels": ["O", "B-PER"], "maxlen": 32}))
    (export / "bertlearn.json").write_text(json.dumps({"labels": ["O", "B-PER"], "maxlen": 32,
                                                       "word_split": "tokenizer"}))
    check_same_settings(saved, export)
    (export / "bertlearn.json").write_text(json.dumps({"labels": ["O", "B-PER"], "maxlen": 32,
                                                       "word_split": "split_words"}))
    with pytest.raises(ModelError, match=r"word_split 'tokenizer' against 'split_words'"):
        check_same_settings(saved, export)


def test_a_model_the_exporter_cannot_convert_is_a_model_error(tmp_path):
    # XLNet's mask arithmetic fails torch's exporter: its raw ConversionError named neither the model nor a way on
    import torch
    from conftest import build_tiny_architecture
    folder = build_tiny_architecture("xlnet", tmp_path / "xlnet")
    df = make_texts(16, seed=1)
    db = BertDataBunch.from_df(df, df[:8], str(folder), bs=8, maxlen=32, device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(folder), None, "cpu", None, seed=0, output_dir=tmp_path / "o")
    with pytest.raises(ModelError) as err:
        learner.to_onnx(tmp_path / "onnx")
    assert str(err.value).startswith(f"torch {torch.__version__}'s ONNX exporter could not convert "
                                     "XLNetForSequenceClassification (ConversionError: ")
    assert "\x1b" not in str(err.value) and "Next steps" not in str(err.value)  # plain text, its first sentence
    assert str(err.value).endswith("); serve this model without ONNX: save_model(path), then "
                                   "bertlearn.load_predictor(path)")
    assert not (tmp_path / "onnx").exists()


# --- one export per folder: a folder holds one bertlearn.json, config.json and tokenizer, those of one graph ---

@pytest.mark.filterwarnings("ignore:predicting with a classification head that has not been trained yet")
def test_a_second_export_beside_another_graph_is_refused(trained_learner, tiny_learner, tmp_path):
    # to_onnx("exp/a.onnx") then another model's to_onnx("exp/b.onnx") left a.onnx beside b's labels and settings:
    # OnnxPredictor("exp/a.onnx") then named every output after the other model's labels, with nothing to tell
    import json
    exp = tmp_path / "exp"
    trained_learner.to_onnx(exp / "a.onnx")
    before = {p.name: p.read_bytes() for p in exp.iterdir()}
    with pytest.raises(ModelError, match=(
            rf"^to_onnx\('{re.escape(str(exp / 'b.onnx'))}'\): '{re.escape(str(exp))}' holds a\.onnx, another "
            r"export, and the bertlearn\.json, config\.json and tokenizer there are its own \(bertlearn\.json's "
            r"\"onnx_file\" is 'a\.onnx'\); writing b\.onnx there would replace them with this model's and leave "
            r"a\.onnx to be read with another model's labels and settings\. Export into a folder of its own "
            rf"\(to_onnx\('{re.escape(str(exp / 'b' / 'b.onnx'))}'\)\), or delete a\.onnx first to replace that "
            r"export$")):
        tiny_learner.to_onnx(exp / "b.onnx")
    with pytest.raises(ModelError, match=r"holds a\.onnx, another export, .* writing model\.onnx there would"):
        tiny_learner.to_onnx(exp)  # the folder itself: model.onnx beside a.onnx
    assert {p.name: p.read_bytes() for p in exp.iterdir()} == before  # nothing written
    texts = ["good fun", "the acting was poor", "a " * 40 + "bad"]
    assert OnnxPredictor(exp / "a.onnx").predict_labels(texts) == trained_learner.predict_labels(texts)
    # the same file name again replaces the export, as it always did
    assert trained_learner.to_onnx(exp / "a.onnx") == exp / "a.onnx"
    assert sorted(p.name for p in exp.iterdir()) == sorted(before)
    assert OnnxPredictor(exp / "a.onnx").predict_labels(texts) == trained_learner.predict_labels(texts)
    # the fixes it names: a folder of its own, or the other graph deleted first
    own = tiny_learner.to_onnx(exp / "b" / "b.onnx")
    assert (OnnxPredictor(own).predict_logits(texts) - tiny_learner.predict_logits(texts)).abs().max() < 1e-4
    (exp / "a.onnx").unlink()
    tiny_learner.to_onnx(exp / "b.onnx")
    assert json.loads((exp / "bertlearn.json").read_text())["onnx_file"] == "b.onnx"
    assert "a.onnx" not in {p.name for p in exp.iterdir()}
    assert (OnnxPredictor(exp / "b.onnx").predict_logits(texts) - tiny_learner.predict_logits(texts)).abs().max() \
        < 1e-4


def _two_graphs_one_folder(first, second, tmp_path):
    """The folder the two exports above left before the refusal: a.onnx beside b.onnx and b's settings."""
    import shutil
    exp = tmp_path / "exp"
    shutil.copy(first.to_onnx(tmp_path / "first" / "a.onnx"), tmp_path / "a.onnx")
    second.to_onnx(exp / "b.onnx")
    shutil.move(tmp_path / "a.onnx", exp / "a.onnx")
    return exp


def _other_graph_message(exp, there=""):
    return (rf"^path '{re.escape(str(exp / 'a.onnx'))}': the bertlearn\.json beside it records 'b\.onnx' as its "
            rf"graph \(\"onnx_file\"\){there}, so a\.onnx runs with b\.onnx's labels, settings and tokenizer: right "
            r"for a copy of b\.onnx \(quantized or optimized\), wrong for another model's graph, which belongs in a "
            rf"folder of its own \(to_onnx\('{re.escape(str(exp / 'a' / 'a.onnx'))}'\)\)$")


@pytest.mark.filterwarnings("ignore:predicting with a classification head that has not been trained yet")
def test_a_graph_its_folder_does_not_record_is_said_at_load(trained_learner, tiny_learner, tmp_path):
    # a.onnx beside b.onnx's settings was read with them without a word; a quantized copy of the export is read
    # with them rightly, so loading it is said, not refused
    import json

    from bertlearn import load_predictor
    exp = _two_graphs_one_folder(trained_learner, tiny_learner, tmp_path)
    texts = ["good fun", "the acting was poor"]
    for load in (OnnxPredictor, load_predictor):
        with pytest.warns(UserWarning, match=_other_graph_message(exp)):
            got = load(exp / "a.onnx").predict_logits(texts)
        assert (got - trained_learner.predict_logits(texts)).abs().max() < 1e-4  # the graph named is the one run
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for path in (exp, exp / "b.onnx"):  # the export the settings belong to opens without a word
            got = load_predictor(path).predict_logits(texts)
            assert (got - tiny_learner.predict_logits(texts)).abs().max() < 1e-4
    assert not [w for w in said if "onnx_file" in str(w.message)]
    # b.onnx deleted: a.onnx may be it renamed
    (exp / "b.onnx").unlink()
    with pytest.warns(UserWarning, match=_other_graph_message(exp, r" \(not in the folder: renamed to a\.onnx\?\)")):
        OnnxPredictor(exp / "a.onnx")
    # a folder written before bertlearn.json recorded "onnx_file" is read as it always was
    settings = json.loads((exp / "bertlearn.json").read_text())
    del settings["onnx_file"]
    (exp / "bertlearn.json").write_text(json.dumps(settings))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        got = OnnxPredictor(exp / "a.onnx").predict_logits(texts)
    assert not [w for w in said if "onnx_file" in str(w.message)]
    assert (got - trained_learner.predict_logits(texts)).abs().max() < 1e-4


def test_a_quantized_copy_beside_its_export_is_read_with_its_settings(trained_learner, tmp_path):
    # ONNX Runtime's own next step on an export: its quantized copy in the same folder, read with its settings
    from onnxruntime.quantization import QuantType, quantize_dynamic
    graph = trained_learner.to_onnx(tmp_path / "onnx")
    quantize_dynamic(str(graph), str(tmp_path / "onnx" / "model.quant.onnx"), weight_type=QuantType.QInt8)
    with pytest.warns(UserWarning, match=r"runs with model\.onnx's labels, settings and tokenizer: right for a copy"):
        quant = OnnxPredictor(tmp_path / "onnx" / "model.quant.onnx")
    assert quant.labels == OnnxPredictor(graph).labels == trained_learner.dls.labels
    texts = ["good fun", "the acting was poor", "a lovely film", "dull and slow"]
    got = quant.predict_labels(texts)
    assert len(got) == len(texts) and set(got) <= set(trained_learner.dls.labels)


def _ner_learner(tiny_model_dir, folder, seed):
    from bertlearn import BertNERDataBunch, BertNERLearner
    from conftest import quiet_fit
    folder.mkdir(parents=True)
    for name in ("train.txt", "val.txt"):
        (folder / name).write_text("Ann\tB-PER\nLee\tI-PER\nlikes\tO\ngood\tB-POS\nfilms\tO\n\n"
                                   "the\tO\nplot\tO\nwas\tO\ngreat\tB-POS\n\n" * 4)
    db = BertNERDataBunch(folder, str(tiny_model_dir), train_file="train.txt", val_file="val.txt", label_file=None,
                          bs=8, maxlen=32, device="cpu", seed=0)
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), folder / "out", "cpu", None, seed=seed)
    quiet_fit(learner, 1, lr=1e-4)  # a trained head: predictions come without the untrained-head warning
    return learner


def _word_scores(predictor, texts):
    return [w["score"] for ws in predictor.predict_batch(texts, group=False, exclude_entities=None) for w in ws]


def test_an_ner_graph_named_is_the_graph_run(tiny_model_dir, tmp_path):
    # OnnxNERPredictor("exp/a.onnx") ran the graph bertlearn.json names (b.onnx), not the file passed
    import json

    from bertlearn import load_predictor
    from bertlearn.tasks.token_classification import OnnxNERPredictor
    first, second = _ner_learner(tiny_model_dir, tmp_path / "d1", 1), _ner_learner(tiny_model_dir, tmp_path / "d2", 2)
    texts = ["Ann Lee likes good films", "the plot was great"]
    assert _word_scores(first, texts) != pytest.approx(_word_scores(second, texts), abs=1e-3)  # two models
    exp = _two_graphs_one_folder(first, second, tmp_path)
    for load in (OnnxNERPredictor, load_predictor):
        with pytest.warns(UserWarning, match=_other_graph_message(exp)):
            named = load(exp / "a.onnx")
        # the graph named runs (it ran b.onnx, the graph bertlearn.json names)
        assert _word_scores(named, texts) == pytest.approx(_word_scores(first, texts), abs=1e-4)
    for path in (exp, exp / "b.onnx"):
        assert _word_scores(OnnxNERPredictor(path), texts) == pytest.approx(_word_scores(second, texts), abs=1e-4)
    # a folder written before "onnx_file" was recorded: the file named is the one run
    settings = json.loads((exp / "bertlearn.json").read_text())
    del settings["onnx_file"]
    (exp / "bertlearn.json").write_text(json.dumps(settings))
    assert _word_scores(OnnxNERPredictor(exp / "a.onnx"), texts) == pytest.approx(_word_scores(first, texts),
                                                                                   abs=1e-4)
    assert _word_scores(OnnxNERPredictor(exp / "b.onnx"), texts) == pytest.approx(_word_scores(second, texts),
                                                                                   abs=1e-4)
    # and such a folder is no longer written: the second export is refused
    first.to_onnx(tmp_path / "new" / "a.onnx")
    with pytest.raises(ModelError, match=r"holds a\.onnx, another export, .* writing b\.onnx there would"):
        second.to_onnx(tmp_path / "new" / "b.onnx")
