"""The `bertlearn` command: train, predict (streamed in chunks), eval; exit codes and messages for the shell."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_texts

from bertlearn import BertClassificationPredictor, OnnxPredictor
from bertlearn.cli import main


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, tiny_model_dir):
    data = tmp_path_factory.mktemp("cli-data")
    make_texts(480, seed=5).to_csv(data / "train.csv", index=False)
    make_texts(64, seed=6).to_csv(data / "val.csv", index=False)
    out = data / "model"
    code = main(["train", "--data", str(data), "--model", str(tiny_model_dir), "--epochs", "5", "--lr", "1e-3",
                 "--bs", "16", "--maxlen", "64", "--out", str(out), "--seed", "0", "--device", "cpu", "--onnx"])
    assert code == 0
    return data, out


def test_train_saves_a_model_and_onnx(trained_dir):
    data, out = trained_dir
    assert (out / "model.safetensors").is_file() and (out / "onnx" / "model.onnx").is_file()
    settings = json.loads((out / "bertlearn.json").read_text())
    assert settings["text_col"] == ["text"] and settings["label_col"] == ["label"]
    assert BertClassificationPredictor(out).labels == ["negative", "positive"]


@pytest.mark.parametrize("which", ["torch", "onnx"])
def test_predict_writes_every_row_in_chunks(trained_dir, tmp_path, which, capsys):
    data, out = trained_dir
    new = make_texts(25, seed=9)[["text"]]
    new.insert(0, "id", range(25))
    new.to_csv(tmp_path / "new.csv", index=False)
    model = out if which == "torch" else out / "onnx"
    code = main(["predict", "--model", str(model), "--input", str(tmp_path / "new.csv"), "--output",
                 str(tmp_path / "pred.csv"), "--chunk-size", "10"])
    assert code == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["id", "text", "prediction", "prob_negative", "prob_positive"]
    assert pred["id"].tolist() == list(range(25))
    expected = BertClassificationPredictor(out).predict_labels(new["text"].tolist())
    assert pred["prediction"].tolist() == expected
    assert (pred["prob_negative"] + pred["prob_positive"]).round(4).eq(1).all()
    # the probabilities as the predictor computes them (they were rounded to 6 places: 0.0 / 1.0 when confident)
    logits = (BertClassificationPredictor(out) if which == "torch" else OnnxPredictor(model)).predict_logits(
        new["text"].tolist())
    assert np.array_equal(pred["prob_positive"].to_numpy(np.float32), logits.softmax(-1)[:, 1].numpy())
    assert "wrote 25 predictions" in capsys.readouterr().err
    assert not list(tmp_path.glob(".pred.csv.*"))  # no temporary left beside the output


def test_predict_reads_a_chunk_of_numbers_as_texts(trained_dir, tmp_path):
    # a chunk whose texts are all numbers was refused as "the wrong column", so the result hung on --chunk-size
    data, out = trained_dir
    pd.DataFrame({"text": ["good movie", "42", "bad film"]}).to_csv(tmp_path / "new.csv", index=False)
    for size in ("1", "100"):
        assert main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), "--output",
                     str(tmp_path / f"pred{size}.csv"), "--chunk-size", size]) == 0
    one, hundred = pd.read_csv(tmp_path / "pred1.csv"), pd.read_csv(tmp_path / "pred100.csv")
    probs = one.select_dtypes("number").columns
    assert list(one.columns) == list(hundred.columns) and len(probs) == 2
    assert one.drop(columns=probs).equals(hundred.drop(columns=probs))
    # probabilities are written as computed (not rounded), and a text padded alone or beside others differs in
    # float32's last bits
    np.testing.assert_allclose(one[probs].to_numpy(), hundred[probs].to_numpy(), rtol=0, atol=1e-6)
    assert pd.read_csv(tmp_path / "pred1.csv")["text"].astype(str).tolist() == ["good movie", "42", "bad film"]


def test_predict_names_empty_texts_with_a_fix_the_command_has(trained_dir, tmp_path, capsys):
    # the message said "pass dropna=True", an option bertlearn predict does not have
    data, out = trained_dir
    pd.DataFrame({"text": ["good movie", "", "bad film"]}).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), "--output",
                 str(tmp_path / "pred.csv")]) != 0
    err = capsys.readouterr().err
    assert "text_col 'text' in new.csv (rows 1-3) has 1 empty or missing texts (CSV lines [3]); fill or remove " \
           "those rows (the predictions file has a row for every input row)" in err and "dropna" not in err
    pd.DataFrame({"text": ["good movie", "", "bad film"], "label": ["positive", "negative", "negative"]}).to_csv(
        tmp_path / "gold.csv", index=False)
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "gold.csv")]) != 0
    assert capsys.readouterr().err.strip().endswith("has 1 empty or missing texts (CSV lines [3]); fill or remove "
                                                    "those rows")


def test_predict_precision_option(trained_dir, tmp_path):
    data, out = trained_dir
    make_texts(25, seed=9)[["text"]].to_csv(tmp_path / "new.csv", index=False)
    probs = {}
    for precision in ("fp32", "bf16"):
        code = main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), "--output",
                     str(tmp_path / f"{precision}.csv"), "--precision", precision])
        assert code == 0
        probs[precision] = pd.read_csv(tmp_path / f"{precision}.csv")["prob_positive"]
    assert not probs["fp32"].equals(probs["bf16"])  # bf16 really ran
    assert (probs["fp32"] - probs["bf16"]).abs().max() < 0.03
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses the choice with its usage line
        main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), "--output",
              str(tmp_path / "x.csv"), "--precision", "fp8"])
    assert exit_info.value.code == 2


def test_compile_option_reaches_the_model(trained_dir, tiny_model_dir, tmp_path, monkeypatch):
    data, out = trained_dir
    calls = []  # compiling for real is tested in test_model.py; here only the wiring
    monkeypatch.setattr("bertlearn.predict.compile_model", lambda model, compile: calls.append(("predict", compile)))
    monkeypatch.setattr("bertlearn.learner.compile_model", lambda model, compile: calls.append(("train", compile)))
    make_texts(25, seed=9)[["text"]].to_csv(tmp_path / "new.csv", index=False)
    args = ["--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "pred.csv"), "--compile"]
    assert main(["predict", "--model", str(out), *args]) == 0
    with pytest.warns(UserWarning, match="--compile applies to PyTorch models; this ONNX model runs on ONNX Runtime"):
        assert main(["predict", "--model", str(out / "onnx"), *args]) == 0
    assert main(["train", "--data", str(data), "--model", str(tiny_model_dir), "--epochs", "1", "--bs", "16",
                 "--maxlen", "64", "--out", str(tmp_path / "m"), "--device", "cpu", "--compile"]) == 0
    assert calls == [("predict", True), ("train", True)]


def test_cuda_graphs_option_reaches_learner_and_predictor(trained_dir, tiny_model_dir, tmp_path, capsys):
    data, out = trained_dir
    make_texts(25, seed=9)[["text"]].to_csv(tmp_path / "new.csv", index=False)
    args = ["--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "pred.csv")]
    assert main(["predict", "--model", str(out), *args, "--cuda-graphs", "off"]) == 0
    # "on" insists on a GPU: on this CPU the command fails saying so
    assert main(["predict", "--model", str(out), *args, "--cuda-graphs", "on", "--device", "cpu"]) == 1
    assert "bertlearn predict: error: cuda_graphs=True needs a CUDA GPU, but the predictor runs on 'cpu'" in \
        capsys.readouterr().err
    assert main(["train", "--data", str(data), "--model", str(tiny_model_dir), "--epochs", "1", "--bs", "16",
                 "--maxlen", "64", "--out", str(tmp_path / "m"), "--device", "cpu", "--cuda-graphs", "on"]) == 1
    assert "bertlearn train: error: cuda_graphs=True needs a CUDA GPU, but the model goes to 'cpu'" in \
        capsys.readouterr().err


def test_eval_prints_and_writes_metrics(trained_dir, tmp_path, capsys):
    data, out = trained_dir
    code = main(["eval", "--model", str(out), "--input", str(data / "val.csv"), "--json", str(tmp_path / "m.json")])
    assert code == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["rows"] == 64 and metrics["accuracy"] > 0.9
    assert set(metrics["f1_per_label"]) == {"negative", "positive"}
    assert f"accuracy            {metrics['accuracy']:.4f}" in printed


def test_errors_exit_1_with_the_message_and_no_traceback(trained_dir, tmp_path, capsys):
    data, out = trained_dir
    pd.DataFrame({"body": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    code = main(["predict", "--model", str(out), "--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines()[-1] == (f"bertlearn predict: error: --text-col: column 'text' not in '{tmp_path / 'bad.csv'}'; "
                           "columns are ['body']")
    assert not (tmp_path / "o.csv").exists()
    code = main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m")])
    assert code == 1 and f"--data '{tmp_path / 'nope'}' is not a folder" in capsys.readouterr().err
    code = main(["eval", "--model", str(tmp_path / "nope"), "--input", str(data / "val.csv")])
    assert code == 1 and "is not a folder; pass the folder written by bertlearn train" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("keep")  # refused before training, not deleted after it
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "runs")])
    assert code == 1 and f"--out: '{tmp_path / 'runs'}' holds ['notes.txt'], which no model save wrote" in \
        capsys.readouterr().err and (tmp_path / "runs" / "notes.txt").read_text() == "keep"


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "x"])  # --out missing
    assert e.value.code == 2


def test_the_installed_command_shows_examples():
    out = subprocess.run([sys.executable, "-m", "bertlearn", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "examples:" in out.stdout and "bertlearn train --data data/" in out.stdout
    assert "Warning" not in out.stderr


def test_senses_prints_similarities_and_saves_a_plot(tiny_model_dir, tmp_path, capsys):
    code = main(["senses", "goodz", "-s", "the goodz movie", "-s", "GOODZ it was", "-s", "a goodz film",
                 "--model", str(tiny_model_dir), "--device", "cpu", "--plot", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert code == 0
    assert "cosine similarity of the contextual vectors of 'goodz':" in out
    assert out.count("1.00") >= 3  # the diagonal
    assert "static (input-embedding) vector: one vector in every sentence, similarity 1.00 everywhere" in out
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_senses_refuses_a_file_and_sentences_together(tmp_path, capsys):
    # before: the -s sentences were dropped without a word when --file was given
    (tmp_path / "s.txt").write_text("the bank of the river\nthe bank lent money\n")
    assert main(["senses", "bank", "--file", str(tmp_path / "s.txt"), "-s", "a bank account"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"--file {str(tmp_path / 's.txt')!r} and -s both give the sentences to compare; pass one of them (put the -s "
        "sentences in the file, one a line)")


def test_senses_without_sentences_for_an_unknown_word(capsys):
    assert main(["senses", "zebra"]) == 1
    assert "no sentences for 'zebra': pass -s SENTENCE (repeat) or --file; built-in examples exist for " \
           "['apple', 'bank', 'bat']" in capsys.readouterr().err


def test_train_with_tuned_thresholds_prints_what_eval_scores(tiny_model_dir, tmp_path, capsys):
    # the summary decided at 0.5 right after tuning, so it contradicted `bertlearn eval` on the same file
    for name, seed in (("train.csv", 5), ("val.csv", 6)):
        df = make_texts(160 if name == "train.csv" else 48, seed=seed)
        df.assign(good=(df["label"] == "positive").astype(int),
                  fun=df["text"].str.contains("fun").astype(int))[["text", "good", "fun"]].to_csv(tmp_path / name,
                                                                                                   index=False)
    out = tmp_path / "model"
    assert main(["train", "--data", str(tmp_path), "--model", str(tiny_model_dir), "--epochs", "2", "--lr", "1e-3",
                 "--bs", "16", "--maxlen", "48", "--out", str(out), "--seed", "0", "--device", "cpu",
                 "--label-col", "good", "fun", "--multi-label", "--tune-thresholds"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines()
                if l.startswith("validation at the thresholds tuned on these same rows"))
    # in-sample scores: said to be optimistic, with where to score them
    assert "optimistic, as they were chosen here; bertlearn eval on other rows says what they are worth" in line
    printed = dict(kv.rsplit(" ", 1) for kv in line.split(": ", 1)[1].split(", "))
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "val.csv"), "--json",
                 str(tmp_path / "m.json")]) == 0
    scored = json.loads((tmp_path / "m.json").read_text())
    scored = scored.get("metrics", scored)
    for name in ("f1_micro", "f1_macro", "accuracy_thresh"):
        assert float(printed[name]) == pytest.approx(scored[name], abs=1e-4)


def _train_stopped_at_a_missing_column(tiny_model_dir, data, capsys, *extra):
    """Run `bertlearn train` with `extra`, stopped by a missing label column once the options are read (nothing is
    trained); the "no effect" warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["train", "--data", str(data), "--model", str(tiny_model_dir), "--out", str(data / "m"),
                     "--device", "cpu", "--label-col", "nope", *extra])
    assert code == 1 and "label_col" in capsys.readouterr().err
    return [str(w.message) for w in caught if "no effect" in str(w.message)]


