"""Where token rows live: in memory as one flat ragged array, or on disk for files larger than memory.

`RaggedRows` keeps every row's ids back to back in one array plus row offsets, so memory is the number of
tokens, not rows x longest row; a batch is gathered and padded to its own longest row in one numpy call.
`DiskRows` is the same layout in a file.

`BertDataBunch.from_csv(..., on_disk=True)` reads the CSV in chunks of `chunksize` rows, tokenizes each chunk
with the fast tokenizer and appends its rows' ids to a file; a batch then reads just its rows with positional
reads. Kept in memory per row: its offset, token count and target (about 16 bytes), so memory does not grow
with the file beyond that. Reads go through `os.pread` rather than a memory map, so the pages a long epoch
touches are not charged to the process.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .. import version
from ..atomic import atomic_dir
from ..errors import DataError

__all__ = ["RaggedRows", "DiskRows", "build_store", "load_store", "store_key", "ROWS_REVISION", "rows_revision"]

_FORMAT = 2  # 2: ragged rows (no padding on disk)

# The rules that turn a file into rows (which rows are read or dropped, how texts are encoded). Bump it with every
# change that gives a file other rows: a store or cache key covers the file, the tokenizer and the settings, not
# the code, so one written before such a change was reused after it (the blank-text rule of 078eef1 kept rows
# that now are refused; right-padding whatever the tokenizer's padding_side kept left-padded rows).
# 3: blank texts (only invisible characters) are empty texts
ROWS_REVISION = 3


def rows_revision() -> str:
    """What keys of stored rows carry besides their inputs: the package version and `ROWS_REVISION`."""
    return f"{version.__version__}/{ROWS_REVISION}"


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """(n + 1,) int64 row boundaries for rows of `lengths` entries."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


_DIGEST_BLOCK = 1 << 22  # entries hashed at a time: a block's int64 copy, not the whole set's


