"""The on-disk token store: same batches and training as in memory, reuse, and memory flat in the row count."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_texts

from bertlearn import BertDataBunch, BertLearner, DataError
from bertlearn.data.store import DiskRows, RaggedRows

ROOT = Path(__file__).resolve().parents[1]


class TestRaggedRows:
    ROWS = [[101, 7, 8, 102], [101, 102], [101, 5, 6, 7, 8, 9, 102], [101, 3, 102]]

    def test_rows_are_stored_back_to_back(self):
        r = RaggedRows.from_lists(self.ROWS, np.uint16, fill=0)
        assert r.values.tolist() == sum(self.ROWS, []) and r.offsets.tolist() == [0, 4, 6, 13, 16]
        assert r.lengths.tolist() == [4, 2, 7, 3] and r.shape == (4, 7) and len(r) == 4
        assert r.nbytes == 16 * 2 + 5 * 8 and r.tolist() == self.ROWS

    def test_indexing_pads_only_the_rows_asked_for(self):
        r = RaggedRows.from_lists(self.ROWS, np.uint16, fill=9)
        assert r[2].tolist() == self.ROWS[2] and r[2, :3].tolist() == [101, 5, 6] and r[-1].tolist() == self.ROWS[3]
        np.testing.assert_array_equal(r[np.array([3, 0]), :6], [[101, 3, 102, 9, 9, 9], [101, 7, 8, 102, 9, 9]])
        np.testing.assert_array_equal(r[np.array([2]), :3], [[101, 5, 6]])  # longer rows are cut
        np.testing.assert_array_equal(r[np.array([1, 3])], [[101, 102, 9], [101, 3, 102]])
        assert r[1:3].tolist() == self.ROWS[1:3] and r[::2].tolist() == self.ROWS[::2]
        np.testing.assert_array_equal(r[0:2, :4], [[101, 7, 8, 102], [101, 102, 9, 9]])
        assert r.take(np.array([3, 3, 0])).tolist() == [self.ROWS[3], self.ROWS[3], self.ROWS[0]]
        with pytest.raises(IndexError, match="row 4 out of range for 4 rows"):
            r[4]
        with pytest.raises(IndexError, match=r"column slices of the form \[:width\], not slice\(1, 3, None\)"):
            r[np.array([0]), 1:3]

    def test_clip_keeps_each_rows_closing_token(self):
        r = RaggedRows.from_lists(self.ROWS, np.uint16).clip(4)
        assert r.tolist() == [[101, 7, 8, 102], [101, 102], [101, 5, 6, 102], [101, 3, 102]]

    def test_from_flat(self):
        values, lengths = np.array(sum(self.ROWS, []), dtype=np.uint32), np.array([4, 2, 7, 3], dtype=np.uint64)
        r = RaggedRows.from_flat(values, lengths, np.uint16, fill=9)
        assert r.tolist() == self.ROWS and r.dtype == np.uint16 and r.fill == 9 and r.offsets.dtype == np.int64
        assert RaggedRows.from_flat(np.zeros(0, np.uint32), np.zeros(0, np.uint64), np.uint16).shape == (0, 0)

    def test_from_padded_and_concat(self):
        m = np.array([[1, 2, 0], [3, 0, 0]])
        a = RaggedRows.from_padded(m, np.array([2, 1]))
        b = RaggedRows.from_lists([[4, 5, 6]], np.int64)
        assert RaggedRows.concat([a, b], np.int32).tolist() == [[1, 2], [3], [4, 5, 6]]
        assert RaggedRows.concat([], np.int32).shape == (0, 0)
        with pytest.raises(ValueError, match=r"offsets must start at 0 and end at len\(values\)=3"):
            RaggedRows(np.zeros(3), np.array([0, 2]))


def test_disk_rows_index_like_ragged_rows_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    mem = RaggedRows.from_lists([rng.integers(1, 30000, size=rng.integers(1, 20)).tolist() for _ in range(50)],
                                np.uint16, fill=7)
    mem.values.tofile(tmp_path / "x.bin")
    rows = DiskRows(tmp_path / "x.bin", mem.offsets, np.uint16, fill=7)
    idx = np.array([7, 3, 49, 3])
    np.testing.assert_array_equal(rows[idx, :5], mem[idx, :5])
    np.testing.assert_array_equal(rows[idx, :30], mem[idx, :30])  # padded with fill
    np.testing.assert_array_equal(rows[idx], mem[idx])
    assert rows[10:20].tolist() == mem[10:20].tolist() and rows[::7].tolist() == mem[::7].tolist()
    np.testing.assert_array_equal(rows[4], mem[4])
    np.testing.assert_array_equal(rows[4, :3], mem[4, :3])
    np.testing.assert_array_equal(rows[-1], mem[49])
    assert rows.shape == mem.shape and len(rows[:0]) == 0 and rows.nbytes == mem.offsets.nbytes
    with pytest.raises(IndexError, match="row 50 out of range for 50 rows"):
        rows[50]
    import pickle
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(rows))[idx], mem[idx])


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_negative_row_indices_count_from_the_end_as_numpy_counts_them(tmp_path, where):
    # before: rows[[-2]] in memory gave the LAST row cut to the one before's length (offsets hold n + 1 entries)
    lists = [[1, 2], [3, 4, 5], [6, 7, 8, 9]]
    rows = RaggedRows.from_lists(lists, np.int64, fill=0)
    if where == "disk":
        rows.values.tofile(tmp_path / "x.bin")
        rows = DiskRows(tmp_path / "x.bin", rows.offsets, np.int64, fill=0)
    np.testing.assert_array_equal(rows[np.array([-2, 0, -1])], [[3, 4, 5, 0], [1, 2, 0, 0], [6, 7, 8, 9]])
    np.testing.assert_array_equal(rows[np.array([-3]), :2], [[1, 2]])
    if where == "memory":
        assert rows.take(np.array([-2])).tolist() == [[3, 4, 5]]
    with pytest.raises(IndexError, match="row -4 out of range for 3 rows"):
        rows[np.array([0, -4])]


@pytest.fixture
def csv_dir(tmp_path):
    make_texts(200, seed=1).to_csv(tmp_path / "train.csv", index=False)
    make_texts(48, seed=2).to_csv(tmp_path / "val.csv", index=False)
    return tmp_path


def test_on_disk_matches_in_memory_batches_and_training(csv_dir, tiny_model_dir, tmp_path):
    kw = dict(bs=16, maxlen=40, device="cpu", seed=0, label_file=None)
    mem = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), no_cache=True, **kw)
    disk = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, chunksize=37, **kw)
    assert disk.labels == mem.labels and len(disk.train_ds) == 200
    assert isinstance(disk.train_ds.ids, DiskRows)
    np.testing.assert_array_equal(disk.train_ds.lengths, mem.train_ds.lengths)
    np.testing.assert_array_equal(disk.train_ds.targets, mem.train_ds.targets)
    w = mem.train_ds.ids.shape[1]
    np.testing.assert_array_equal(disk.train_ds.ids[np.arange(200), :w], mem.train_ds.ids[np.arange(200), :w])
    weights = []
    for db in (mem, disk):
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), None, "cpu", None, seed=0,
                                                    output_dir=tmp_path / str(len(weights)))
        with learner.no_bar(), learner.no_logging():
            learner.fit(1, lr=1e-3)
        weights.append(learner.model.state_dict())
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name])


def test_labels_only_dropped_rows_had_are_not_outputs_on_disk_as_in_memory(csv_dir, tiny_model_dir):
    # before: on disk, 'neutral' (only on rows dropna drops) became a third output no row trained, and 'positive'
    # moved from index 1 to 2; in memory the labels were ['negative', 'positive']
    import pandas as pd
    rows = pd.concat([make_texts(40, seed=1), pd.DataFrame({"text": ["", "  "], "label": ["neutral", "neutral"]})])
    rows.to_csv(csv_dir / "train.csv", index=False)
    kw = dict(bs=16, maxlen=40, device="cpu", label_file=None, dropna=True)
    mem = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), no_cache=True, **kw)
    disk = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, chunksize=17, **kw)
    assert disk.labels == mem.labels == ["negative", "positive"]
    np.testing.assert_array_equal(disk.train_ds.targets, mem.train_ds.targets)
    assert len(disk.train_ds) == 40


def test_multi_labels_only_dropped_rows_had_are_not_outputs_on_disk_either(csv_dir, tiny_model_dir):
    # the label_delim path: before, on disk refused the file (a label no kept row has), in memory read it
    import pandas as pd
    rows = make_texts(40, seed=1)
    rows["label"] = [l if i % 3 else f"{l}|fun" for i, l in enumerate(rows.label)]
    rows = pd.concat([rows, pd.DataFrame({"text": [""], "label": ["neutral|fun"]})])
    rows.to_csv(csv_dir / "train.csv", index=False)
    kw = dict(bs=16, maxlen=40, device="cpu", label_file=None, dropna=True, multi_label=True, label_delim="|")
    mem = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), no_cache=True, **kw)
    disk = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, chunksize=17, **kw)
    assert disk.labels == mem.labels == ["fun", "negative", "positive"]
    np.testing.assert_array_equal(disk.train_ds.targets, mem.train_ds.targets)


def test_store_is_reused_until_the_file_changes(csv_dir, tiny_model_dir, monkeypatch):
    kw = dict(bs=16, maxlen=40, device="cpu", on_disk=True, label_file=None)
    BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), **kw)
    import bertlearn.data.bunch as store  # where the factory looks build_store up
    calls = []
    real = store.build_store
    monkeypatch.setattr(store, "build_store", lambda *a, **k: calls.append(1) or real(*a, **k))
    BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), **kw)
    assert calls == []
    make_texts(120, seed=9).to_csv(csv_dir / "train.csv", index=False)
    db = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), **kw)
    assert calls == [1] and len(db.train_ds) == 120


def test_store_key_covers_the_tokenizers_truncation_side(csv_dir, tiny_model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    kw = dict(bs=16, maxlen=6, device="cpu", label_file=None)
    right = BertDataBunch.from_csv(csv_dir, tok, on_disk=True, **kw).train_ds
    tok.truncation_side = "left"
    left = BertDataBunch.from_csv(csv_dir, tok, on_disk=True, **kw).train_ds
    fresh = BertDataBunch.from_csv(csv_dir, tok, no_cache=True, **kw).train_ds
    rows = np.arange(len(fresh))
    np.testing.assert_array_equal(left.ids[rows, :6], fresh.ids[rows, :6])
    assert not np.array_equal(left.ids[rows, :6], right.ids[rows, :6])  # the right-cut store was not reused


def test_on_disk_errors_name_the_problem(csv_dir, tiny_model_dir):
    with pytest.raises(DataError, match="on_disk=True needs a val_file"):
        BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), val_file=None, on_disk=True)
    with pytest.raises(DataError, match=r"on_disk=True does not take \['long_text'\]"):
        BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, long_text="sliding_window")
    with pytest.raises(DataError, match=r"text_col: column 'body' not in train.csv; columns are \['text', 'label'\]"):
        BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, text_col="body")


@pytest.mark.slow
def test_peak_memory_stays_flat_as_the_file_grows(shared_data, tiny_model_dir, tmp_path):
    """50k versus 300k resampled Sentiment140 rows: tokenize to the store and train in one fresh process, stream
    `bertlearn predict` over the whole file in another; each peak RSS may grow by the per-row arrays (lengths,
    targets, the epoch's order: about 40 bytes a row), not by the file (the in-memory `from_csv` grows by 80-100
    MB here). Predicting in the training process, as this test once did, made the peak swing by 30-70 MB
    between runs of the same sizes (the training's heap under the predictor's chunks)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import streaming
    finally:
        sys.path.pop(0)
    results = {}
    for n in (50_000, 300_000):
        folder = tmp_path / f"rows{n}"
        folder.mkdir()
        streaming.make_csv(folder / "train.csv", n)
        streaming.make_csv(folder / "val.csv", 500, seed=1)
        results[n] = streaming.run(folder, "disk", str(tiny_model_dir), steps=10, predict=True)
    small, large = results[50_000], results[300_000]
    assert large["predict_rows"] == 300_000
    file_growth = ((tmp_path / "rows300000" / "train.csv").stat().st_size -
                   (tmp_path / "rows50000" / "train.csv").stat().st_size) / 2**20
    for key in ("peak_rss_mb", "predict_peak_rss_mb"):  # training process, prediction process
        growth = large[key] - small[key]
        assert growth < 40, f"{key} grew {growth:.0f} MB for {file_growth:.0f} MB more CSV: {results}"