def test_train_says_which_options_a_classification_run_does_not_use(tiny_model_dir, tmp_path, capsys):
    # before: each of these was dropped without a word (the NER path already said so of classification options)
    make_texts(20, seed=1).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "tags.txt").write_text("O\nB-PER\nI-PER\n")
    run = lambda *extra: _train_stopped_at_a_missing_column(tiny_model_dir, tmp_path, capsys, *extra)  # noqa: E731
    assert run() == []
    assert run("--tune-thresholds") == [
        "--tune-thresholds: no effect on single-label classification (it predicts the most probable label); "
        "per-label thresholds are tuned for --multi-label"]
    assert run("--tune-thresholds", "--regression") == [
        "--tune-thresholds: no effect on regression (it predicts a number); per-label thresholds are tuned for "
        "--multi-label"]
    assert run("--tune-thresholds", "--multi-label") == []
    assert run("--tune-thresholds", "--label-delim", "|") == []
    # --train-size is the share trained on for NER from one JSONL file (--help says so); classification holds out 20%
    assert run("--train-size", "0.5") == [
        "--train-size: no effect on classification (it is the share trained on for NER from one JSONL file); "
        "without --val-file or val.csv it holds out a random 20% of train.csv for validation"]
    make_texts(8, seed=2).to_csv(tmp_path / "val.csv", index=False)
    assert run("--train-size", "0.5") == [
        "--train-size: no effect on classification (it is the share trained on for NER from one JSONL file); it "
        "validates on val.csv"]
    assert run("--label-file", "tags.txt", "--tag-scheme", "BIOES", "--label-all-tokens") == [
        "--label-file: no effect on classification (it is the tag list of token classification); the label order "
        "comes from labels.csv in --data when there, else the sorted training labels",
        "--tag-scheme, --label-all-tokens: no effect on classification (token classification options)"]
    assert run("--chunk-size", "3") == [
        "--chunk-size: no effect without --on-disk (it is the rows read at a time when streaming)"]
    assert run("--chunk-size", "3", "--on-disk") == []


