"""bertlearn.data.frames: how CSV files and DataFrames are read into texts, label columns and targets; each input
that was read wrong without a word is read as written or refused with the file, the line and the fix."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_texts

from bertlearn import BertDataBunch, DataError
from bertlearn.data import read_csv
from bertlearn.data.frames import read_csv_chunks, resolve_columns

# a TSV of texts as typed: the first and fifth start with a quote, two hold one inside
TYPED = ['"the movie\tpositive', 'boring film\tnegative', 'a "great" film\tpositive', 'dull plot\tnegative',
         '"bad" acting really\tnegative', 'fun "film\tpositive']


def _typed_tsv(folder, times=5):
    body = "text\tlabel\n" + "\n".join(TYPED * times) + "\n"
    for name in ("train.tsv", "val.tsv"):
        (folder / name).write_text(body)
    return [line.split("\t")[0] for line in TYPED * times]


def _stray_quote(path, line, shown, sep):
    return (f"{path}: '{path}' line {line} ({shown!r}) has a field that starts with a quote (\") that does not "
            "end the field, so a CSV reader drops those quotes and reads on to the next quote, across lines: the "
            "text would change, or rows merge into one cell. If the file was written without quoting (texts as "
            "typed, quotes and all), pass quoting=csv.QUOTE_NONE (--quoting none); otherwise put that field in "
            'quotes and double the quotes inside it (the text "bad" acting is written """bad"" acting")')