def test_store_is_rebuilt_for_other_bytes_with_the_same_size_and_time(csv_dir, tiny_model_dir):
    # a copy that keeps size and modification time (cp -p, rsync) reused the old store's targets
    import os
    kw = dict(bs=16, maxlen=40, device="cpu", on_disk=True, label_file=None)
    first = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), **kw)
    path = csv_dir / "train.csv"
    st = path.stat()
    text = path.read_text()
    swapped = text.replace("positive", "POSITIVE").replace("negative", "positive").replace("POSITIVE", "negative")
    assert len(swapped) == len(text)
    path.write_text(swapped)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), **kw)
    fresh = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), no_cache=True, **{**kw, "on_disk": False})
    np.testing.assert_array_equal(again.train_ds.targets, fresh.train_ds.targets)
    np.testing.assert_array_equal(again.train_ds.targets, 1 - first.train_ds.targets)


def test_store_key_covers_how_the_file_is_read(tmp_path, tiny_model_dir):
    # a UTF-8 file read once as latin-1 ("cafÃ©") kept that store for encoding="utf-8"
    df = make_texts(20, seed=1).assign(text=lambda d: "café " + d["text"])
    for name in ("train.csv", "val.csv"):
        df.to_csv(tmp_path / name, index=False)
    kw = dict(bs=16, maxlen=40, device="cpu", label_file=None)
    latin = BertDataBunch.from_csv(tmp_path, str(tiny_model_dir), encoding="latin-1", on_disk=True, **kw).train_ds
    utf8 = BertDataBunch.from_csv(tmp_path, str(tiny_model_dir), encoding="utf-8", on_disk=True, **kw).train_ds
    fresh = BertDataBunch.from_csv(tmp_path, str(tiny_model_dir), no_cache=True, **kw).train_ds
    rows, w = np.arange(20), int(fresh.lengths.max())
    np.testing.assert_array_equal(utf8.ids[rows, :w], fresh.ids[rows, :w])
    assert not np.array_equal(latin.lengths, fresh.lengths)