def test_train_refuses_a_label_file_that_does_not_exist(tiny_model_dir, tmp_path, capsys):
    # before: a classification run dropped a mistyped --label-file without a word
    make_texts(20, seed=1).to_csv(tmp_path / "train.csv", index=False)
    for train_file in ("train.csv", "train.conll"):
        code = main(["train", "--data", str(tmp_path), "--model", str(tiny_model_dir), "--out", str(tmp_path / "m"),
                     "--device", "cpu", "--train-file", train_file, "--label-file", "does_not_exist.txt"])
        assert code == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"bertlearn train: error: --label-file '{tmp_path / 'does_not_exist.txt'}' does not exist; name the tag "
            "list in --data (one tag per line, token classification only), or leave --label-file out")


@pytest.mark.parametrize("maxlen, pairs, said", [
    ("1", False, "maxlen=1 leaves no room for text: BertTokenizer adds 2 special tokens to every text; allowed: "
                 "maxlen >= 3; give a larger maxlen, e.g. 128"),
    ("2", False, "maxlen=2 leaves no room for text: BertTokenizer adds 2 special tokens to every text; allowed: "
                 "maxlen >= 3; give a larger maxlen, e.g. 128"),
    ("4", True, "maxlen=4 leaves no room for a token of each text: BertTokenizer adds 3 special tokens to every "
                "sentence pair; allowed: maxlen >= 5 for sentence pairs; give a larger maxlen, e.g. 128")])