class TestQuotes:
    def test_a_tsv_text_starting_with_a_quote_is_refused_naming_the_line(self, tmp_path, tiny_tokenizer):
        # before: the quote opened a quoted field that ran over the next rows: 30 rows read as 20, one text
        # 'the movie\tpositive\nboring film\tnegative\na great" film' with one label, '"bad" acting' as 'bad acting'
        _typed_tsv(tmp_path)
        path = tmp_path / "train.tsv"
        with pytest.raises(DataError) as e:
            read_csv(path, str(path), sep="\t")
        assert str(e.value) == _stray_quote(str(path), 2, '"the movie\tpositive', "\t")
        for on_disk in (False, True):
            with pytest.raises(DataError) as e:
                BertDataBunch.from_csv(tmp_path, tiny_tokenizer, train_file="train.tsv", val_file="val.tsv",
                                       sep="\t", label_file=None, maxlen=32, device="cpu", on_disk=on_disk)
            assert str(e.value) == _stray_quote(str(path), 2, '"the movie\tpositive', "\t").replace(
                f"{path}: '", "train_file: '", 1)
        with pytest.raises(DataError, match=r"line 2 \('\"the movie\\tpositive'\) has a field that starts"):
            list(read_csv_chunks(path, "--input", sep="\t"))

    def test_quote_none_reads_a_typed_tsv_as_written(self, tmp_path, tiny_tokenizer):
        texts = _typed_tsv(tmp_path)
        df = read_csv(tmp_path / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE)
        assert df["text"].tolist() == texts and len(df) == 30
        chunks = list(read_csv_chunks(tmp_path / "train.tsv", sep="\t", chunksize=7, quoting=csv.QUOTE_NONE))
        assert pd.concat(chunks)["text"].tolist() == texts
        for on_disk in (False, True):
            db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, train_file="train.tsv", val_file="val.tsv",
                                        sep="\t", quoting=csv.QUOTE_NONE, label_file=None, maxlen=32, device="cpu",
                                        on_disk=on_disk)
            assert len(db.train.dataset) == 30 and db.labels == ["negative", "positive"]
            assert db.train.dataset.targets.tolist() == [int(l.endswith("positive")) for l in TYPED * 5]

    def test_a_csv_cell_quoted_then_continued_is_refused(self, tmp_path):
        # before: '"Great" said everyone' was read as 'Great said everyone'
        path = tmp_path / "c.csv"
        path.write_text('text,label\nok film,negative\n"Great" said everyone,positive\n')
        with pytest.raises(DataError) as e:
            read_csv(path, "train_file")
        assert str(e.value) == _stray_quote(str(path), 3, '"Great" said everyone,positive', ",").replace(
            f"{path}: '", "train_file: '", 1)
        assert read_csv(path, quoting=csv.QUOTE_NONE)["text"].tolist() == ["ok film", '"Great" said everyone']

    def test_rows_merged_by_a_quote_that_closes_later_are_said(self, tmp_path):
        # the quote opened on line 2 closes on line 4 right before a tab: valid quoting, three rows in one cell,
        # read without a word before
        path = tmp_path / "m.tsv"
        path.write_text('text\tlabel\n"the movie\tpositive\nboring film\tnegative\ngreat film"\tpositive\n'
                        'ok\tnegative\n')
        with pytest.warns(UserWarning) as caught:
            assert len(read_csv(path, "val_file", sep="\t")) == 2
        assert [str(w.message) for w in caught] == [
            f"val_file: '{path}' lines 2-4 are read as one text, a quoted field holding the separator '\\t' and "
            "line breaks ('the movie\\tpositive\\nboring film\\tnegative\\ngreat film'). Right for a multi-line "
            "text; but rows merged by a stray quote (a text starting with a quote) look the same: if those lines "
            "are separate rows, pass quoting=csv.QUOTE_NONE (--quoting none) for a file written without quoting, or "
            "put the text that starts with a quote in quotes and double the quotes inside it (the text \"bad\" "
            'acting is written """bad"" acting")']
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)) == 4

    def test_a_multi_line_text_with_tabs_written_by_pandas_reads_as_written(self, tmp_path):
        # a quoting writer's text holding a tab and a line break (code, a pasted table) was refused as merged rows,
        # with no way to read the file (QUOTE_NONE splits it)
        df = pd.DataFrame({"text": ["a line\tcol\nnext line", "plain"], "label": ["x", "y"]})
        df.to_csv(tmp_path / "f.tsv", sep="\t", index=False)
        with pytest.warns(UserWarning, match="lines 2-3 are read as one text"):
            got = read_csv(tmp_path / "f.tsv", sep="\t")
        assert got["text"].tolist() == df["text"].tolist()

    @pytest.mark.parametrize("sep", [",", "\t"])
    def test_files_pandas_writes_read_back_exactly(self, tmp_path, sep):
        df = pd.DataFrame({"text": ['say "hi" there', '"quoted" start', "a, b", "x\ty", 'two\nlines "q"',
                                    "para one, and\npara two", ""], "label": list("abababa")})
        df.to_csv(tmp_path / "f.csv", sep=sep, index=False)
        got = read_csv(tmp_path / "f.csv", sep=sep)
        assert got["text"].fillna("").tolist() == df["text"].tolist() and got["label"].tolist() == list("abababa")

    def test_quoting_takes_the_csv_constants(self, tmp_path, tiny_tokenizer):
        _typed_tsv(tmp_path)
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, train_file="train.tsv", val_file="val.tsv", sep="\t",
                                   quoting="none")
        assert str(e.value) == ("quoting='none': pass csv.QUOTE_MINIMAL (the default: a field in double quotes is "
                                "quoted, its quotes doubled) or csv.QUOTE_NONE (a file written without quoting: "
                                "every quote is part of its field)")