def test_a_store_written_under_other_reading_rules_is_rebuilt(csv_dir, tiny_model_dir, monkeypatch):
    # the key covered the file, tokenizer and settings, not the rules: a store written before a rule changed (here
    # the blank-text rule: a zero-width space is no text) was reused after it, its dropped row still in it
    import bertlearn.data.bunch as bunch
    import bertlearn.data.frames as frames
    import bertlearn.data.store as store
    import bertlearn.version as version
    df = make_texts(40, seed=1)
    df.loc[3, "text"] = "\u200b"
    df.to_csv(csv_dir / "train.csv", index=False)
    kw = dict(bs=16, maxlen=40, device="cpu", label_file=None, dropna=True)
    with monkeypatch.context() as old:
        old_rule = lambda s: s.isna().to_numpy() | (s.astype(str).str.strip() == "").to_numpy()
        old.setattr(frames, "empty_texts", old_rule)
        old.setattr(bunch, "empty_texts", old_rule)
        old.setattr(store, "ROWS_REVISION", store.ROWS_REVISION - 1)
        assert len(BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, **kw).train_ds) == 40
    assert len(BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), no_cache=True, **kw).train_ds) == 39
    assert len(BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, **kw).train_ds) == 39
    # and a release's version is in the key as well
    key = store.store_key(csv_dir / "train.csv", {"maxlen": 40})
    monkeypatch.setattr(version, "__version__", "9.9.9")
    assert store.store_key(csv_dir / "train.csv", {"maxlen": 40}) != key


