"""An on-disk token store: CSV files larger than memory are tokenized in chunks and trained on from disk.

`BertDataBunch.from_csv(..., on_disk=True)` reads the CSV in chunks of `chunksize` rows, tokenizes each chunk
with the fast tokenizer and appends the fixed-width id rows to a file; a batch then reads just its rows with
positional reads. Kept in memory per row: the token count and the target (a few bytes), so memory does not
grow with the file beyond that. Reads go through `os.pread` rather than a memory map, so the pages a long epoch
touches are not charged to the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import DataError

__all__ = ["DiskRows", "build_store", "load_store", "store_key"]

_FORMAT = 1


class DiskRows:
    """A read-only (n, width) integer matrix in a file, indexed like a numpy array by rows: `rows[i]`,
    `rows[idx_array, :k]`, `rows[a:b]`. Each access reads only the rows asked for.

    Args:
        path: the binary file (row-major, `dtype`).
        n: number of rows; width: entries per row; dtype: numpy dtype of the entries.
    """

    def __init__(self, path: str | Path, n: int, width: int, dtype: Any):
        self.path, self.dtype = str(path), np.dtype(dtype)
        self.shape = (int(n), int(width))
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}  # file descriptors do not travel (pickle, fork)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), self.shape[1]), dtype=self.dtype)
        fd = self._file()
        view = out.view(np.uint8).reshape(len(idx), self._row_bytes)
        for k, i in enumerate(idx):
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"row {i} out of range for {self.shape[0]} rows")
            data = os.pread(fd, self._row_bytes, int(i) * self._row_bytes)
            view[k] = np.frombuffer(data, dtype=np.uint8)
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = (key if isinstance(key, tuple) else (key, slice(None)))
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.shape[0])
            if step == 1:
                n = max(0, stop - start)
                data = os.pread(self._file(), n * self._row_bytes, start * self._row_bytes) if n else b""
                out = np.frombuffer(data, dtype=self.dtype).reshape(n, self.shape[1]).copy()
                return out[:, cols]
            rows = np.arange(start, stop, step)
        if np.isscalar(rows):
            return self._rows(np.asarray([int(rows)]))[0][cols]
        return self._rows(np.asarray(rows, dtype=np.int64))[:, cols]

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass


def store_key(path: Path, parts: dict) -> str:
    """Identify a store by the file (path, size, modification time) and every encoding setting."""
    st = path.stat()
    blob = json.dumps({"file": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns, **parts},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_store(folder: Path, chunks: Any, encode: Callable[[pd.DataFrame], tuple[dict, np.ndarray | None]],
                width: int, pad_id: int, vocab_size: int, *, log: Any = None) -> dict:
    """Tokenize `chunks` (an iterator of DataFrames) into `folder`; returns the store's metadata.

    Args:
        folder: the store folder (written to a temporary sibling first, then renamed).
        chunks: DataFrames of consecutive rows.
        encode: chunk -> (the `TextEncoder.encode` result, the chunk's encoded targets or None).
        width: ids per stored row (maxlen rounded up to the padding multiple).
        pad_id: the tokenizer's pad id.
        vocab_size: decides the id dtype (uint16 when it fits).
    """
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max else np.int32
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n, t0, lengths, targets, has_types = 0, time.perf_counter(), [], [], False
    try:
        with open(tmp / "ids.bin", "wb") as ids_f, open(tmp / "type_ids.bin", "wb") as types_f:
            for chunk in chunks:
                enc, y = encode(chunk)
                ids = enc["ids"]
                rows = np.full((len(ids), width), pad_id, dtype=dtype)
                rows[:, :ids.shape[1]] = ids[:, :width]
                ids_f.write(rows.tobytes())
                if enc.get("type_ids") is not None:
                    has_types = True
                    t = np.zeros((len(ids), width), dtype=np.uint8)
                    t[:, :enc["type_ids"].shape[1]] = enc["type_ids"][:, :width]
                    types_f.write(t.tobytes())
                lengths.append(np.minimum(enc["lengths"], width).astype(np.uint16))
                if y is not None:
                    targets.append(y)
                n += len(ids)
                if log is not None:
                    log.info("tokenized %d rows to %s (%.0f rows/s)", n, folder, n / (time.perf_counter() - t0))
        if n == 0:
            raise DataError(f"no rows to store in {folder}")
        np.save(tmp / "lengths.npy", np.concatenate(lengths))
        if targets:
            np.save(tmp / "targets.npy", np.concatenate(targets))
        if not has_types:
            (tmp / "type_ids.bin").unlink()
        meta = {"format": _FORMAT, "n": n, "width": width, "dtype": np.dtype(dtype).name, "type_ids": has_types}
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def load_store(folder: Path) -> tuple[DiskRows, np.ndarray, np.ndarray | None, DiskRows | None] | None:
    """(ids, lengths, targets, type_ids) of a complete store, or None when it is missing or unreadable."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != _FORMAT:
            return None
        n, width = int(meta["n"]), int(meta["width"])
        ids_path = folder / "ids.bin"
        if ids_path.stat().st_size != n * width * np.dtype(meta["dtype"]).itemsize:
            return None
        lengths = np.load(folder / "lengths.npy")
        targets = np.load(folder / "targets.npy") if (folder / "targets.npy").is_file() else None
        types = DiskRows(folder / "type_ids.bin", n, width, np.uint8) if meta.get("type_ids") else None
        return DiskRows(ids_path, n, width, meta["dtype"]), lengths, targets, types
    except (OSError, ValueError, KeyError):
        return None