class TestHeader:
    def test_a_header_naming_a_column_twice_is_refused(self, tmp_path, tiny_tokenizer):
        # before: pandas renamed the second "label.1" and the first was trained on without a word
        df = make_texts(40)
        for name in ("train.csv", "val.csv"):
            pd.DataFrame({"text": df.text, "a": "positive", "b": df.label}).to_csv(
                tmp_path / name, index=False, header=["text", "label", "label"])
        said = (f"train_file: '{tmp_path / 'train.csv'}' has 2 columns named 'label' in its header (['text', "
                "'label', 'label']), so which one is meant is unclear (pandas renames the second 'label.1' and picks "
                "the first); rename them in the header so each name is one column")
        for on_disk in (False, True):
            with pytest.raises(DataError) as e:
                BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, maxlen=32, device="cpu",
                                       on_disk=on_disk)
            assert str(e.value) == said
        chunk = next(read_csv_chunks(tmp_path / "val.csv", "--input"))
        for picked in ("label", "label.1", 2):  # the name, pandas' rename of the second, its position
            with pytest.raises(DataError, match="has 2 columns named 'label' in its header"):
                resolve_columns(chunk, picked, "label_col", "val.csv")

    def test_a_repeated_name_nobody_picks_is_read(self, tmp_path, tiny_tokenizer):
        # only the columns read are ambiguous: two "note" columns beside text and label are nobody's choice
        df = make_texts(40)
        for name in ("train.csv", "val.csv"):
            pd.DataFrame({"text": df.text, "label": df.label, "a": 1, "b": 2}).to_csv(
                tmp_path / name, index=False, header=["text", "label", "note", "note"])
        for on_disk in (False, True):
            db = BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, maxlen=32, device="cpu",
                                        on_disk=on_disk)
            assert db.train.dataset.targets.tolist() == [int(l == "positive") for l in df.label]

    def test_empty_names_are_not_repeats(self, tmp_path):
        (tmp_path / "f.csv").write_text("text,label,,\ngood,a,,\nbad,b,,\n")
        assert list(read_csv(tmp_path / "f.csv").columns[:2]) == ["text", "label"]


class TestRowNames:
    ROWS = ["Paris, France,europe", "Lyon, France,europe", "Tokyo, Japan,asia", "Osaka, Japan,asia"]

    def test_a_comma_in_every_text_is_not_read_as_row_names(self, tmp_path, tiny_tokenizer):
        # before: "Paris" became the index and the model trained on " France" labelled " France"
        for name in ("train.csv", "val.csv"):
            (tmp_path / name).write_text("text,label\n" + "\n".join(self.ROWS * 3) + "\n")
        said = (f"train_file: '{tmp_path / 'train.csv'}' line 2 has 3 fields but the header has 2 (['text', "
                "'label']); its extra field ['europe'] would be lost. Quote the field that holds a ',' "
                '(e.g. "a, b"), or fix the row to 2 fields')
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(tmp_path, tiny_tokenizer, label_file=None, maxlen=32, device="cpu")
        assert str(e.value) == said

    def test_unique_row_names_are_read_as_the_index_and_said(self, tmp_path):
        (tmp_path / "r.csv").write_text("text,label\n1,good film,pos\n2,bad film,neg\n3,fine film,pos\n")
        with pytest.warns(UserWarning) as caught:
            df = read_csv(tmp_path / "r.csv")
        assert [str(w.message) for w in caught] == [
            "r.csv: every row has one field more than the header, and those first fields are unique (e.g. ['1', "
            "'2', '3']): read as row names (as R's write.table writes them), not as data; the columns are the "
            "header's ['text', 'label']"]
        assert df["text"].tolist() == ["good film", "bad film", "fine film"]
        with pytest.warns(UserWarning, match="read as row names"):
            chunks = list(read_csv_chunks(tmp_path / "r.csv", chunksize=2))
        assert pd.concat(chunks)["label"].tolist() == ["pos", "neg", "pos"]