def test_train_refuses_a_maxlen_without_room_for_text(tiny_model_dir, tmp_path, capsys, maxlen, pairs, said):
    # before: --maxlen 1 cut nothing (a long text later failed in the model) and --maxlen 2 kept [CLS] [SEP] only
    df = make_texts(20, seed=1)
    if pairs:
        df = df.assign(text_a=df["text"], text_b=df["text"])
    df.to_csv(tmp_path / "train.csv", index=False)
    cols = ["--text-col", "text_a", "text_b"] if pairs else []
    code = main(["train", "--data", str(tmp_path), "--model", str(tiny_model_dir), "--out", str(tmp_path / "m"),
                 "--device", "cpu", "--maxlen", maxlen, *cols])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"bertlearn train: error: {said}"
    assert not (tmp_path / "m").exists()


def test_eval_names_labels_the_model_does_not_predict_with_a_fix_eval_has(tiny_learner, tiny_model_dir, tmp_path,
                                                                          capsys):
    # before: "add them to labels.csv or remove those rows", as when training; labels.csv cannot change a saved head
    folder = tiny_learner.save_model(tmp_path / "m")
    df = make_texts(6, seed=3)
    df.loc[2, "label"] = "neutral"
    df.to_csv(tmp_path / "val.csv", index=False)
    assert main(["eval", "--model", str(folder), "--input", str(tmp_path / "val.csv")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bertlearn eval: error: label_col 'label' in {tmp_path / 'val.csv'} has labels ['neutral'] that the model "
        "does not predict: it predicts only ['negative', 'positive']; remove or relabel those rows, or retrain with "
        "that label")
    # a multi-label model read with --label-delim: the same fix
    from bertlearn import BertDataBunch, BertLearner
    rows = make_texts(16, seed=1)[["text"]].assign(joy=[1, 0] * 8, anger=[0, 1] * 8)
    db = BertDataBunch.from_df(rows, rows, str(tiny_model_dir), label_col=["joy", "anger"], multi_label=True,
                               bs=16, maxlen=32, device="cpu")
    multi = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    folder = multi.save_model(tmp_path / "ml")
    pd.DataFrame({"text": ["good", "bad", "fun"], "tags": ["joy", "fear|anger", "calm|fear"]}).to_csv(
        tmp_path / "tags.csv", index=False)
    assert main(["eval", "--model", str(folder), "--input", str(tmp_path / "tags.csv"), "--label-col", "tags",
                 "--label-delim", "|"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bertlearn eval: error: label_col 'tags' in {tmp_path / 'tags.csv'} has labels ['calm', 'fear'] that the "
        "model does not predict: it predicts only ['joy', 'anger']; remove or relabel those rows, or retrain with "
        "those labels")


def test_eval_of_a_joined_label_model_reads_0_1_columns_named_on_the_command_line(tiny_model_dir, tmp_path, capsys):
    # the saved label_delim was applied to the first of the --label-col columns (its 0/1 values read as joined
    # labels '0' and '1'), and the others ignored
    import numpy as np
    import torch

    from bertlearn import BertDataBunch, BertLearner, DataError
    from bertlearn.metrics import evaluate
    rows = make_texts(16, seed=1)[["text"]].assign(tags=["joy", "anger", "joy|anger", "joy"] * 4)
    db = BertDataBunch.from_df(rows, rows, str(tiny_model_dir), label_col="tags", label_delim="|", bs=16, maxlen=32,
                               device="cpu")
    learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, output_dir=tmp_path)
    folder = learner.save_model(tmp_path / "m")
    test = make_texts(6, seed=3)[["text"]].assign(joy=[1, 0, 1, 0, 1, 1], anger=[0, 1, 1, 0, 0, 1])
    test.to_csv(tmp_path / "test.csv", index=False)
    assert main(["eval", "--model", str(folder), "--input", str(tmp_path / "test.csv"), "--label-col", "joy",
                 "anger", "--json", str(tmp_path / "m.json")]) == 0
    shown = json.loads((tmp_path / "m.json").read_text())
    labels = list(learner.dls.encoder.labels)
    targets = test[labels].to_numpy(np.float32)
    expected = evaluate(learner.predict_logits(list(test.text)), torch.tensor(targets), "multi_label_classification",
                        labels, thresholds=None)
    assert shown["hamming_loss"] == pytest.approx(expected["hamming_loss"], abs=1e-9)
    from bertlearn.data.frames import targets_from_frame
    with pytest.raises(DataError, match=r"^label_col=\['joy', 'anger'\] names 2 columns, but label_delim='\|' reads"):
        targets_from_frame(test, ["joy", "anger"], learner.dls.encoder, label_delim="|")
    # 0/1 columns that are not the model's labels: the fix is in the data (or a new training), not in labels.csv
    test.rename(columns={"anger": "rage"}).to_csv(tmp_path / "other.csv", index=False)
    assert main(["eval", "--model", str(folder), "--input", str(tmp_path / "other.csv"), "--label-col", "joy",
                 "rage"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "name different labels (label ['anger'] without a column and column ['rage'] without a label); columns are "
        "matched to labels by name, so give one 0/1 column per label of the model, named as its labels (label_col / "
        "--label-col), in any order, or retrain with the data's labels.")


def test_label_delim_with_several_label_columns_says_it_takes_one_column(tmp_path, tiny_model_dir, capsys):
    # before: "(pass multi_label=True for 0/1 label columns)", though --multi-label was passed; label_delim was wrong
    make_texts(16, seed=1)[["text"]].assign(joy=[1, 0] * 8, anger=[0, 1] * 8).to_csv(tmp_path / "train.csv",
                                                                                   index=False)
    code = main(["train", "--data", str(tmp_path), "--model", str(tiny_model_dir), "--out", str(tmp_path / "m"),
                 "--device", "cpu", "--label-col", "joy", "anger", "--multi-label", "--label-delim", "|"])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "bertlearn train: error: label_col=['joy', 'anger'] names 2 columns, but label_delim='|' reads the labels "
        "from ONE column holding them joined (e.g. 'joy|anger'); give that one column with label_delim, or leave "
        "label_delim out for 0/1 label columns (one per label, with multi_label=True)")
    # without label_delim, several columns on a single-label task still ask for multi_label
    code = main(["train", "--data", str(tmp_path), "--model", str(tiny_model_dir), "--out", str(tmp_path / "m"),
                 "--device", "cpu", "--label-col", "joy", "anger"])
    assert code == 1 and capsys.readouterr().err.strip().splitlines()[-1] == (
        "bertlearn train: error: label_col=['joy', 'anger'] names 2 columns; this task needs one label column (pass "
        "multi_label=True for 0/1 label columns)")


def test_predict_reads_rows_ending_in_a_delimiter(trained_dir, tmp_path, capsys):
    # before: rows with a field more than the header ("a good film,1,") made pandas take the texts as the index: the
    # ids were predicted as the texts, the texts left out of the output, exit code 0
    import csv
    data, out = trained_dir
    new = make_texts(7, seed=9)
    (tmp_path / "new.csv").write_text("text,id\n" + "".join(f"{t},{i},\n" for i, t in enumerate(new["text"])))
    with open(tmp_path / "new.csv", newline="") as fh:  # independent reading: the header's fields of each row
        rows = list(csv.reader(fh))
    texts = [r[0] for r in rows[1:]]
    assert texts == new["text"].tolist() and [len(r) for r in rows[1:]] == [3] * 7
    expected = BertClassificationPredictor(out).predict_labels(texts)
    for size in ("3", "100"):
        assert main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), "--output",
                     str(tmp_path / f"pred{size}.csv"), "--chunk-size", size]) == 0
        pred = pd.read_csv(tmp_path / f"pred{size}.csv", dtype=str)
        assert list(pred.columns) == ["text", "id", "prediction", "prob_negative", "prob_positive"]
        assert pred["text"].tolist() == texts and pred["id"].tolist() == [str(i) for i in range(7)]
        assert pred["prediction"].tolist() == expected
    # eval reads it alike (data.read_csv): the texts, as pandas reads them with index_col=False
    gold = pd.read_csv(tmp_path / "new.csv", index_col=False, dtype=str)
    (tmp_path / "gold.csv").write_text("text,label\n" + "".join(f"{t},{l},\n" for t, l in zip(new["text"],
                                                                                          new["label"])))
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "gold.csv"), "--json",
                 str(tmp_path / "m.json")]) == 0
    accuracy = sum(p == l for p, l in zip(expected, new["label"])) / 7
    assert gold["text"].tolist() == texts
    assert json.loads((tmp_path / "m.json").read_text())["accuracy"] == pytest.approx(accuracy)