def test_on_disk_errors_name_the_csv_line_not_the_chunks_row(csv_dir, tiny_model_dir):
    df = make_texts(200, seed=1)
    df.loc[4, "text"] = None  # CSV line 6, in the third chunk of two rows
    df.to_csv(csv_dir / "train.csv", index=False)
    with pytest.raises(DataError, match=r"has 1 empty or missing texts \(CSV lines \[6\]\)"):
        BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), bs=16, device="cpu", on_disk=True, chunksize=2,
                               label_file=None)


def test_a_stores_digest_is_the_in_memory_rows_digest(csv_dir, tiny_model_dir):
    # what a checkpoint records of its training data: the same rows on disk or in memory resume into each other
    from bertlearn.checkpoint import data_digest
    kw = dict(bs=16, maxlen=40, device="cpu", seed=0, label_file=None)
    mem = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), no_cache=True, **kw).train_ds
    disk = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, chunksize=37, **kw).train_ds
    assert disk.ids.digest() == mem.ids.digest() and data_digest(disk) == data_digest(mem)
    mem.targets[0] = 1 - mem.targets[0]
    assert data_digest(disk) != data_digest(mem)


def test_numbers_in_the_text_column_are_judged_over_the_whole_file(csv_dir, tiny_model_dir):
    # a chunk of numbers only was refused as "the wrong column" while the whole file (and the in-memory path) passed
    df = make_texts(40, seed=3)
    df.loc[:9, "text"] = [str(i) for i in range(10)]
    df.to_csv(csv_dir / "train.csv", index=False)
    kw = dict(bs=16, device="cpu", label_file=None)
    memory = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), no_cache=True, **kw)
    for chunksize in (5, 100):
        disk = BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, chunksize=chunksize, **kw)
        np.testing.assert_array_equal(disk.train_ds.lengths, memory.train_ds.lengths)
    df.assign(text=[str(i) for i in range(40)]).to_csv(csv_dir / "train.csv", index=False)
    for chunksize in (5, 100):
        with pytest.raises(DataError) as e:
            BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), on_disk=True, chunksize=chunksize, **kw)
        assert str(e.value).startswith("text_col 'text' in train.csv (rows from 1) holds only numbers (e.g. '0' at "
                                       "CSV line 2; lines [2, 3, 4,")