class TestLabelLists:
    """A label column of lists (datasets' to_pandas of a Sequence column): each element one label."""

    @staticmethod
    def _frame(arrays: bool = False):
        df = make_texts(40)
        tags = [["good", "bad"][: (i % 2) + 1] if i % 3 else ["fun"] for i in range(40)]
        df["tags"] = [np.array([i % 3, 27]) if i % 2 else np.array([i % 3]) for i in range(40)] if arrays else tags
        return df, tags

    @pytest.mark.parametrize("kw", [dict(label_delim=","), dict(label_delim="|"), dict(multi_label=True)])
    def test_lists_are_the_rows_labels(self, tiny_tokenizer, kw):
        # before: with label_delim the labels were pieces of the lists' repr ("['good'", " 'bad']"); with
        # multi_label=True alone the column was read as one 0/1 column
        df, tags = self._frame()
        db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="tags", maxlen=32, device="cpu", **kw)
        assert db.labels == ["bad", "fun", "good"]
        assert db.train.dataset.targets.tolist() == [[float(l in t) for l in db.labels] for t in tags]
        # a labelled frame read as training read it
        items = db.test_dl(df.iloc[:6], with_labels=True).dataset.targets
        assert items.tolist() == db.train.dataset.targets[:6].tolist()

    def test_arrays_of_ids_are_labels_by_their_text(self, tiny_tokenizer):
        df, _ = self._frame(arrays=True)
        for delim in (" ", ","):
            db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="tags", label_delim=delim, maxlen=32,
                                       device="cpu")
            assert db.labels == ["0", "1", "2", "27"]
            assert db.train.dataset.targets[:2].tolist() == [[1, 0, 0, 0], [0, 1, 0, 1]]

    def test_a_single_label_task_refuses_lists(self, tiny_tokenizer):
        # before: TypeError: unhashable type: 'list'
        df, _ = self._frame()
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(df, df, tiny_tokenizer, label_col="tags", maxlen=32, device="cpu")
        assert str(e.value) == ("label_col 'tags' in train_df holds lists of labels (e.g. ['fun']), and this is a "
                                "single-label task (one label per row); pass multi_label=True to read each list as "
                                "the row's set of labels")


class TestColumns:
    def test_a_set_of_label_columns_is_refused(self, tiny_tokenizer):
        # a set's order follows string hashing (PYTHONHASHSEED): the model's outputs came in another order each run
        df = make_texts(40).assign(good=1, fun=0)
        with pytest.raises(DataError) as e:
            BertDataBunch.from_df(df, df, tiny_tokenizer, label_col={"good", "fun"}, multi_label=True, maxlen=32,
                                  device="cpu")
        assert str(e.value).endswith("is a set, whose order changes from run to run, and the columns' order is the "
                                     "model's output order; pass a list (e.g. ['fun', 'good'])")

    def test_an_integer_name_wins_over_a_position(self, tiny_tokenizer):
        # before: columns [0, 2, 1] with text_col=1, label_col=2 took the ids as texts (positions)
        df = make_texts(40)
        raw = pd.DataFrame({0: range(40), 1: df.text, 2: df.label})[[0, 2, 1]]
        db = BertDataBunch.from_df(raw, raw, tiny_tokenizer, text_col=1, label_col=2, maxlen=32, device="cpu")
        assert db.labels == ["negative", "positive"] and db.columns["text_col"] == [1]
        assert db.train.dataset.texts.tolist() == df.text.tolist()
        # a position where no column has that name, as before
        named = raw.rename(columns={0: "id", 2: "label", 1: "text"})
        db = BertDataBunch.from_df(named, named, tiny_tokenizer, text_col=2, label_col=1, maxlen=32, device="cpu")
        assert db.columns["text_col"] == ["text"] and db.columns["label_col"] == ["label"]

    @pytest.mark.parametrize("kind", ["index", "array", "series"])
    def test_label_columns_as_any_sequence_of_names(self, tiny_tokenizer, kind):
        # before: ValueError: The truth value of an array with more than one element is ambiguous
        df = make_texts(40)
        df["good"] = (df.label == "positive").astype(int)
        df["bad"] = 1 - df.good
        df["fun"] = [i % 2 for i in range(40)]
        df = df.drop(columns="label")
        given = {"index": df.columns[1:], "array": np.array(["good", "bad", "fun"]),
                 "series": pd.Series(["good", "bad", "fun"])}[kind]
        db = BertDataBunch.from_df(df, df, tiny_tokenizer, label_col=given, multi_label=True, maxlen=32,
                                   device="cpu")
        assert db.labels == ["good", "bad", "fun"] and db.columns["label_col"] == ["good", "bad", "fun"]
        assert all(type(c) is str for c in db.columns["label_col"])
