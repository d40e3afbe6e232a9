"""BertDataBunch: the fast-bert call, factories, batching, length grouping and input checks."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.data.core import DataLoaders

from bertlearn import BertDataBunch, DataError
from bertlearn.data import PAD_MULTIPLE

from conftest import make_texts


class TestFastBertCall:
    def test_verbatim_signature_builds_fastai_dataloaders(self, tiny_csv_dir, tiny_tokenizer):
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, train_file="train.csv", val_file="val.csv",
                           test_data=None, label_file="labels.csv", text_col="text", label_col="label", bs=16,
                           maxlen=64, multi_gpu=False, multi_label=False, model_type="bert", logger=None,
                           clear_cache=False, no_cache=False)
        assert isinstance(db, DataLoaders)
        assert (len(db.train.dataset), len(db.valid.dataset)) == (96, 32)
        assert db.labels == db.vocab == ["negative", "positive"] and db.c == 2
        assert db.train.bs == 16 and db.valid.bs == 32

    def test_aliases_and_integer_columns(self, tiny_csv_dir, tiny_tokenizer):
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, text_col=0, label_col=[1],
                           batch_size_per_gpu=8, max_seq_length=40)
        assert db.bs == 8 and db.maxlen == 40
        assert db.train.dataset.lengths.max() <= 40

    def test_tokenizer_by_path_string(self, tiny_csv_dir, tiny_model_dir):
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, str(tiny_model_dir), bs=16, maxlen=64)
        assert db.tokenizer.pad_token == "[PAD]"

    def test_labels_from_training_file_when_labels_csv_missing(self, tiny_csv_dir, tiny_tokenizer):
        (tiny_csv_dir / "labels.csv").unlink()
        df = pd.read_csv(tiny_csv_dir / "train.csv")
        df["label"] = df["label"].map({"negative": 10, "positive": 2})
        df.to_csv(tiny_csv_dir / "train.csv", index=False)
        vdf = pd.read_csv(tiny_csv_dir / "val.csv")
        vdf["label"] = vdf["label"].map({"negative": 10, "positive": 2})
        vdf.to_csv(tiny_csv_dir / "val.csv", index=False)
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64)
        assert db.labels == ["2", "10"]  # sorted as numbers, not as strings

    def test_labels_csv_order_is_kept(self, tiny_csv_dir, tiny_tokenizer):
        (tiny_csv_dir / "labels.csv").write_text("positive\nnegative\n")
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, bs=16, maxlen=64)
        assert db.labels == ["positive", "negative"]
        texts = pd.read_csv(tiny_csv_dir / "train.csv")["label"]
        assert (db.train.dataset.targets == (texts == "negative").to_numpy().astype(int)).all()

    def test_test_data_as_list_and_as_file(self, tiny_csv_dir, tiny_tokenizer):
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, test_data=["good movie", "bad film"], bs=16)
        assert len(db.test.dataset) == 2 and not db.test.dataset.has_targets
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, test_data="val.csv", bs=16)
        assert len(db.test.dataset) == 32


class TestFactories:
    def test_from_df_without_valid_holds_out_valid_pct(self, tiny_tokenizer):
        db = BertDataBunch.from_df(make_texts(100), None, tiny_tokenizer, valid_pct=0.25, seed=1, bs=8)
        assert (len(db.train.dataset), len(db.valid.dataset)) == (75, 25)

    def test_from_csv_equals_from_df(self, tiny_csv_dir, tiny_tokenizer):
        a = BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, val_file="val.csv", bs=16, maxlen=64)
        b = BertDataBunch.from_df(pd.read_csv(tiny_csv_dir / "train.csv"), pd.read_csv(tiny_csv_dir / "val.csv"),
                                  tiny_tokenizer, bs=16, maxlen=64)
        assert a.train.dataset.ids.tolist() == b.train.dataset.ids.tolist()
        assert np.array_equal(a.valid.dataset.targets, b.valid.dataset.targets)

    def test_ids_are_stored_ragged(self, tiny_tokenizer):
        from bertlearn.data.store import RaggedRows
        df = make_texts(50)
        df.loc[0, "text"] = " ".join(["good"] * 200)  # one long text must not widen every row
        ds = BertDataBunch.from_df(df, df, tiny_tokenizer, bs=4, maxlen=128).train.dataset
        assert isinstance(ds.ids, RaggedRows) and ds.ids.dtype == np.uint16
        assert ds.lengths.max() == 128 and len(ds.ids.values) == ds.lengths.sum() < 50 * 128 / 2

    def test_backend_that_disagrees_with_the_tokenizer_is_not_used(self, tiny_tokenizer, monkeypatch, caplog):
        import bertlearn.data.encode as data
        from types import SimpleNamespace

        from bertlearn.data.backends import BatchEncoder
        monkeypatch.setattr(BatchEncoder, "encode", lambda self, a, b=None: [SimpleNamespace(ids=[1])] * len(a))
        enc = data.TextEncoder(tiny_tokenizer, 16, ["a", "b"])
        with caplog.at_level(logging.INFO, logger="bertlearn.data.backends"):
            got = enc.encode(["good movie", "bad"])
        assert enc._backend() is None and "using the slower call" in caplog.text
        assert got["ids"].tolist() == tiny_tokenizer(["good movie", "bad"])["input_ids"]

    def test_tokenization_matches_the_tokenizer(self, tiny_tokenizer):
        df = make_texts(20)
        db = BertDataBunch.from_df(df, df, tiny_tokenizer, bs=4, maxlen=12)
        ds = db.train.dataset
        for i, text in enumerate(df["text"]):
            expected = tiny_tokenizer(text, truncation=True, max_length=12)["input_ids"]
            assert ds.ids[i, :ds.lengths[i]].tolist() == expected
        padded = ds.ids[np.arange(len(ds)), :12]
        assert (padded[np.arange(12)[None, :] >= ds.lengths[:, None]] == tiny_tokenizer.pad_token_id).all()


class TestBatching:
    def test_cpu_batches_pad_to_their_longest_row(self, tiny_databunch):
        for dl in (tiny_databunch.train, tiny_databunch.valid):
            for ids, mask, y in dl:
                assert ids.shape[1] == int(mask.sum(1).max())  # a CPU only pays for padding, so there is none
                assert ids.dtype == torch.long and mask.dtype == torch.long
                assert (ids[mask == 0] == 0).all()

    @pytest.mark.gpu
    def test_gpu_batches_round_the_width_up_to_8(self, tiny_databunch):
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")
        for ids, mask, y in tiny_databunch.train.new(device=torch.device("cuda")):
            longest = int(mask.sum(1).max())
            assert ids.is_cuda and ids.shape[1] % PAD_MULTIPLE == 0 and longest <= ids.shape[1] < longest + PAD_MULTIPLE

    def test_validation_is_sorted_longest_first_and_complete(self, tiny_databunch):
        dl = tiny_databunch.valid
        lengths = torch.cat([mask.sum(1) for _, mask, _ in dl])
        assert (lengths[:-1] >= lengths[1:]).all()
        assert sorted(dl.get_idxs()) == list(range(len(dl.dataset)))

    def test_training_order_is_length_grouped_shuffled_and_complete(self, tiny_tokenizer):
        df = make_texts(2000, seed=3)
        db = BertDataBunch.from_df(df, df.head(10), tiny_tokenizer, bs=20, maxlen=64)
        dl, lengths = db.train, db.train.dataset.lengths
        first, second = dl.get_idxs(), dl.get_idxs()
        assert sorted(first) == list(range(2000)) and first != second
        batches = np.asarray(first).reshape(-1, 20)
        spread_grouped = np.mean([np.ptp(lengths[b]) for b in batches])
        spread_random = np.mean([np.ptp(lengths[b]) for b in np.random.permutation(2000).reshape(-1, 20)])
        assert spread_grouped < spread_random / 3
        # the batch with the longest text comes first, so memory peaks at step one
        assert lengths[batches[0]].max() == lengths.max()
        # batch order is shuffled, not sorted by length
        maxes = np.array([lengths[b].max() for b in batches[1:]])
        assert not (np.all(np.diff(maxes) <= 0) or np.all(np.diff(maxes) >= 0))

    def test_padding_saved_versus_static_padding(self, tiny_databunch):
        padded = sum(ids.numel() for ids, _, _ in tiny_databunch.train)
        assert padded < len(tiny_databunch.train.dataset) * tiny_databunch.maxlen / 2

    def test_drop_last(self, tiny_databunch):
        dl = tiny_databunch.train.new(drop_last=True, bs=40)
        assert [len(b[0]) for b in dl] == [40, 40]

    def test_test_dl_has_no_targets(self, tiny_databunch):
        dl = tiny_databunch.test_dl(["good movie", "the plot was really dull and boring"])
        (batch,) = list(dl)
        assert len(batch) == 2 and batch[0].shape[0] == 2

    def test_show_batch_shows_the_original_texts_wrapped(self, tiny_tokenizer, capsys):
        long = "Won't you SEE it? " + "A really good film, " * 12
        df = pd.DataFrame({"text": [long, "It's BAD."] * 4, "label": ["positive", "negative"] * 4})
        BertDataBunch.from_df(df, df, tiny_tokenizer, bs=8, maxlen=64).show_batch(max_n=3)
        lines = capsys.readouterr().out.splitlines()
        assert max(map(len, lines)) <= 100  # wrapped, not one 200-character table row
        blocks = []  # each row: "label: ..." then its text, indented
        for line in lines:
            if line.startswith("label: "):
                blocks.append([line[len("label: "):], []])
            else:
                blocks[-1][1].append(line.strip())
        assert len(blocks) == 3
        for label, text in blocks:
            # the text as written (case, apostrophes), not the tokenizer's decoding ("won ' t you see it ?")
            assert (" ".join(text), label) in {(long.strip(), "positive"), ("It's BAD.", "negative")}


class TestEncoding:
    @pytest.mark.parametrize("pairs", [False, True])
    def test_chunks_tokenized_ahead_on_a_thread_give_the_tokenizers_ids_in_order(self, tiny_tokenizer, monkeypatch,
                                                                                 pairs):
        import threading

        import bertlearn.data.encode as data
        from bertlearn.data import TextEncoder
        texts = make_texts(53, seed=5)["text"].tolist()
        texts_b = list(reversed(texts)) if pairs else None
        monkeypatch.setattr(data, "_TOKENIZE_CHUNK", 5)  # 11 chunks
        from bertlearn.data.backends import BatchEncoder
        threads, real = set(), BatchEncoder.encode
        monkeypatch.setattr(BatchEncoder, "encode",
                            lambda self, a, b=None: threads.add(threading.current_thread().name) or real(self, a, b))
        enc = TextEncoder(tiny_tokenizer, 24, ["a", "b"], pairs=pairs).encode(texts, texts_b)
        ref = tiny_tokenizer(texts, texts_b, truncation=True, max_length=24)
        assert [enc["ids"][i, :enc["lengths"][i]].tolist() for i in range(len(texts))] == ref["input_ids"]
        assert enc["owner"].tolist() == list(range(len(texts)))
        assert any(name.startswith("bertlearn-tokenize") for name in threads)
        assert not any(t.name.startswith("bertlearn-tokenize") for t in threading.enumerate())  # pool shut down


    @pytest.mark.parametrize("problem_type, column", [("single_label_classification", ["pos", "neg", "pos"]),
                                                      ("single_label_classification", [1, 0, 1]),
                                                      ("regression", np.array([0.5, 1.0, 2.0], dtype=np.float32))])
    def test_targets_are_writable_arrays(self, tiny_tokenizer, problem_type, column):
        # pandas 3 hands out read-only views of int64 and float32 columns; torch warns when it wraps those
        from bertlearn.data import TextEncoder, targets_from_frame
        labels = ["score"] if problem_type == "regression" else sorted({str(v) for v in column})
        enc = TextEncoder(tiny_tokenizer, 24, labels, problem_type=problem_type)
        targets = targets_from_frame(pd.DataFrame({"label": column}), "label", enc)
        assert targets.flags.writeable and targets.dtype == (np.float32 if problem_type == "regression" else np.int64)


def test_ids_past_the_vocabularys_length_are_stored_whole():
    # a vocabulary with gaps: 6 tokens, one of them at id 70000, which uint16 (chosen by len(tokenizer)) wrapped to 4464
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    from bertlearn.data import TextEncoder
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "good": 4, "rare": 70000}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]")
    for truncation in ("head", "tail"):
        enc = TextEncoder(tok, 16, ["a", "b"], truncation=truncation)
        assert enc.id_dtype == np.int32
        assert enc.encode(["good rare"])["ids"].tolist() == [[2, 4, 70000, 3]]


class TestInputErrors:
    def test_missing_column_lists_columns_and_suggests(self, tiny_csv_dir, tiny_tokenizer):
        with pytest.raises(DataError) as e:
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, text_col="txt")
        assert str(e.value) == "text_col: column 'txt' not in train.csv; columns are ['text', 'label']; did you mean 'text'?"

    def test_integer_column_out_of_range(self, tiny_csv_dir, tiny_tokenizer):
        with pytest.raises(DataError, match=r"label_col=5 is out of range: train.csv has 2 columns \['text', 'label'\]"):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, label_col=5)

    def test_missing_file(self, tiny_csv_dir, tiny_tokenizer):
        with pytest.raises(DataError, match=r"val_file: file '.*valid.csv' not found; files there: "):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, val_file="valid.csv")

    def test_tsv_passed_as_csv_suggests_sep(self, tiny_csv_dir, tiny_tokenizer):
        df = pd.read_csv(tiny_csv_dir / "train.csv")
        df.to_csv(tiny_csv_dir / "train.csv", sep="\t", index=False)
        with pytest.raises(DataError, match=r"looks tab-separated: pass sep='\\t'"):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer)

    def test_empty_text_rows_named_or_dropped(self, tiny_csv_dir, tiny_tokenizer):
        df = pd.read_csv(tiny_csv_dir / "train.csv")
        df.loc[[3, 7, 8], "text"] = [None, "   ", "\u200b\u00ad"]  # a zero-width space and a soft hyphen: no token
        df.to_csv(tiny_csv_dir / "train.csv", index=False)
        assert tiny_tokenizer("\u200b\u00ad", add_special_tokens=False)["input_ids"] == []
        with pytest.raises(DataError, match=r"has 3 empty or missing texts \(CSV lines \[5, 9, 10\]\), 1 of them only "
                                            r"invisible characters \(zero-width spaces, control characters\); .* dropna=True"):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer)
        db = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, dropna=True)
        assert len(db.train.dataset) == 93

    def test_unknown_validation_label(self, tiny_csv_dir, tiny_tokenizer):
        df = pd.read_csv(tiny_csv_dir / "val.csv")
        df.loc[0, "label"] = "neutral"
        df.to_csv(tiny_csv_dir / "val.csv", index=False)
        with pytest.raises(DataError, match=r"has labels \['neutral'\] that are not among the known labels"):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer)

    def test_single_class(self, tiny_tokenizer):
        df = make_texts(10).assign(label="positive")
        with pytest.raises(DataError, match=r"has a single class \['positive'\]"):
            BertDataBunch.from_df(df, df, tiny_tokenizer)

    @pytest.mark.parametrize("bs", [0, -1, 2.5, "x"])
    def test_bad_batch_size(self, tiny_tokenizer, bs):
        with pytest.raises(DataError, match=rf"bs={bs!r} must be a positive integer"):
            BertDataBunch.from_df(make_texts(10), None, tiny_tokenizer, bs=bs)

    def test_maxlen_above_tokenizer_limit_is_clipped_with_warning(self, tiny_tokenizer):
        with pytest.warns(UserWarning, match="maxlen=1000 exceeds the tokenizer's model_max_length=512; using 512"):
            db = BertDataBunch.from_df(make_texts(10), None, tiny_tokenizer, maxlen=1000)
        assert db.maxlen == 512

    def test_cp1252_file_is_read_with_a_warning(self, tmp_path, tiny_tokenizer):
        rows = "text,label\n" + "".join(f"caf\xe9 movie was good {i},positive\nawful \u2026 film {i},negative\n" for i in range(5))
        (tmp_path / "train.csv").write_bytes(rows.encode("cp1252"))
        (tmp_path / "val.csv").write_bytes(rows.encode("cp1252"))
        with pytest.warns(UserWarning, match="not valid UTF-8; reading it as cp1252"):
            db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, bs=4)
        assert db.train.dataset.texts[0].startswith("café")

    def test_utf8_bom_header(self, tmp_path, tiny_tokenizer):
        make_texts(10).to_csv(tmp_path / "train.csv", index=False, encoding="utf-8-sig")
        make_texts(10).to_csv(tmp_path / "val.csv", index=False, encoding="utf-8-sig")
        db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, bs=4)
        assert len(db.train.dataset) == 10


def _short_text(values):
    return [v if len(v) <= 40 else v[:37] + "..." for v in map(str, values)]


class TestMessyInput:
    def test_numbers_in_the_text_column(self, tiny_tokenizer):
        df = make_texts(10)
        df["text"] = range(10)
        with pytest.raises(DataError, match=r"text_col 'text' in train_df holds non-text values \(e.g. 0 at CSV line 2; "
                                            r"lines \[2, 3, .*\]\); is it the right column\?"):
            BertDataBunch.from_df(df, df, tiny_tokenizer)

    def test_a_csv_is_read_as_written(self, tmp_path, tiny_tokenizer):
        # pandas' guesses made labels "01" and "1" one class, "007" the label "7", and "NA"/"None" missing values
        texts = make_texts(8)["text"].tolist()
        rows = pd.DataFrame({"text": texts[:7] + ["NA"], "label": ["01", "1", "007", "NA", "None", "10", "2", "1"]})
        rows.to_csv(tmp_path / "train.csv", index=False)
        rows.to_csv(tmp_path / "val.csv", index=False)
        db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, bs=4)
        assert db.labels == ["007", "01", "1", "10", "2", "NA", "None"]  # not all numbers: sorted as text
        assert [db.labels[i] for i in db.train.dataset.targets] == rows["label"].tolist()
        assert list(db.train.dataset.texts)[-1] == "NA"
        rows.assign(label=["2", "10", "1", "2", "10", "1", "2", "1"]).to_csv(tmp_path / "train.csv", index=False)
        rows.assign(label="1").to_csv(tmp_path / "val.csv", index=False)
        assert BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, bs=4).labels == ["1", "2", "10"]  # numeric order
        # a whole-number column written as floats (it held a NaN once) names the same labels as its integers
        rows.assign(label=["2.0", "10.0", "1.0", "2", "10", "1", "2", "1"]).to_csv(tmp_path / "train.csv", index=False)
        db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, bs=4)
        assert db.labels == ["1", "2", "10"] and db.train.dataset.targets.tolist() == [1, 2, 0, 1, 2, 0, 1, 0]

    def test_a_large_csv_is_read_as_written_in_every_row(self, tmp_path):
        # pandas guesses a column's type per 262k-row chunk: "01" and "1" became 1 in the numeric chunk only
        from bertlearn.data import read_csv
        n = 300_000
        pd.DataFrame({"text": ["t"] * n, "label": (["01", "1"] * n)[:n - 1] + ["abc"]}).to_csv(tmp_path / "big.csv",
                                                                                              index=False)
        labels = read_csv(tmp_path / "big.csv")["label"]
        assert labels.iloc[:2].tolist() == ["01", "1"] and labels.iloc[-1] == "abc"
        assert set(labels.iloc[:-1]) == {"01", "1"}

    def test_rows_with_a_field_more_than_the_header(self, tmp_path, tiny_tokenizer):
        # pandas makes the extra first field the index; the columns read again as written were put back by it
        df = make_texts(24).assign(label=lambda d: (d["label"] == "positive").astype(int))
        for name in ("train.csv", "val.csv"):
            (tmp_path / name).write_text("text,label\n" + "".join(f"{i},{t},{l}\n" for i, (t, l) in
                                                                   enumerate(zip(df["text"], df["label"]))))
        db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, label_file=None)
        assert [db.labels[i] for i in db.train.dataset.targets] == df["label"].astype(str).tolist()

    def test_rows_ending_in_a_delimiter_are_read_as_the_header_says(self, tmp_path, tiny_tokenizer):
        # before: pandas took the first field of rows with a field more than the header ("a good film,1,") as the
        # index: the labels were read as the texts (and the empty last field as the labels)
        import csv
        from bertlearn.data import read_csv
        df = make_texts(24).assign(label=lambda d: (d["label"] == "positive").astype(int))
        for name in ("train.csv", "val.csv"):
            (tmp_path / name).write_text("text,label\n" + "".join(f"{t},{l},\n" for t, l in zip(df["text"],
                                                                                              df["label"])))
        with open(tmp_path / "train.csv", newline="") as fh:
            rows = list(csv.reader(fh))[1:]
        read = read_csv(tmp_path / "train.csv")
        assert read["text"].tolist() == [r[0] for r in rows] and read["label"].tolist() == [r[1] for r in rows]
        assert read.equals(pd.read_csv(tmp_path / "train.csv", index_col=False, dtype=str))
        db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, label_file=None)
        assert list(db.train.dataset.texts) == [r[0] for r in rows]
        assert [db.labels[i] for i in db.train.dataset.targets] == [r[1] for r in rows]

    def test_a_row_with_a_field_past_the_header_is_refused(self, tmp_path, tiny_tokenizer):
        # before: with the first row one field longer, pandas shifted every column (the labels read as the texts);
        # with index_col=False alone it drops the field with a ParserWarning: a text cut at its unquoted comma
        df = make_texts(6)
        for name in ("train.csv", "val.csv"):  # the first text holds an unquoted comma; a row ends in a note
            (tmp_path / name).write_text("text,label\n" + "".join(
                f"{t}{', really' if i == 0 else ''},{l}{',seen twice' if i == 4 else ''}\n"
                for i, (t, l) in enumerate(zip(df["text"], df["label"]))))
        with pytest.raises(DataError) as e:
            BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, label_file=None)
        assert str(e.value) == (f"train_file: '{tmp_path / 'train.csv'}' line 2 has 3 fields but the header has 2 "
                                f"(['text', 'label']); its extra field [{df['label'][0]!r}] would be lost. Quote "
                                "the field that holds a ',' (e.g. \"a, b\"), or fix the row to 2 fields")
        # rows ending in a delimiter, one of them with a note in that field: the note is named
        for name in ("train.csv", "val.csv"):
            (tmp_path / name).write_text("text,label\n" + "".join(
                f"{t},{l},{'seen twice' if i == 4 else ''}\n" for i, (t, l) in enumerate(zip(df["text"], df["label"]))))
        with pytest.raises(DataError, match=r"train\.csv' line 6 has 3 fields but the header has 2 \(\['text', "
                                            r"'label'\]\); its extra field \['seen twice'\] would be lost\. Quote"):
            BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, label_file=None)

    def test_streamed_rows_with_fields_past_the_header(self, tmp_path, tiny_tokenizer):
        # before: on_disk=True read "a good film,1," with the first field as the index (labels read as texts) and,
        # with index_col=False alone, dropped a field holding data without a word
        import csv
        df = make_texts(24).assign(label=lambda d: (d["label"] == "positive").astype(int))

        def write(extra):
            for name in ("train.csv", "val.csv"):
                (tmp_path / name).write_text("text,label\n" + "".join(
                    f"{t},{l},{extra(i)}\n" for i, (t, l) in enumerate(zip(df["text"], df["label"]))))

        write(lambda i: "")
        db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, on_disk=True, chunksize=5,
                                    clear_cache=True, device="cpu")
        with open(tmp_path / "train.csv", newline="") as fh:
            rows = list(csv.reader(fh))[1:]
        assert [db.labels[int(i)] for i in db.train.dataset.targets] == [r[1] for r in rows]
        assert db.train.dataset.lengths.tolist() == [len(tiny_tokenizer(r[0])["input_ids"]) for r in rows]
        write(lambda i: "seen twice" if i == 7 else "")
        with pytest.raises(DataError, match=r"train\.csv' line 9 has 3 fields but the header has 2 \(\['text', "
                                            r"'label'\]\); its extra field \['seen twice'\] would be lost\. Quote"):
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, on_disk=True, chunksize=5,
                                   clear_cache=True, device="cpu")
        for name in ("train.csv", "val.csv"):  # R's write.table: a row name in front of every row
            (tmp_path / name).write_text('"text","label"\n' + "".join(
                f'"{i + 1}","{t}",{l}\n' for i, (t, l) in enumerate(zip(df["text"], df["label"]))))
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, on_disk=True, chunksize=5,
                                   clear_cache=True, device="cpu")
        assert str(e.value) == (
            f"{str(tmp_path / 'train.csv')!r}: every row has a field more than the header (row names in front, as R's "
            "write.table writes them), which on_disk=True does not read: write the file without them "
            "(write.table(..., row.names=FALSE)) or read it in memory (on_disk=False)")

    @pytest.mark.parametrize("rows,expected", [
        (["good,pos", "bad,neg", "great, pos", "awful,neg"], ["neg", "pos"]),
        (["good,2", "bad,nan", "great,1", "awful,10"], ["1", "10", "2", "nan"]),
        (["good,1", "bad,10", "great,nan", "awful,2"], ["1", "10", "2", "nan"]),
        (["good,2", "bad,10", "great,1", "awful,10"], ["1", "2", "10"])], ids=["space", "nan-a", "nan-b", "numbers"])
    @pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "on-disk"])
    def test_labels_without_a_label_file_are_the_sorted_names(self, tmp_path, tiny_tokenizer, rows, expected, on_disk):
        # before: the raw cells were sorted, then stripped (" pos" before "neg"), and a "nan" label among numbers
        # took the file's row order (NaN compares false), so weight=[...] "in label order" hit other classes
        (tmp_path / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
        (tmp_path / "val.csv").write_text("text,label\nfine,1\npoor,2\n" if rows[0][-1].isdigit() else
                                          "text,label\nfine,pos\npoor,neg\n")
        db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, maxlen=32, device="cpu",
                                    on_disk=on_disk)
        assert db.labels == expected
        cells = [r.split(",")[1].strip() for r in rows]
        assert [db.labels[int(t)] for t in db.train.dataset.targets] == cells

    def test_infinite_regression_targets_are_refused(self, tmp_path, tiny_tokenizer):
        # before: "inf", "-Infinity" and 1e39 (beyond float32) became infinite targets: an inf loss, NaN weights
        (tmp_path / "train.csv").write_text("text,score\ngood,1.5\nbad,inf\ngreat,2\nawful,1e39\n")
        (tmp_path / "val.csv").write_text("text,score\nfine,1\npoor,2\n")
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_col="score", regression=True, label_file=None,
                                   maxlen=32, device="cpu")
        assert str(e.value) == ("label_col 'score' in train.csv needs finite numbers for regression; CSV lines [3, 5] "
                                "are infinite or beyond float32's range (e.g. 'inf')")

    @pytest.mark.parametrize("on_disk", [False, True])
    def test_regression_names_its_output_after_one_label_and_says_a_labels_file_is_not_read(self, tmp_path,
                                                                                          tiny_tokenizer, on_disk):
        # before: a classification's labels.csv beside a regression's files, or labels=[...], was ignored in silence
        (tmp_path / "train.csv").write_text("text,score\ngood,1.5\nbad,0.5\ngreat,2\nawful,0\n")
        (tmp_path / "val.csv").write_text("text,score\nfine,1\npoor,2\n")
        (tmp_path / "labels.csv").write_text("neg\npos\n")
        kw = dict(label_col="score", regression=True, maxlen=32, device="cpu", on_disk=on_disk)
        with pytest.warns(UserWarning) as said:
            db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, **kw)
        assert db.labels == ["score"]
        assert [str(w.message) for w in said if w.category is UserWarning] == [
            f"label_file {str(tmp_path / 'labels.csv')!r} (labels ['neg', 'pos']) is not read: regression predicts one "
            "number per row, named after its label column; pass label_file=None to leave the file out"]
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, labels=["neg", "pos"], **kw)
        assert str(e.value) == ("labels: regression predicts one number per row, so it takes one name for its output "
                                "(or none: the label column's 'score'); got 2 labels ['neg', 'pos']: pass labels=None, "
                                "or one name, or regression=False to classify")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, **kw).labels == ["score"]
            assert BertDataBunch.from_csv(tmp_path, tiny_tokenizer, labels=["similarity"], **kw).labels == \
                ["similarity"]
            (tmp_path / "labels.csv").write_text("similarity\n")  # one name in the file names the output too
            assert BertDataBunch.from_csv(tmp_path, tiny_tokenizer, **kw).labels == ["similarity"]

    def test_settings_given_twice_or_without_effect_are_said(self, tiny_csv_dir, tiny_tokenizer):
        # before: bs= and batch_size_per_gpu= both given kept one in silence; valid_pct= beside val.csv and
        # chunksize= without on_disk=True were ignored
        from bertlearn import BertLearnError
        with pytest.raises(BertLearnError) as e:
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, bs=4, batch_size_per_gpu=16, device="cpu")
        assert str(e.value) == ("BertDataBunch: bs=4 and batch_size_per_gpu=16 name the same setting (bertlearn's "
                                "name and fast-bert's); give it once")
        assert BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, batch_size_per_gpu=16, max_seq_length=24,
                             device="cpu").train.bs == 16
        with pytest.raises(DataError) as e:
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, valid_pct=0.5, device="cpu")
        assert str(e.value) == ("valid_pct=0.5 holds out a share of the training rows only when no validation set is "
                                "given, and a validation set (val.csv) is: leave valid_pct out, or give no validation "
                                "set")
        held = BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, val_file=None, valid_pct=0.25, device="cpu")
        assert len(held.valid_ds) == 24
        with pytest.warns(UserWarning, match=r"^chunksize=10 has no effect without on_disk=True \(it is the rows read "
                                             r"at a time when the files stream through an on-disk token store\); the "
                                             r"files are read whole$"):
            BertDataBunch.from_csv(tiny_csv_dir, tiny_tokenizer, chunksize=10, device="cpu")

    def test_a_chunked_reader_left_unfinished_closes_its_file(self, tmp_path):
        # before: the reader's file stayed open until the garbage collector found it (a ResourceWarning)
        import gc
        import warnings

        from bertlearn.data.frames import read_csv_chunks
        (tmp_path / "x.csv").write_text("text,label\n" + "a,b\n" * 50)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            chunks = read_csv_chunks(tmp_path / "x.csv", "--input", chunksize=10)
            assert len(next(chunks)) == 10
            chunks.close()
            del chunks
            gc.collect()
        assert [str(w.message) for w in said if w.category is ResourceWarning] == []

    @pytest.mark.parametrize("col", ["label", 1, "text"])
    def test_a_column_name_held_by_two_columns_is_refused(self, tiny_tokenizer, col):
        # before: single-label and regression used the first of two "label" columns without a word; two "text"
        # columns failed with a raw AttributeError
        df = pd.DataFrame([["good film", "pos", "neg"], ["awful", "neg", "pos"]], columns=["text", "label", "label"])
        if col == "text":
            df.columns = ["text", "text", "label"]
        arg = "label_col" if col != "text" else "text_col"
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(df, df, tiny_tokenizer, maxlen=32, device="cpu",
                                  **({"label_col": col} if col != "text" else {}))
        name = "text" if col == "text" else "label"
        assert str(e.value) == (f"{arg}: train_df has 2 columns named {name!r}, so which one is meant is unclear; "
                                "rename them so each name is one column (e.g. df.columns = [...])")

    @pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "on-disk"])
    def test_a_listed_joined_label_no_row_has_is_refused(self, tmp_path, tiny_tokenizer, on_disk):
        # before: a labels.csv written with a header line ("tags") made an output no row has: macro-F1 of perfect
        # predictions was 0.75 (single-label refuses such a labels.csv)
        (tmp_path / "train.csv").write_text("text,tags\ngood,a|b\nbad,b|c\ngreat,a\nawful,c\n")
        (tmp_path / "val.csv").write_text("text,tags\nfine,c\npoor,a|b\n")
        (tmp_path / "labels.csv").write_text("tags\na\nb\nc\n")
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_col="tags", label_delim="|", multi_label=True,
                                   maxlen=32, device="cpu", on_disk=on_disk)
        assert str(e.value) == ("labels (4 given, e.g. from labels.csv) include ['tags'], which never occur in "
                                "train.csv; a label without training examples cannot be learned: remove it (labels.csv "
                                "holds one label per line, no header)")
        (tmp_path / "labels.csv").write_text("a\nb\nc\n")
        db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_col="tags", label_delim="|", multi_label=True,
                                    maxlen=32, device="cpu", on_disk=on_disk, clear_cache=on_disk)
        assert db.labels == ["a", "b", "c"]

    def test_a_zero_label_column_is_said(self, tiny_tokenizer):
        df = pd.DataFrame({"text": ["good film", "awful", "fine", "poor"], "a": [1, 0, 1, 0], "b": [0, 0, 0, 0]})
        with pytest.warns(UserWarning) as seen:
            BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=["a", "b"], multi_label=True, maxlen=32,
                                  device="cpu")
        assert [str(w.message) for w in seen if "positive row" in str(w.message)] == [
            "label column ['b'] of train_df has no positive row, so its output can only learn 'no' (and its F1 is 0 "
            "or undefined); drop the column or add rows that have the label"]

    @pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "on-disk"])
    def test_column_positions_name_the_training_files_columns(self, tmp_path, tiny_tokenizer, on_disk):
        # before: in memory each file's positions were resolved on its own, so a val.csv with its columns in another
        # order had its pairs' texts swapped (on disk and the saved model read val by train's names)
        (tmp_path / "train.csv").write_text("a,b,label\ngood film,fine,x\nbad,poor,y\ngreat,dull,x\nawful,fun,y\n")
        (tmp_path / "val.csv").write_text("b,a,label\nfine,good,x\npoor,bad,y\n")
        db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, text_col=[0, 1], label_col=2, label_file=None,
                                    maxlen=32, device="cpu", on_disk=on_disk)
        ds = db.valid.dataset
        expected = [tiny_tokenizer(a, b)["input_ids"] for a, b in (("good", "fine"), ("bad", "poor"))]
        assert [list(ds.ids[i][:ds.lengths[i]]) for i in range(len(ds))] == expected

    @pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "on-disk"])
    def test_a_validation_file_without_the_training_files_column_names(self, tmp_path, tiny_tokenizer, on_disk):
        # before: in memory a val.csv lacking train's names was read by position on its own columns (here its
        # second text first: the pairs' texts swapped without a word); on disk it was refused without the reason
        (tmp_path / "train.csv").write_text("a,b,label\ngood film,fine,x\nbad,poor,y\ngreat,dull,x\nawful,fun,y\n")
        (tmp_path / "val.csv").write_text("second,first,label\nfine,good,x\npoor,bad,y\n")
        with pytest.raises(DataError) as err:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, text_col=[0, 1], label_col=2, label_file=None,
                                   maxlen=32, device="cpu", on_disk=on_disk)
        assert str(err.value) == (
            "text_col=[0, 1] names train.csv's column(s) ['a', 'b'], and val.csv has no column 'a' (its columns are "
            "['second', 'first', 'label']): columns given by position are found in other data by the training "
            "data's names, as a saved model reads new data; name val.csv's columns ['a', 'b'] as in train.csv")

    @pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "on-disk"])
    def test_test_file_columns_are_the_training_files_by_name(self, tmp_path, tiny_tokenizer, on_disk):
        # before: in memory text_col=0 picked the test file's own first column (its titles), on disk train's "text"
        (tmp_path / "train.csv").write_text("text,label\ngood fun,pos\nawful,neg\ngreat,pos\npoor,neg\n")
        (tmp_path / "val.csv").write_text("text,label\nfine,pos\ndull,neg\n")
        (tmp_path / "test.csv").write_text("title,text\nbad,good fun\nworse,lovely\n")
        db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, text_col=0, label_col=1, test_data="test.csv",
                                    label_file=None, maxlen=32, device="cpu", on_disk=on_disk)
        assert list(db.test.dataset.texts) == ["good fun", "lovely"]

    def test_a_long_text_with_fields_past_the_header(self, tmp_path, tiny_tokenizer):
        # before: the line scan used the csv module's 128 KiB field limit: a raw _csv.Error for a long text
        long_text = "good " * 40_000
        (tmp_path / "train.csv").write_text(f"text,label\n{long_text},pos,note\nawful,neg,\ngreat,pos,\n")
        (tmp_path / "val.csv").write_text("text,label\nfine,pos\ndull,neg\n")
        with pytest.raises(DataError, match=r"train\.csv' line 2 has 3 fields but the header has 2 \(\['text', "
                                            r"'label'\]\); its extra field \['note'\] would be lost"):
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, maxlen=32, device="cpu")

    def test_numbers_written_in_a_csv_text_column(self, tmp_path, tiny_tokenizer):
        df = make_texts(10)
        df.assign(text=range(10)).to_csv(tmp_path / "train.csv", index=False)
        df.to_csv(tmp_path / "val.csv", index=False)
        with pytest.raises(DataError) as e:
            BertDataBunch(tmp_path, tmp_path, tiny_tokenizer)
        assert str(e.value) == ("text_col 'text' in train.csv holds only numbers (e.g. '0' at CSV line 2; lines "
                                "[2, 3, 4, 5, 6, 7, 8, 9, 10, 11]); is it the right column? Texts must be strings")
        df.assign(text=["5"] + df["text"].tolist()[1:]).to_csv(tmp_path / "train.csv", index=False)
        assert BertDataBunch(tmp_path, tmp_path, tiny_tokenizer).train.dataset.texts[0] == "5"  # one number: a text

    def test_error_lines_are_the_csv_lines_after_a_split(self, tmp_path, tiny_tokenizer):
        df = make_texts(40)
        df.loc[30, "label"] = None
        df.to_csv(tmp_path / "train.csv", index=False)
        with pytest.raises(DataError, match=r"has 1 missing labels \(CSV lines \[32\]\)"):
            BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, val_file=None, valid_pct=0.25, seed=0)

    @pytest.mark.parametrize("labels", [None, ["a", "b"]], ids=["labels-read", "labels-given"])
    @pytest.mark.parametrize("part", ["train", "valid"])
    def test_a_missing_delimited_label_is_refused_in_every_part(self, tiny_tokenizer, labels, part):
        # with labels.csv (or in the validation part) an empty cell became a row of no labels
        train = pd.DataFrame({"text": make_texts(4)["text"], "tags": ["a|b", "a", "b", "a"]})
        valid = train.copy()
        (train if part == "train" else valid).loc[1, "tags"] = None
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(train, valid, tiny_tokenizer, label_col="tags", label_delim="|", multi_label=True,
                                  labels=labels)
        assert str(e.value) == f"label_col 'tags' in {part}_df has missing labels (CSV lines [3])"

    def test_a_delimited_label_listed_twice_is_refused(self, tiny_tokenizer):
        train = pd.DataFrame({"text": make_texts(4)["text"], "tags": ["p|n", "x", "p", "n"]})
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(train, train, tiny_tokenizer, label_col="tags", label_delim="|", multi_label=True,
                                  labels=["p", "n", "x", "p"])
        assert str(e.value) == ("the labels for train_df (labels.csv or labels=) list ['p'] more than once; list each "
                                "label once")

    @pytest.mark.parametrize("column", ["review", "score"])
    def test_a_label_column_with_a_class_per_row_is_refused(self, tiny_tokenizer, column):
        # label_col naming the texts (or numbers to regress) made a class per row, then an error listing reviews
        df = make_texts(150, seed=4).assign(text=lambda d: [f"{t} {i}" for i, t in enumerate(d["text"])],
                                            score=[i / 7 for i in range(150)]).assign(review=lambda d: d["text"])
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=column)
        first = _short_text(df[column].iloc[:3])
        fix = "Is it the text column? name the column of labels as label_col=" if column == "review" else \
            "Are they numbers to predict? pass regression=True"
        assert str(e.value) == (f"label_col '{column}' in train_df has 150 distinct values in 150 rows (e.g. {first}): "
                                f"a class per row. {fix}")

    def test_a_tokenizer_that_knows_little_of_the_text_is_named(self, tiny_model_dir):
        # a cased tokenizer over the uncased vocabulary: "Good" is [UNK], and training went on without a word
        from transformers import AutoTokenizer
        cased = AutoTokenizer.from_pretrained(tiny_model_dir, do_lower_case=False)
        df = make_texts(40).assign(text=lambda d: d["text"].str.title())
        with pytest.warns(UserWarning, match=r"^\d+% of the training tokens are '\[UNK\]': the tokenizer does not know "
                                             r"much of this text"):
            BertDataBunch.from_df(df, df, cased)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            BertDataBunch.from_df(make_texts(40), make_texts(40), cased)

    def test_the_text_column_cannot_be_the_label_column(self, tiny_csv_dir, tiny_tokenizer):
        with pytest.raises(DataError) as e:
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, text_col="label", label_col="label",
                          label_file=None)
        assert str(e.value) == ("text_col='label' and label_col='label' both name ['label']; the texts and the labels "
                                "must be different columns")

    def test_a_label_file_asked_for_but_absent_is_refused(self, tiny_csv_dir, tiny_tokenizer):
        # a typo in label_dir or label_file dropped the label order asked for without a word
        (tiny_csv_dir / "labels.csv").write_text("positive\nnegative\n")
        with pytest.raises(DataError) as e:
            BertDataBunch(tiny_csv_dir, tiny_csv_dir / "nolabels", tiny_tokenizer)
        assert str(e.value) == (f"label_file '{tiny_csv_dir / 'nolabels' / 'labels.csv'}' not found (folder "
                                f"'{tiny_csv_dir / 'nolabels'}' does not exist); fix label_dir/label_file, or pass "
                                "label_file=None to take the labels from the training data")
        with pytest.raises(DataError, match=r"label_file '.*labelz.csv' not found \(files there: \['labels.csv', "):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, label_file="labelz.csv")
        assert BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer).labels == ["positive", "negative"]
        (tiny_csv_dir / "labels.csv").unlink()  # the default name, absent from an existing folder: optional
        assert BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer).labels == ["negative", "positive"]

    def test_labels_csv_with_a_label_absent_from_training(self, tiny_csv_dir, tiny_tokenizer):
        (tiny_csv_dir / "labels.csv").write_text("negative\nneutral\npositive\n")
        with pytest.raises(DataError, match=r"include \['neutral'\], which never occur in train.csv; .* remove it"):
            BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer)

    def test_control_characters_emoji_crlf_and_huge_rows(self, tmp_path, tiny_tokenizer):
        rows = ["text,label"]
        for i in range(12):
            rows.append(f"\"good \x92 movie \x00\x07 {i} \U0001F600\U0001F3AC\",positive")
            rows.append(f"\"bad\u200b film \x85 {i}\",negative")
        rows.append("\"" + "the plot was dull " * 200_000 + "\",negative")  # a 3.6 MB row
        raw = "\r\n".join(rows) + "\r\n"
        (tmp_path / "train.csv").write_text(raw, encoding="utf-8", newline="")
        (tmp_path / "val.csv").write_text(raw, encoding="utf-8", newline="")
        db = BertDataBunch(tmp_path, tmp_path, tiny_tokenizer, bs=8, maxlen=32)
        ds = db.train.dataset
        assert len(ds) == 25 and db.labels == ["negative", "positive"]
        assert ds.lengths.max() == 32 and not str(ds.texts[0]).endswith("\r")
        assert all(isinstance(t, str) for t in ds.texts)


from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bertlearn import BertLearnError  # noqa: E402

_NAMES = ["text", "label", "a", "b", "txt"]
_cells = st.one_of(st.text(max_size=12), st.integers(-3, 3), st.none(), st.floats(allow_nan=True, width=32),
                   st.sampled_from(["good movie", "bad film", "0", "1", "x|y", ""]))
_col_choice = st.one_of(st.sampled_from(["text", "label", 0, 1]), st.sampled_from(_NAMES + ["missing"]), st.integers(-5, 5),
                        st.lists(st.one_of(st.sampled_from(_NAMES), st.integers(-3, 3)), max_size=3))


_good_text = st.sampled_from(["good movie", "a bad film", "fun \U0001F600", "it was dull", "great, really"])


@st.composite
def _csv_files(draw):
    mode = draw(st.sampled_from(["arbitrary", "frame", "nearly_valid", "nearly_valid"]))
    if mode == "arbitrary":  # arbitrary text, not necessarily a valid CSV
        return draw(st.text(max_size=200)), draw(st.text(max_size=200))
    if mode == "nearly_valid":  # text + label columns, mostly clean, sometimes a bad cell
        frames = []
        for _ in range(2):
            n = draw(st.integers(1, 10))
            texts = draw(st.lists(st.one_of(_good_text, _good_text, _good_text, _cells), min_size=n, max_size=n))
            labels = draw(st.lists(st.one_of(st.sampled_from(["pos", "neg"]), st.sampled_from(["pos", "neg"]),
                                             st.sampled_from(["pos", "neg"]), _cells), min_size=n, max_size=n))
            frames.append(pd.DataFrame({"text": texts, "label": labels}).to_csv(index=False))
        return frames[0], frames[1]
    cols = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4, unique=True))
    frames = []
    for _ in range(2):
        n = draw(st.integers(0, 8))
        frames.append(pd.DataFrame({c: draw(st.lists(_cells, min_size=n, max_size=n)) for c in cols}).to_csv(index=False))
    return frames[0], frames[1]


class TestFuzz:
    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(files=_csv_files(), text_col=st.one_of(st.just("text"), _col_choice),
           label_col=st.one_of(st.just("label"), _col_choice), multi_label=st.sampled_from([False, False, False, True]),
           regression=st.sampled_from([False, False, False, True]), bs=st.sampled_from([2, 4, 4, 4, 0, -1]),
           dropna=st.booleans())
    def test_builds_or_raises_a_bertlearn_error(self, tmp_path_factory, tiny_tokenizer, files, text_col, label_col,
                                                multi_label, regression, bs, dropna):
        d = tmp_path_factory.mktemp("fuzz")
        (d / "train.csv").write_text(files[0], encoding="utf-8")
        (d / "val.csv").write_text(files[1], encoding="utf-8")
        try:
            db = BertDataBunch(d, d, tiny_tokenizer, text_col=text_col, label_col=label_col, multi_label=multi_label,
                               regression=regression and not multi_label, bs=bs, maxlen=16, dropna=dropna,
                               device="cpu")
        except BertLearnError as e:
            event(f"rejected: {type(e).__name__}")
            return
        event("built")
        assert len(db.train.dataset) > 0 and len(list(db.train)) >= 1


class TestFastBertArguments:
    def test_arguments_without_effect_are_named_once(self, tiny_csv_dir, tiny_tokenizer, monkeypatch):
        import warnings

        import bertlearn.compat
        monkeypatch.setattr(bertlearn.compat, "_said", set())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                BertDataBunch(tiny_csv_dir, tiny_csv_dir, tiny_tokenizer, maxlen=32, multi_gpu=True, model_type="bert",
                              backend="nccl")
        assert [str(w.message) for w in caught] == [
            "BertDataBunch: fast-bert arguments without effect in bertlearn: multi_gpu=True: one process trains on "
            "one device (for several GPUs, launch the script with `accelerate launch` or `torchrun`, which train with "
            "DistributedDataParallel: docs/distributed.md); model_type='bert': the architecture comes from the "
            "checkpoint's config.json, never from a name; backend='nccl': the distributed backend is the launcher's "
            "(nccl on GPUs, gloo on CPUs)"]

    def test_from_df_honours_no_cache_and_clear_cache(self, tiny_tokenizer, tmp_path):
        df, valid = make_texts(40), make_texts(20, seed=2)
        BertDataBunch.from_df(df, valid, tiny_tokenizer, maxlen=32, cache_dir=tmp_path, no_cache=True)
        assert list(tmp_path.glob("tok-*.npz")) == []
        BertDataBunch.from_df(df, valid, tiny_tokenizer, maxlen=32, cache_dir=tmp_path)
        BertDataBunch.from_df(df, valid, tiny_tokenizer, maxlen=24, cache_dir=tmp_path)
        assert len(list(tmp_path.glob("tok-*.npz"))) == 4
        BertDataBunch.from_df(df, valid, tiny_tokenizer, maxlen=24, cache_dir=tmp_path, clear_cache=True)
        assert len(list(tmp_path.glob("tok-*.npz"))) == 2  # the old entries deleted, this build's written