@pytest.mark.parametrize("labels, message", [
    ("negative\npositive\nneutral\n", r"^labels \(3 given, e\.g\. from labels\.csv\) include \['neutral'\], which never "
                                      r"occur in train\.csv; a class without training examples cannot be learned: "
                                      r"remove it$"),
    ("negative\npositive\nnegative\n", r"^labels contain duplicates: \['negative'\]$")])
def test_a_label_file_is_checked_on_disk_as_in_memory(csv_dir, tiny_model_dir, labels, message):
    # on disk the given labels went unchecked: a class never trained, or a duplicate that took the rows of the first
    (csv_dir / "labels.csv").write_text(labels)
    for on_disk in (False, True):
        with pytest.raises(DataError, match=message):
            BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), bs=16, device="cpu", on_disk=on_disk)


def test_on_disk_reading_errors_say_the_fix(csv_dir, tiny_model_dir):
    kw = dict(bs=16, device="cpu", on_disk=True, label_file=None)
    (csv_dir / "train.csv").write_bytes("text,label\n".encode() + "caf\xe9 good film,positive\nbad film,negative\n"
                                        .encode("cp1252") * 4)
    with pytest.raises(DataError) as e:
        BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), **kw)
    assert str(e.value) == (f"{str(csv_dir / 'train.csv')!r} cannot be decoded as 'UTF-8'; pass encoding='cp1252' if "
                            "it comes from a Windows tool (what the in-memory path falls back to), or the file's "
                            "encoding=")
    assert BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), encoding="cp1252", **kw).labels == ["negative",
                                                                                                   "positive"]
    (csv_dir / "train.csv").write_text("text,label\ngood film,positive\nbad, film,negative\n")
    with pytest.raises(DataError, match=r"train\.csv' is not a valid CSV \(.*\); check sep= and quoting$"):
        BertDataBunch.from_csv(csv_dir, str(tiny_model_dir), **kw)