def test_predict_refuses_a_row_with_a_field_past_the_header(trained_dir, tmp_path, capsys):
    # before: the extra field made pandas shift the columns (the ids predicted as texts); with index_col=False alone
    # it drops the field with a ParserWarning: data lost either way
    data, out = trained_dir
    (tmp_path / "new.csv").write_text("text,id\na lovely good film,1,\nan awful, bad film,2\nthe plot was great,3,\n")
    code = main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), "--output",
                 str(tmp_path / "pred.csv"), "--chunk-size", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and not (tmp_path / "pred.csv").exists()
    said = (f"--input: '{tmp_path / 'new.csv'}' line 3 has 3 fields but the header has 2 (['text', 'id']); its "
            "extra field ['2'] would be lost. Quote the field that holds a ',' (e.g. \"a, b\"), or fix the row to 2 "
            "fields")
    assert err.strip().splitlines()[-1] == f"bertlearn predict: error: {said}"
    (tmp_path / "gold.csv").write_text("text,label\na lovely good film,positive,\nan awful, bad film,negative\n")
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "gold.csv")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bertlearn eval: error: --input: '{tmp_path / 'gold.csv'}' line 3 has 3 fields but the header has 2 "
        "(['text', 'label']); its extra field ['negative'] would be lost. Quote the field that holds a ',' "
        "(e.g. \"a, b\"), or fix the row to 2 fields")