class _Rows:
    """Indexing shared by `RaggedRows` and `DiskRows`; they provide `lengths`, `row`, `padded` and `_slice`."""

    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, longest row): the padded matrix these rows stand for."""
        return len(self), int(self.lengths.max(initial=0))

    def _index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        return int(i) % len(self)

    def _indices(self, idx: Any) -> np.ndarray:
        # as numpy reads them: offsets hold one entry more than there are rows, so offsets[-2] was the LAST row's
        # start (rows[[-2]] gave the last row cut to the one before's length)
        idx = np.asarray(idx, dtype=np.int64)
        n = len(self)
        if idx.size == 0 or (idx.min() >= 0 and idx.max() < n):  # a batch's rows: two reductions, no copies
            return idx
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"row {int(idx[bad][0])} out of range for {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def __getitem__(self, key: Any) -> Any:
        rows, cols = (key if isinstance(key, tuple) else (key, None))
        if isinstance(rows, slice):
            sub = self._slice(*rows.indices(len(self)))
            return sub if cols is None else sub.padded(np.arange(len(sub)), _width(cols, sub.shape[1]))
        if np.isscalar(rows):
            row = self.row(int(rows))
            return row if cols is None else row[cols]
        idx = self._indices(rows)
        return self.padded(idx, _width(cols, int(self.lengths[idx].max(initial=0))))


class RaggedRows(_Rows):
    """Rows of different lengths stored back to back, indexed like a padded matrix: `rows[i]` (row i, unpadded),
    `rows[idx_array, :width]` (a (len(idx), width) matrix padded with `fill`), `rows[a:b]` (a RaggedRows).

    Args:
        values: all rows' entries, concatenated.
        offsets: (n + 1,) int64, row i is `values[offsets[i]:offsets[i + 1]]`.
        fill: the value padded rows are filled with (the tokenizer's pad id for token ids).
    """

    def __init__(self, values: np.ndarray, offsets: np.ndarray, *, fill: int = 0):
        self.values, self.offsets, self.fill = values, np.asarray(offsets, dtype=np.int64), int(fill)
        if len(self.offsets) == 0 or self.offsets[0] != 0 or self.offsets[-1] != len(values):
            raise ValueError(f"offsets must start at 0 and end at len(values)={len(values)}")
        self.lengths = np.diff(self.offsets).astype(np.int32)

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], dtype: Any, *, fill: int = 0) -> "RaggedRows":
        """Rows given as Python lists (what the fast tokenizer returns).

        Args:
            rows: one sequence of ints per row.
            dtype: the numpy dtype to store.
            fill: the value shorter rows are filled with when padded.
        """
        offsets = _offsets(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))
        values = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=int(offsets[-1]))
        return cls(values, offsets, fill=fill)

    @classmethod
    def from_flat(cls, values: np.ndarray, lengths: np.ndarray, dtype: Any, *, fill: int = 0) -> "RaggedRows":
        """Rows given as all entries back to back plus each row's length (what tokie's batch call returns).

        Args:
            values: all rows' entries, back to back.
            lengths: each row's length.
            dtype: the numpy dtype to store.
            fill: the value shorter rows are filled with when padded.
        """
        return cls(np.asarray(values).astype(dtype, copy=False), _offsets(lengths), fill=fill)

    @classmethod
    def from_padded(cls, matrix: np.ndarray, lengths: np.ndarray, *, fill: int = 0) -> "RaggedRows":
        """Rows of a padded (n, width) matrix, each cut to its length.

        Args:
            matrix: (n, width) rows, padded.
            lengths: each row's length.
            fill: the value shorter rows are filled with when padded.
        """
        lengths = np.asarray(lengths, dtype=np.int64)
        keep = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
        return cls(np.ascontiguousarray(matrix[keep]), _offsets(lengths), fill=fill)

    @classmethod
    def concat(cls, parts: Sequence["RaggedRows"], dtype: Any, *, fill: int = 0) -> "RaggedRows":
        """One RaggedRows holding the rows of `parts` in order.

        Args:
            parts: the RaggedRows to join.
            dtype: the numpy dtype to store.
            fill: the value shorter rows are filled with when padded.
        """
        if not parts:
            return cls(np.zeros(0, dtype=dtype), np.zeros(1, dtype=np.int64), fill=fill)
        offsets = _offsets(np.concatenate([p.lengths for p in parts]))
        return cls(np.concatenate([p.values.astype(dtype, copy=False) for p in parts]), offsets, fill=fill)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.offsets.nbytes

    def digest(self) -> str:
        """A digest of the rows (values as int64, and where each row ends): equal rows, equal digest. Computed
        once (rows are not changed in place: `clip` makes new ones), a block at a time."""
        if getattr(self, "_digest", None) is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(self.offsets.tobytes())
            for start in range(0, len(self.values), _DIGEST_BLOCK):
                h.update(self.values[start:start + _DIGEST_BLOCK].astype(np.int64).tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def tolist(self) -> list[list[int]]:
        """Every row as a Python list."""
        return [self.values[a:b].tolist() for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def take(self, idx: np.ndarray) -> "RaggedRows":
        """The rows `idx`, as a new RaggedRows.

        Args:
            idx: row indices.
        """
        idx = self._indices(idx)
        lengths = self.lengths[idx]
        offsets = _offsets(lengths)
        # position of every kept entry in self.values: its row's start plus its place in the row
        pos = np.repeat(self.offsets[idx] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return RaggedRows(self.values[pos], offsets, fill=self.fill)

    def padded(self, idx: np.ndarray, width: int) -> np.ndarray:
        """Rows `idx` as a (len(idx), width) matrix: longer rows cut, shorter ones filled with `fill`.

        Args:
            idx: row indices.
            width: the matrix's width.
        """
        idx = self._indices(idx)
        cols = np.arange(width)
        keep = cols[None, :] < np.minimum(self.lengths[idx], width)[:, None]
        out = np.full((len(idx), width), self.fill, dtype=self.values.dtype)
        out[keep] = self.values[(self.offsets[idx][:, None] + cols[None, :])[keep]]
        return out

    def clip(self, maxlen: int) -> "RaggedRows":
        """Rows cut to `maxlen` entries, each keeping its last entry (the closing [SEP] or </s>) at the end.

        Args:
            maxlen: the longest row kept.
        """
        new = np.minimum(self.lengths, maxlen)
        offsets = _offsets(new)
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], new)
        src = np.repeat(self.offsets[:-1], new) + within
        last = within == np.repeat(new - 1, new)
        src[last] = np.repeat(self.offsets[1:] - 1, new)[last]
        return RaggedRows(self.values[src], offsets, fill=self.fill)

    def row(self, i: int) -> np.ndarray:
        """Row `i`, unpadded (a view).

        Args:
            i: the row index.
        """
        i = self._index(i)
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def _slice(self, start: int, stop: int, step: int) -> "RaggedRows":
        return self.take(np.arange(start, stop, step))


def _width(cols: Any, longest: int) -> int:
    if cols is None:
        return longest
    if not isinstance(cols, slice) or cols.start not in (None, 0) or cols.step not in (None, 1):
        raise IndexError(f"RaggedRows takes column slices of the form [:width], not {cols!r}")
    return longest if cols.stop is None else int(cols.stop)


class DiskRows(_Rows):
    """Ragged rows in a file, indexed like `RaggedRows`: `rows[i]`, `rows[idx_array, :width]` (padded with `fill`),
    `rows[a:b]`. Each access reads only the rows asked for, with positional reads (`os.pread`) rather than a memory
    map, so the pages a long epoch touches are not charged to the process. Kept in memory: the row offsets.

    Args:
        path: the binary file: every row's entries back to back (`dtype`).
        offsets: (n + 1,) int64 row boundaries, in entries.
        dtype: numpy dtype of the entries.
        fill: the value padded rows are filled with.
    """

    def __init__(self, path: str | Path, offsets: np.ndarray, dtype: Any, *, fill: int = 0):
        self.path, self.dtype, self.fill = str(path), np.dtype(dtype), int(fill)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lengths = np.diff(self.offsets).astype(np.int32)
        self._fd: int | None = None
        self._pid = None

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes  # what is held in memory; the rows stay on disk

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}  # file descriptors do not travel (pickle, fork)

    def digest(self) -> str:
        """A digest of the rows, as `RaggedRows.digest` gives for the same rows (the file is read once, in blocks,
        and the digest kept)."""
        if getattr(self, "_digest", None) is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(self.offsets.tobytes())
            end = int(self.offsets[-1])
            for start in range(0, end, _DIGEST_BLOCK):
                h.update(self._read(start, min(start + _DIGEST_BLOCK, end)).astype(np.int64).tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def _read(self, start: int, stop: int) -> np.ndarray:
        size = self.dtype.itemsize
        data = os.pread(self._file(), (stop - start) * size, start * size) if stop > start else b""
        return np.frombuffer(data, dtype=self.dtype)

    def row(self, i: int) -> np.ndarray:
        """Row `i`, unpadded.

        Args:
            i: the row index.
        """
        i = self._index(i)
        return self._read(self.offsets[i], self.offsets[i + 1]).copy()

    def padded(self, idx: np.ndarray, width: int) -> np.ndarray:
        """Rows `idx` as a (len(idx), width) matrix: longer rows cut, shorter ones filled with `fill`.

        Args:
            idx: row indices.
            width: the matrix's width.
        """
        out = np.full((len(idx), width), self.fill, dtype=self.dtype)
        for k, i in enumerate(np.asarray(idx, dtype=np.int64)):
            r = self.row(i)[:width]
            out[k, :len(r)] = r
        return out

    def _slice(self, start: int, stop: int, step: int) -> RaggedRows:
        if step == 1 and stop > start:  # one read for a run of rows
            offsets = self.offsets[start:stop + 1]
            return RaggedRows(self._read(offsets[0], offsets[-1]).copy(), offsets - offsets[0], fill=self.fill)
        return RaggedRows.from_lists([self.row(i) for i in range(start, stop, step)], self.dtype, fill=self.fill)

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass


def store_key(path: Path, parts: dict) -> str:
    """Identify a store by the file (path and a digest of its bytes) and every reading and encoding setting.

    The whole file is hashed (1.4 s a GB on one core): a size and a modification time kept by a copy (`cp -p`,
    rsync) let a file with other labels reuse the old store's targets.

    Args:
        path: the source CSV file.
        parts: the reading and encoding settings (separator, encoding, tokenizer fingerprint, maxlen, columns...).
    """
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    blob = json.dumps({"file": str(path.resolve()), "bytes": digest.hexdigest(), "rows": rows_revision(), **parts},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_store(folder: Path, chunks: Any, encode: Callable[[pd.DataFrame], tuple[dict, np.ndarray | None]],
                dtype: Any, *, log: Any = None) -> dict:
    """Tokenize `chunks` (an iterator of DataFrames) into `folder`; returns the store's metadata.

    Args:
        folder: the store folder (written to a temporary sibling first, then renamed).
        chunks: DataFrames of consecutive rows.
        encode: chunk -> (the `TextEncoder.encode` result, with `RaggedRows` ids, and the chunk's targets or None).
        dtype: how the ids are stored (`TextEncoder.id_dtype`).
    """
    n, t0, lengths, targets, has_types = 0, time.perf_counter(), [], [], False
    with atomic_dir(folder) as tmp:
        with open(tmp / "ids.bin", "wb") as ids_f, open(tmp / "type_ids.bin", "wb") as types_f:
            for chunk in chunks:
                enc, y = encode(chunk)
                ids = enc["ids"]
                ids_f.write(ids.values.astype(dtype, copy=False).tobytes())
                if enc.get("type_ids") is not None:
                    has_types = True
                    types_f.write(enc["type_ids"].values.astype(np.uint8, copy=False).tobytes())
                lengths.append(ids.lengths)
                if y is not None:
                    targets.append(y)
                n += len(ids)
                if log is not None:
                    log.info("tokenized %d rows to %s (%.0f rows/s)", n, folder, n / (time.perf_counter() - t0))
        if n == 0:
            raise DataError(f"no rows to store in {folder}")
        lengths = np.concatenate(lengths)
        np.save(tmp / "lengths.npy", lengths.astype(np.uint16) if lengths.max() < 2**16 else lengths)
        if targets:
            np.save(tmp / "targets.npy", np.concatenate(targets))
        if not has_types:
            (tmp / "type_ids.bin").unlink()
        meta = {"format": _FORMAT, "n": n, "tokens": int(lengths.sum()), "dtype": np.dtype(dtype).name,
                "type_ids": has_types}
        (tmp / "meta.json").write_text(json.dumps(meta))
    return meta


def load_store(folder: Path, *, pad_id: int = 0) -> tuple[DiskRows, np.ndarray, np.ndarray | None,
                                                          DiskRows | None] | None:
    """(ids, lengths, targets, type_ids) of a complete store, or None when it is missing or unreadable.

    Args:
        folder: the store folder.
        pad_id: what id rows are padded with when batched.
    """
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != _FORMAT:
            return None
        ids_path = folder / "ids.bin"
        lengths = np.load(folder / "lengths.npy")
        if len(lengths) != int(meta["n"]) or int(lengths.sum()) != int(meta["tokens"]) or \
                ids_path.stat().st_size != int(meta["tokens"]) * np.dtype(meta["dtype"]).itemsize:
            return None
        offsets = _offsets(lengths)
        targets = np.load(folder / "targets.npy") if (folder / "targets.npy").is_file() else None
        types = DiskRows(folder / "type_ids.bin", offsets, np.uint8) if meta.get("type_ids") else None
        ids = DiskRows(ids_path, offsets, meta["dtype"], fill=pad_id)
        return ids, ids.lengths, targets, types  # the rows' own lengths: no second copy in memory
    except (OSError, ValueError, KeyError):
        return None