def test_predict_refuses_input_columns_the_predictions_would_overwrite(trained_dir, tmp_path, capsys):
    # before: an input column named "prediction" (gold labels, a previous model's output) or prob_<label> was
    # replaced by the new predictions, exit 0, while --help says the output holds the input's columns
    data, out = trained_dir
    labels = json.loads((out / "bertlearn.json").read_text())["labels"]
    (tmp_path / "new.csv").write_text(f"text,prediction,prob_{labels[1]}\na lovely good film,gold_A,0.9\n")
    code = main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), "--output",
                 str(tmp_path / "pred.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and not (tmp_path / "pred.csv").exists()
    written = ["prediction"] + [f"prob_{label}" for label in labels]
    assert err.strip().splitlines()[-1] == (
        f"bertlearn predict: error: --input: new.csv already has the column(s) ['prediction', 'prob_{labels[1]}'] "
        f"that the predictions are written to (the output keeps the input's columns and adds {written}); rename "
        "them in the file, or predict from a copy without them")


def test_predict_reads_cp1252_and_names_a_broken_csv(trained_dir, tmp_path, capsys):
    # before: a raw UnicodeDecodeError / ParserError traceback, where train and eval read cp1252 with a warning
    data, out = trained_dir
    texts = ["na\xefve caf\xe9, a good film", "awful \u2026 film"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "new.csv", index=False, encoding="cp1252")
    args = ["--output", str(tmp_path / "pred.csv"), "--chunk-size", "1"]
    with pytest.warns(UserWarning, match=r"^new\.csv is not valid UTF-8; reading it as cp1252 \(pass encoding=\.\.\. "
                                         r"to choose\)$"):
        assert main(["predict", "--model", str(out), "--input", str(tmp_path / "new.csv"), *args]) == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred["text"].tolist() == texts
    assert pred["prediction"].tolist() == BertClassificationPredictor(out).predict_labels(texts)
    (tmp_path / "bad.csv").write_text('text,id\n"a lovely good film,1\nbad,2\n')
    capsys.readouterr()
    code = main(["predict", "--model", str(out), "--input", str(tmp_path / "bad.csv"), "--output",
                 str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and not (tmp_path / "o.csv").exists()
    # the quote is checked before any chunk is read: the line it opens on, and the fix for a file without quoting
    assert err.strip().splitlines()[-1] == (
        f"bertlearn predict: error: --input: '{tmp_path / 'bad.csv'}' line 2 ('\"a lovely good film,1') opens a "
        "quoted field (a field that starts with a quote, \") that the file never closes, so a CSV reader reads the "
        "rest of the file into that one cell. If the file was written without quoting (texts as typed, quotes and "
        "all), pass quoting=csv.QUOTE_NONE (--quoting none); otherwise put that field in quotes and double the "
        'quotes inside it (the text "bad" acting is written """bad"" acting")')
    (tmp_path / "undefined.csv").write_bytes(b"text\nbad \x81 byte\n")  # 0x81: no character in cp1252 either
    with pytest.warns(UserWarning, match="not valid UTF-8; reading it as cp1252"):
        assert main(["predict", "--model", str(out), "--input", str(tmp_path / "undefined.csv"), *args]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bertlearn predict: error: --input: '{tmp_path / 'undefined.csv'}' is neither UTF-8 nor cp1252 (byte 0x81 "
        "is undefined in cp1252); save it as UTF-8")


def test_eval_json_writes_null_for_an_undefined_metric(trained_dir, tmp_path, capsys):
    # before: roc_auc of a one-class test set was written as NaN, which is not JSON (jq and JavaScript refuse it)
    data, out = trained_dir
    make_texts(64, seed=6).query("label == 'positive'").to_csv(tmp_path / "one.csv", index=False)
    assert main(["eval", "--model", str(out), "--input", str(tmp_path / "one.csv"), "--json",
                 str(tmp_path / "m.json")]) == 0
    text = (tmp_path / "m.json").read_text()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    metrics = json.loads(text, parse_constant=refuse)
    assert "NaN" not in text and metrics["roc_auc"] is None
    assert 0.9 < metrics["accuracy"] <= 1


@pytest.mark.parametrize("typed, sep", [(";", ";"), ("|", "|"), ("\t", "\t"), ("\\t", "\t"), ("\\x1f", "\x1f"),
                                        ("\\", "\\"), ("\u00a6", "\u00a6")])
def test_a_separator_is_one_character_as_typed_or_escaped(typed, sep):
    from bertlearn.cli import _separator
    assert _separator(typed) == sep


def test_a_tab_typed_as_backslash_t_is_a_tab(trained_dir, tmp_path, capsys):
    # before: --sep '\t' as a shell passes it (a backslash and a t) went to pandas as a regular expression, which
    # ignores quotes: 3 rows came back as 4 predictions, with the quotes in the texts
    data, out = trained_dir
    texts = ['say "great" film', "a good\tfilm", "dull plot"]
    pd.DataFrame({"text": texts, "id": [0, 1, 2]}).to_csv(tmp_path / "new.tsv", sep="\t", index=False)
    assert main(["predict", "--model", str(out), "--sep", "\\t", "--input", str(tmp_path / "new.tsv"),
                 "--output", str(tmp_path / "p.csv")]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert pred["text"].tolist() == texts and pred["id"].tolist() == [0, 1, 2]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", str(out), "--sep", "::", "--input", str(tmp_path / "new.tsv"),
              "--output", str(tmp_path / "q.csv")])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "argument --sep: '::' is not one character; a CSV separator is one (a tab: '\\t' or $'\\t'; regular "
        "expressions are not read: their fields ignore quotes)")


def test_quoting_none_reads_a_tsv_of_texts_as_typed(trained_dir, tmp_path, capsys):
    # before: a text starting with a quote opened a quoted field over the next rows: 6 rows predicted as 4, and
    # '"bad" acting' as 'bad acting'; --quoting none reads each line as typed, and without it the line is named
    data, out = trained_dir
    texts = ['"the movie', "boring film", 'a "great" film', "dull plot", '"bad" acting really', 'fun "film']
    (tmp_path / "new.tsv").write_text("text\tid\n" + "".join(f"{t}\t{i}\n" for i, t in enumerate(texts)))
    (tmp_path / "gold.tsv").write_text("text\tlabel\n" + "".join(f"{t}\tpositive\n" for t in texts))
    common = ["--model", str(out), "--sep", "\t"]
    assert main(["predict", *common, "--input", str(tmp_path / "new.tsv"), "--output", str(tmp_path / "p.csv"),
                 "--quoting", "none"]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert pred["text"].tolist() == texts and pred["id"].tolist() == list(range(6))
    assert main(["eval", *common, "--input", str(tmp_path / "gold.tsv"), "--quoting", "none"]) == 0
    capsys.readouterr()
    for command, name in (("predict", "new.tsv"), ("eval", "gold.tsv")):
        extra = ["--output", str(tmp_path / "q.csv")] if command == "predict" else []
        assert main([command, *common, "--input", str(tmp_path / name), *extra]) == 1
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"bertlearn {command}: error: --input: '{tmp_path / name}' line 2 ('\"the movie\\t")
        assert "pass quoting=csv.QUOTE_NONE (--quoting none)" in last
    assert not (tmp_path / "q.csv").exists()


def test_a_pair_model_never_reads_other_columns_than_it_was_trained_on(tiny_model_dir, tmp_path, capsys):
    """A pair model trained on (s1, s2) was given a file without them and read its text_a, text_b instead, whatever
    they held (here the training order swapped), without a word."""
    from bertlearn import BertDataBunch, BertLearner
    df = make_texts(24, seed=1)
    df = df.assign(s1=df["text"], s2=df["text"].str.upper())
    db = BertDataBunch.from_df(df, df, str(tiny_model_dir), text_col=["s1", "s2"], bs=8, maxlen=32, device="cpu")
    folder = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None,
                                               output_dir=tmp_path / "o").save_model(tmp_path / "m")
    df.assign(text_a=df["s2"], text_b=df["s1"])[["text_a", "text_b"]].to_csv(tmp_path / "ab.csv", index=False)
    code = main(["predict", "--model", str(folder), "--input", str(tmp_path / "ab.csv"), "--output",
                 str(tmp_path / "o.csv")])
    assert code == 1 and not (tmp_path / "o.csv").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bertlearn predict: error: '{tmp_path / 'ab.csv'}' has no column 's1': the model was trained on the columns "
        "['s1', 's2'] (its bertlearn.json), and the file's columns are ['text_a', 'text_b']; pass --text-col with the "
        "file's columns holding those texts, in that order")
    code = main(["predict", "--model", str(folder), "--input", str(tmp_path / "ab.csv"), "--output",
                 str(tmp_path / "o.csv"), "--text-col", "text_b", "text_a"])
    assert code == 0 and len(pd.read_csv(tmp_path / "o.csv")) == 24
