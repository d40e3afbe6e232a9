"""Reading the data: CSV files and DataFrames, their text and label columns, and the labels as model targets.

Everything here names the file, column, rows or value it rejects, and the fix. The task types live here too:
they decide how a label column becomes targets (class indices, multi-hot rows, floats).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, user_stacklevel

if TYPE_CHECKING:  # annotations only: encode imports this module
    from .encode import TextEncoder

__all__ = ["SINGLE", "MULTI", "REGRESSION", "PROBLEM_TYPES", "read_csv", "read_csv_chunks", "read_label_file",
           "read_watching_fields", "row_names_in_front",
           "resolve_columns", "columns_like_training",
           "check_column_counts", "refuse_number_columns", "texts_from_frame", "targets_from_frame", "labels_and_targets", "single_labels", "class_weights",
           "task_options", "positive_int", "as_texts", "refuse_table", "CSV_CELLS",
           "holdout_order", "refuse_delim_with_columns", "check_label_use"]

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
PROBLEM_TYPES = (SINGLE, MULTI, REGRESSION)

# how every CSV is read: cells as written, only an empty cell missing. pandas' guesses turned labels "01" and "1"
# into one class (and "007" into "7"), and texts or labels "NA", "None", "null", "nan" into missing values.
# index_col=False: rows ending in a delimiter ("a good film,1,", as some exporters write) have a field more than
# the header, and pandas took the first field as the index: every column shifted by one (the ids predicted as the
# texts). So the empty last field is dropped; one holding data is a DataError (read_csv, read_csv_chunks) or, in
# every row, row names in front (R's write.table), read as the index as pandas did
CSV_MISSING = dict(keep_default_na=False, na_values=[""], index_col=False)
CSV_CELLS = dict(dtype=str, **CSV_MISSING)
_BOOL_CELLS = {"true": 1.0, "false": 0.0}  # how pandas writes a bool column, read back as 0/1 label columns
_WHOLE_FLOAT = re.compile(r"-?\d+\.0+")  # "1.0": a whole-number label column written after it held a NaN


def read_csv(path: str | Path, arg: str = "input", *, sep: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Read a CSV with bertlearn's checks: a missing file lists its folder, cp1252 is detected, a tab-separated
    file read as CSV is named.

    Args:
        path: the file.
        arg: how error messages name it.
        sep, encoding: as for `pandas.read_csv` (default "," and UTF-8 with a cp1252 fallback).
    """
    return _read_csv(Path(path), arg, sep=sep, encoding=encoding)


def _read_csv(path: Path, arg: str, *, sep: str | None, encoding: str | None) -> pd.DataFrame:
    if not path.is_file():
        where = path.parent if path.parent.is_dir() else None
        hint = f"; files there: {sorted(p.name for p in where.iterdir())[:20]}" if where else \
            f"; directory {str(path.parent)!r} does not exist either"
        raise DataError(f"{arg}: file {str(path)!r} not found{hint}")
    # pandas' own reading of text columns is 3x faster than dtype=str (13 against 40 ms for 100k rows): read so,
    # and again as written only where it took a column for numbers or booleans
    # low_memory=False: pandas guesses per 262k-row chunk otherwise, and a column numeric in one chunk only comes
    # back as an object column of ints and strings
    read_kwargs = dict(sep=sep or ",", encoding=encoding or "utf-8-sig", low_memory=False, **CSV_MISSING)
    try:
        df = _checked_read(path, arg, read_kwargs)
        guessed = [i for i, c in enumerate(df.columns) if pd.api.types.infer_dtype(df.iloc[:, i], skipna=True)
                   not in ("string", "empty")]
        if guessed:  # the whole file, not those columns: with row names in front of the rows, pandas takes
            # them as the index, and columns picked by position would be other columns
            df = _checked_read(path, arg, {**read_kwargs, **CSV_CELLS})
    except UnicodeDecodeError:
        if encoding is not None:
            raise DataError(f"{arg}: {str(path)!r} cannot be decoded as {encoding!r}; pass the file's encoding")
        _warn_cp1252(path)
        try:
            df = _checked_read(path, arg, {**read_kwargs, "encoding": "cp1252", **CSV_CELLS})
        except UnicodeDecodeError as e:
            raise _undecodable(path, arg, e, "pass the file's encoding=") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{arg}: {str(path)!r} is empty; it needs a header row and at least one data row") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{arg}: {str(path)!r} is not a valid CSV ({str(e).strip()}); check sep= and "
                        "quoting") from None
    if len(df) == 0:
        raise DataError(f"{arg}: {str(path)!r} has a header ({list(df.columns)}) but no data rows")
    if sep is None and len(df.columns) == 1 and "\t" in str(df.columns[0]):
        raise DataError(f"{arg}: {str(path)!r} has one column {str(df.columns[0])!r} containing tabs; "
                        "it looks tab-separated: pass sep='\\t'")
    return df


def read_csv_chunks(path: str | Path, arg: str = "input", *, sep: str | None = None, chunksize: int = 10_000
                    ) -> Iterator[pd.DataFrame]:
    """A CSV read as written (`CSV_CELLS`) `chunksize` rows at a time, with `read_csv`'s checks: UTF-8, else cp1252
    with the same warning; a file pandas cannot parse, or with rows holding fields past the header's, is a
    `DataError` naming the file (and the line) and the fix.

    Args:
        path: the file.
        arg: how error messages name it.
        sep: the field separator (default ",").
        chunksize: rows per chunk.
    """
    path = Path(path)
    if not path.is_file():
        read_csv(path, arg, sep=sep)  # raises with the folder's listing
    # the whole file is decoded up front: pandas meets a byte that is not UTF-8 in whichever chunk holds it, after
    # the chunks before it were used (written out), where read_csv reads the file again as cp1252
    encoding = _utf8_or_cp1252(path)
    kwargs = dict(sep=sep or ",", encoding=encoding, chunksize=chunksize, **CSV_CELLS)
    try:
        reader, verdict = pd.read_csv(path, **kwargs), None
        while True:
            chunk, dropped = read_watching_fields(lambda: next(reader, None))
            if dropped and verdict is None:  # the file is scanned once, whichever chunk warns
                verdict = row_names_in_front(path, arg, sep=kwargs["sep"], encoding=encoding)
                if verdict:  # every row has its row name in front, the first chunk's too: read from the start
                    reader = pd.read_csv(path, **{**kwargs, "index_col": None})
                    chunk = next(reader, None)
            if chunk is None:
                return
            yield chunk
    except UnicodeDecodeError as e:  # cp1252 leaves five bytes undefined
        raise _undecodable(path, arg, e, "save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{arg}: {str(path)!r} is empty; it needs a header row and at least one data row") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{arg}: {str(path)!r} is not a valid CSV ({str(e).strip()}); check the separator (--sep / "
                        "sep=) and the quoting: a field holding the separator, a quote or a line break goes in "
                        'double quotes ("a, b"), its quotes doubled ("say ""hi""")') from None


def _warn_cp1252(path: Path) -> None:
    # files from Windows tools (rt-polarity's originals among them) are cp1252; say so, do not fail
    warnings.warn(f"{path.name} is not valid UTF-8; reading it as cp1252 (pass encoding=... to choose)",
                  stacklevel=user_stacklevel())


def _undecodable(path: Path, arg: str, e: UnicodeDecodeError, fix: str) -> DataError:
    bad = e.object[e.start:e.start + 1].hex() if isinstance(e.object, (bytes, bytearray)) else "?"
    return DataError(f"{arg}: {str(path)!r} is neither UTF-8 nor cp1252 (byte 0x{bad} is undefined in cp1252); "
                     f"{fix}")


def _utf8_or_cp1252(path: Path) -> str:
    """'utf-8-sig' where the whole file decodes as UTF-8, else 'cp1252' with read_csv's warning."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as fh:
        try:
            while block := fh.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            _warn_cp1252(path)
            return "cp1252"
    return "utf-8-sig"


_LOST = "Length of header or names does not match length of data"  # pandas' ParserWarning with index_col=False


def read_watching_fields(read: Callable[[], Any]) -> tuple[Any, bool]:
    """Run `read` (a `pd.read_csv` call, or a chunk's `next`) and say whether pandas dropped fields past the header's
    there (index_col=False; then `row_names_in_front` tells what they were); its other warnings are given again.

    Args:
        read: the read, without arguments.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = read()
    return value, _dropped_fields_warned(caught)


def _dropped_fields_warned(caught: list[warnings.WarningMessage]) -> bool:
    """Whether pandas warned that it dropped fields past the header's (index_col=False); its other warnings are
    given again as they came.

    Args:
        caught: the warnings recorded around a `pd.read_csv` call or a chunk's read.
    """
    lost = False
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning) and str(w.message).startswith(_LOST):
            lost = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return lost


def _checked_read(path: Path, arg: str, kwargs: dict) -> pd.DataFrame:
    """pd.read_csv with `kwargs` (CSV_MISSING's index_col=False), fields past the header's checked (row_names_in_front)."""
    df, dropped = read_watching_fields(lambda: pd.read_csv(path, **kwargs))
    if dropped and row_names_in_front(path, arg, sep=kwargs["sep"], encoding=kwargs["encoding"]):
        df = pd.read_csv(path, **{**kwargs, "index_col": None})
    return df


def row_names_in_front(path: Path, arg: str, *, sep: str, encoding: str) -> bool:
    """After pandas dropped fields past the header's: True where every data row has exactly one field more than the
    header, never empty (row names in front, as R's write.table writes them: read the first field as the index),
    False where the dropped fields are all empty (delimiters at the ends of rows: nothing lost); otherwise a
    `DataError` naming the first row whose extra fields hold data (an unquoted separator in a text, mostly).

    Args:
        path: the CSV file.
        arg: how error messages name it.
        sep: its field separator.
        encoding: its encoding.
    """
    if len(sep) != 1:  # a regular expression: no line to name
        raise DataError(f"{arg}: {str(path)!r} has rows with more fields than its header; fix those rows or quote "
                        "the fields that hold the separator")
    header, first, every = None, None, True
    limit = csv.field_size_limit()
    # the csv module refuses fields over 128 KiB, which pandas reads (a long text): raised for this scan only
    csv.field_size_limit(max(limit, 2**31 - 1))
    try:
        with open(path, encoding=encoding, newline="") as fh:
            rows = csv.reader(fh, delimiter=sep)
            start = 1
            for row in rows:
                line, start = start, rows.line_num + 1
                if not row:  # a blank line, which pandas skips
                    continue
                if header is None:
                    header = row
                    continue
                extra = row[len(header):]
                if first is None and any(extra):
                    first = (line, row, extra)
                every = every and len(extra) == 1 and extra[0] != ""
    except csv.Error as e:
        raise DataError(f"{arg}: {str(path)!r} is not a valid CSV ({e}); check the separator and the quoting") from None
    finally:
        csv.field_size_limit(limit)
    if first is None:
        return False
    if every:
        return True
    line, row, extra = first
    raise DataError(f"{arg}: {str(path)!r} line {line} has {len(row)} fields but the header has {len(header)} "
                    f"({_short(header[:20])}); its extra field{'s' if len(extra) > 1 else ''} "
                    f"{_short([e for e in extra if e][:5])} would be lost. Quote the field that holds a {sep!r} "
                    f'(e.g. "a{sep} b"), or fix the row to {len(header)} fields')


def _column(df: pd.DataFrame, col: Any, arg: str, source: str) -> str:
    """Resolve a column name or integer position to a column name."""
    cols = list(df.columns)
    if isinstance(col, (int, np.integer)) and not isinstance(col, bool):
        if not -len(cols) <= col < len(cols):
            raise DataError(f"{arg}={col} is out of range: {source} has {len(cols)} columns {cols}")
        return _one_column(cols, cols[col], arg, source)
    if col in cols:
        return _one_column(cols, col, arg, source)
    close = difflib.get_close_matches(str(col), [str(c) for c in cols], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"{arg}: column {col!r} not in {source}; columns are {cols}{hint}")


def _one_column(cols: list, name: Any, arg: str, source: str) -> Any:
    # a frame may hold two columns of one name (a CSV's are renamed "label.1"): the first was used without a word
    if cols.count(name) > 1:
        raise DataError(f"{arg}: {source} has {cols.count(name)} columns named {name!r}, so which one is meant is "
                        "unclear; rename them so each name is one column (e.g. df.columns = [...])")
    return name


def resolve_columns(df: pd.DataFrame, col: Any, arg: str, source: str) -> list[str]:
    """Column names for `col` (a name, a position, or a list of either), or a `DataError` naming the columns there.

    Args:
        df: the frame.
        col: what the user gave (`text_col`, `label_col`).
        arg: the argument's name, as the message says it.
        source: the file or frame, as the message says it.
    """
    cols = list(col) if isinstance(col, (list, tuple)) else [col]
    if not cols:
        raise DataError(f"{arg} is an empty list; give a column name or position")
    return [_column(df, c, arg, source) for c in cols]


def columns_like_training(df: pd.DataFrame, names: list, given: Any, arg: str, source: str,
                          train_source: str) -> list:
    """The training data's columns `names` in another frame (validation, test), found by their names: a position
    counts in the training data only, since another file's columns may come in another order (a pair's texts
    swapped) and a saved model reads new data by name. A `DataError` says which column is missing and why.

    Args:
        df: the other frame (its first rows are enough).
        names: the training data's resolved column names.
        given: what the user gave (`text_col`, `label_col`), said in the error.
        arg: the argument's name, as the message says it.
        source, train_source: the other data and the training data, as the message says them.
    """
    given_list = list(given) if isinstance(given, (list, tuple)) else [given]
    by_position = any(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in given_list)
    missing = [n for n in names if n not in list(df.columns)]
    if missing and by_position:
        raise DataError(f"{arg}={given!r} names {train_source}'s column(s) {names}, and {source} has no column "
                        f"{missing[0]!r} (its columns are {list(df.columns)}): columns given by position are found "
                        f"in other data by the training data's names, as a saved model reads new data; name "
                        f"{source}'s columns {names!r} as in {train_source}")
    return resolve_columns(df, names, arg, source)


def check_column_counts(text_cols: list, label_cols: list, text_col: Any, label_col: Any, *, multi_label: bool,
                        label_delim: str | None) -> None:
    """One text column (two for sentence pairs) and one label column unless the labels are 0/1 columns.

    Args:
        text_cols, label_cols: the resolved column names.
        text_col, label_col: what the caller passed (named in the error).
        multi_label, label_delim: the task; 0/1 label columns are multi-label without a delimiter, and label_delim
            takes one column of joined labels.
    """
    if len(text_cols) > 2:
        raise DataError(f"text_col={text_col!r} names {len(text_cols)} columns; give one text column, or two "
                        "for sentence pairs")
    refuse_delim_with_columns(label_col, label_cols, label_delim)
    if not multi_label and len(label_cols) != 1:
        raise DataError(f"label_col={label_col!r} names {len(label_cols)} columns; this task needs one label "
                        "column (pass multi_label=True for 0/1 label columns)")
    both = [c for c in text_cols if c in label_cols]
    if both:
        # the model would read its answers: it trains to a perfect score that means nothing
        raise DataError(f"text_col={text_col!r} and label_col={label_col!r} both name {both}; the texts and the "
                        "labels must be different columns")


def _csv_lines(index: pd.Index, mask: np.ndarray) -> list[int]:
    # the CSV lines of the marked rows (1-based, after the header): a frame read from a CSV keeps its row numbers
    # as its index through chunks and splits, where positions would count from the chunk or the shuffled part
    if pd.api.types.is_integer_dtype(index.dtype):
        return (np.asarray(index[mask][:10], dtype=np.int64) + 2).tolist()
    return (np.flatnonzero(mask)[:10] + 2).tolist()


def _all_numbers(s: pd.Series) -> np.ndarray:
    # a CSV column read as written whose every cell is a number is not a text column (a label or id column named
    # by mistake): mark its cells; a sample decides first so a real text column costs nothing
    cells = s.dropna()
    if not len(cells) or pd.to_numeric(cells.head(256), errors="coerce").isna().any():
        return np.zeros(len(s), dtype=bool)
    numbers = pd.to_numeric(s, errors="coerce").notna().to_numpy()
    return numbers if numbers.sum() == len(cells) else np.zeros(len(s), dtype=bool)


def texts_from_frame(df: pd.DataFrame, cols: str | list[str], source: str, *, dropna: bool,
                     numbers: bool = False, empty_fix: str = "fix them or pass dropna=True"
                     ) -> tuple[list[Any], np.ndarray]:
    """The text column(s) as strings (pairs as tuples), and a mask of the rows kept.

    Args:
        df: the frame.
        cols: one text column, or two for sentence pairs.
        source: the file or frame, as error messages name it.
        dropna: drop rows with an empty or missing text (else they are a `DataError` naming the lines).
        numbers: accept a column whose every cell is a number written as text (prediction reads whatever it is
            given, a chunk at a time; training refuses it as the wrong column).
        empty_fix: what the error about empty texts tells the caller to do (the CLI has no `dropna`).
    """
    cols = [cols] if isinstance(cols, str) else list(cols)
    keep = np.ones(len(df), dtype=bool)
    for col in cols:
        s = df[col]
        # a string column (how bertlearn reads a CSV) holds numbers only as text: refused when every cell is one
        as_text = isinstance(s.dtype, pd.StringDtype)
        numeric = np.zeros(len(s), dtype=bool) if as_text else \
            s.map(lambda v: not isinstance(v, str) and not pd.isna(v)).to_numpy()
        as_text = as_text or not numeric.any()  # pandas 2 reads strings into an object column
        if as_text and not numbers:
            numeric = _all_numbers(s)
        if numeric.any():
            rows = _csv_lines(s.index, numeric)
            example = s[numeric].iloc[0]
            example = example.item() if isinstance(example, np.generic) else example
            raise DataError(f"text_col {col!r} in {source} holds {'only numbers' if as_text else 'non-text values'} "
                            f"(e.g. {example!r} at CSV line {rows[0]}; lines {rows}); is it the right column? "
                            "Texts must be strings")
        bad = s.isna().to_numpy() | (s.astype(str).str.strip() == "").to_numpy()
        if bad.any() and not dropna:
            rows = _csv_lines(s.index, bad)
            raise DataError(f"text_col {col!r} in {source} has {int(bad.sum())} empty or missing texts "
                            f"(CSV lines {rows}{'...' if bad.sum() > 10 else ''}); {empty_fix}")
        keep &= ~bad
    columns = [df[c][keep].astype(str).tolist() for c in cols]
    return (columns[0] if len(cols) == 1 else list(zip(*columns))), keep


def refuse_number_columns(chunks: Iterable[pd.DataFrame], cols: Sequence[str], source: str) -> None:
    """Refuse, as `texts_from_frame` does for a whole frame, a text column whose every cell in a file read in
    chunks is a number; reads until each column shows a word (usually in the first rows), so the answer does
    not depend on the chunk size.

    Args:
        chunks: the file's chunks (read as written, `CSV_CELLS`).
        cols: the text column(s).
        source: the file, as error messages name it.
    """
    pending, first = set(cols), {}
    for chunk in chunks:
        for col in list(pending):
            cells = chunk[col].dropna()
            if not len(cells):
                continue
            if pd.to_numeric(cells.head(256), errors="coerce").isna().any() or \
                    pd.to_numeric(cells, errors="coerce").isna().any():
                pending.discard(col)
            else:
                first.setdefault(col, chunk)
        if not pending:
            return
    for col in cols:
        if col in pending and col in first:
            texts_from_frame(first[col], col, f"{source} (rows from {first[col].index[0] + 1})", dropna=True)


def refuse_delim_with_columns(label_col: Any, label_cols: Sequence[Any], label_delim: str | None) -> None:
    """Refuse `label_delim` with several label columns: it splits ONE column of joined labels, and several 0/1
    columns take none (it read the first column as joined labels and ignored the others).

    Args:
        label_col: the label column(s) as given; label_cols: them resolved; label_delim: the separator or None.
    """
    if label_delim is not None and len(label_cols) != 1:
        joined = label_delim.join(str(c) for c in label_cols[:2])
        raise DataError(f"label_col={label_col!r} names {len(label_cols)} columns, but label_delim={label_delim!r} "
                        f"reads the labels from ONE column holding them joined (e.g. {joined!r}); give that one "
                        "column with label_delim, or leave label_delim out for 0/1 label columns (one per label, "
                        "with multi_label=True)")


def targets_from_frame(df: pd.DataFrame, label_col: Any, encoder: TextEncoder, *, label_delim: str | None = None,
                       source: str = "data", saved_model: bool = False) -> np.ndarray:
    """Encode a frame's label column(s) for `encoder`'s task and label set (class indices, multi-hot rows or floats).

    Args:
        df: the data.
        label_col: the label column; for multi-label a list of 0/1 columns or one `label_delim` column.
        encoder: the trained model's `TextEncoder` (its labels decide the encoding).
        label_delim: separator of several labels in one column.
        source: how error messages name the data.
        saved_model: the labels are a saved model's outputs (`bertlearn eval`): a label the data has and the model
            lacks is said as such, to be removed or relabelled in the data (or trained), since labels.csv cannot
            change a trained head.
    """
    cols = resolve_columns(df, label_col, "label_col", source)
    if encoder.multi_label:
        refuse_delim_with_columns(label_col, cols, label_delim)
        if label_delim is not None:
            return _delimited_multi_hot(df[cols[0]], encoder.labels, label_delim, source, saved_model=saved_model)
        return _multi_hot(df[cols], encoder.labels, source, saved_model=saved_model)
    if len(cols) != 1:
        raise DataError(f"label_col={label_col!r} names {len(cols)} columns; this model's task needs one")
    if encoder.regression:
        return _float_targets(df[cols[0]], source)
    return _label_indices(df[cols[0]], encoder.labels, source, saved_model=saved_model)


def read_label_file(path: Path) -> list[str] | None:
    """The labels of a labels.csv (one per line, no header), or None where there is no such file (or it is empty).

    Args:
        path: the file.
    """
    if not path.is_file():
        return None
    labels = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return labels or None


def task_options(bs: Any, val_bs: Any, maxlen: Any, multi_label: bool, regression: bool,
                  label_delim: str | None) -> tuple[int, int, int, bool, str]:
    """Checked batch sizes and maxlen, and the problem type the task flags describe.

    Args:
        bs, val_bs: training and validation batch sizes (val_bs None: 2 * bs).
        maxlen: tokens per input.
        multi_label, regression: the task flags.
        label_delim: a separator of several labels in one column (implies multi-label).
    """
    bs, maxlen = positive_int(bs, "bs"), positive_int(maxlen, "maxlen")
    val_bs = positive_int(val_bs, "val_bs") if val_bs is not None else 2 * bs
    multi_label = multi_label or label_delim is not None
    if multi_label and regression:
        raise DataError("multi_label=True and regression=True exclude each other; choose one")
    return bs, val_bs, maxlen, multi_label, MULTI if multi_label else REGRESSION if regression else SINGLE


def holdout_order(n: int, seed: int | None) -> np.ndarray:
    """A permutation of `n` rows for a held-out split: drawn from `seed`, else from numpy's global random state, so
    `np.random.seed` / fastai's `set_seed` repeat it (a generator without a seed draws from the OS every run).

    Args:
        n: how many rows.
        seed: the split's seed, or None.
    """
    return np.random.default_rng(seed).permutation(n) if seed is not None else np.random.permutation(n)


def positive_int(value: Any, arg: str, error: type[Exception] = DataError) -> int:
    """`value` as an int, or `error` saying `arg` must be a positive integer.

    Args:
        value: what the user gave.
        arg: the argument's name, as the message says it.
        error: the exception class to raise.
    """
    try:
        ok = float(value) == int(value) and int(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise error(f"{arg}={value!r} must be a positive integer")
    return int(value)


def refuse_table(texts: Any, arg: str, *, pairs: bool = False) -> None:
    """Raise a `DataError` for a DataFrame or dict given as texts: iterating one gives its column names, so it
    would be read as the texts "text" and "label".

    Args:
        texts: what the user gave.
        arg: the argument's name, as the message says it.
        pairs: the model takes sentence pairs.
    """
    if isinstance(texts, (pd.DataFrame, dict)):
        frame = isinstance(texts, pd.DataFrame)
        names = list(texts.columns if frame else texts.keys())[:10]
        pick = "df[['text_a', 'text_b']].itertuples(index=False)" if pairs else "df['text']"
        raise DataError(f"{arg}: got a {'DataFrame with columns' if frame else 'dict with keys'} {names}; pass "
                        f"its texts, e.g. {pick}")


def as_texts(texts: Any, arg: str, *, pairs: bool = False) -> list[Any]:
    """`texts` as a list of strings (or of (a, b) pairs), a single text wrapped; anything else a `DataError`.

    Args:
        texts: a text, a list of texts, or (text_a, text_b) pairs.
        arg: the argument's name, as the message says it.
        pairs: the model takes sentence pairs.
    """
    refuse_table(texts, arg, pairs=pairs)
    if pairs:
        texts = [texts] if isinstance(texts, tuple) and len(texts) == 2 and isinstance(texts[0], str) else list(texts)
        bad = [i for i, t in enumerate(texts) if not (isinstance(t, (tuple, list)) and len(t) == 2
                                                       and all(isinstance(s, str) for s in t))]
        if bad:
            raise DataError(f"{arg}: items {bad[:10]} are not (text_a, text_b) pairs of strings; this model was "
                            "trained on sentence pairs")
        return [tuple(t) for t in texts]
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    # tuples only: predict(["a", "b"]) (a list meant for predict_batch) is said below
    if bad and all(isinstance(texts[i], tuple) and len(texts[i]) == 2 and
                   all(isinstance(s, str) for s in texts[i]) for i in bad):
        raise DataError(f"{arg}: items {bad[:10]} are (text_a, text_b) pairs, and this model takes single texts; "
                        "pass one text per item (to predict pairs, train on them with text_col=[a, b]; for a plain "
                        'Hugging Face folder of a pair model, write {"pairs": true} to its bertlearn.json)')
    if bad:
        nested = isinstance(texts[bad[0]], (list, tuple))
        raise DataError(f"{arg}: items {bad[:10]} are not strings (got {type(texts[bad[0]]).__name__}); "
                        "pass a list of texts" + ("; predict() takes one text, predict_batch() a list of them"
                                                  if nested else ""))
    return texts


def _finite_number(name: str) -> float:
    value = float(name)
    if not np.isfinite(value):
        raise ValueError(name)
    return value


def _label_name(v: Any) -> str:
    # 1.0 and 1 from a CSV column are the same label (a column of whole numbers is written "1.0" once it held a
    # NaN); keep '1' rather than '1.0'. Only that form: "01" and "1" stay two labels, as written
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    text = str(v).strip()
    return text.split(".")[0] if _WHOLE_FLOAT.fullmatch(text) else text


def _short(values: Sequence[Any], width: int = 40) -> list[str]:
    # labels as an error shows them: a text column named as label_col made messages of whole reviews
    return [v if len(v) <= width else v[:width - 3] + "..." for v in map(str, values)]


def _refuse_text_as_labels(series: pd.Series, source: str) -> None:
    # nearly every row its own class: the text (or a number to regress) was named as the labels, and a classifier
    # with a class per row learns nothing; real tasks with that many classes have several rows per class
    distinct = series.nunique()
    if distinct > 100 and distinct > 0.9 * len(series):
        numbers = pd.to_numeric(series, errors="coerce").notna().all()
        raise DataError(f"label_col {series.name!r} in {source} has {distinct} distinct values in {len(series)} rows "
                        f"(e.g. {_short(series.iloc[:3])}): a class per row. "
                        + ("Are they numbers to predict? pass regression=True" if numbers else
                           "Is it the text column? name the column of labels as label_col="))


def single_labels(train_labels: pd.Series, labels: Sequence[str] | None, source: str) -> list[str]:
    """The class names of a single-label task: `labels` checked against the training labels, or their sorted values
    (numbers in numeric order).

    Args:
        train_labels: the training label column.
        labels: names given (labels.csv or `labels=`), or None.
        source: the file or frame, as error messages name it.
    """
    missing = train_labels.isna().to_numpy()
    if missing.any():
        rows = _csv_lines(train_labels.index, missing)
        raise DataError(f"label_col {train_labels.name!r} in {source} has {int(missing.sum())} missing labels "
                        f"(CSV lines {rows}); fill or drop those rows")
    if labels is not None:
        labels = [str(l) for l in labels]
        present = {_label_name(v) for v in pd.unique(train_labels)}
        extra = [l for l in labels if l not in present]
        if extra:
            raise DataError(f"labels ({len(labels)} given, e.g. from labels.csv) include {extra[:10]}, which never occur "
                            f"in {source}; a class without training examples cannot be learned: remove it")
        if len(labels) != len(set(labels)):
            raise DataError(f"labels contain duplicates: {sorted(l for l in set(labels) if labels.count(l) > 1)}")
        return labels
    # the names sorted, not the raw cells: " pos" sorted before "neg" and was named "pos" after; numbers (also as a
    # CSV writes them) in numeric order (2 before 10) when every name is a finite number, where a "nan" label took
    # the file's row order (NaN compares false)
    names = list(dict.fromkeys(_label_name(v) for v in pd.unique(train_labels)))
    try:
        names = sorted(names, key=_finite_number)
    except (TypeError, ValueError):
        names = sorted(names)
    if len(names) < 2:
        raise DataError(f"label_col {train_labels.name!r} in {source} has a single class {names}; "
                        "a classifier needs at least two")
    return names


def _unknown_labels(series: pd.Series, source: str, extra: list[str], labels: list[str], saved_model: bool) -> str:
    """The message for labels of the data that are not among `labels`: a fix in labels.csv while training, in the
    data (or a new training) against a saved model, whose head has the labels it was trained with."""
    if saved_model:
        one = len(extra) == 1
        return (f"label_col {series.name!r} in {source} has labels {_short(extra)} that the model does not predict: "
                f"it predicts only {_short(labels[:20])}; remove or relabel those rows, or retrain with "
                f"{'that label' if one else 'those labels'}")
    return (f"label_col {series.name!r} in {source} has labels {_short(extra)} that are not among the known labels "
            f"{_short(labels[:20])}; add them to labels.csv or remove those rows")


def _label_indices(series: pd.Series, labels: list[str], source: str, *, saved_model: bool = False) -> np.ndarray:
    _refuse_missing(series, source)
    index = {l: i for i, l in enumerate(labels)}
    # once per distinct value, then a dictionary lookup per row (100k rows: 0.1 s less than naming every row)
    names = series.map({v: _label_name(v) for v in pd.unique(series)})
    codes = names.map(index)
    unknown = codes.isna().to_numpy()
    if unknown.any():
        raise DataError(_unknown_labels(series, source, sorted(set(names[unknown]))[:10], labels, saved_model))
    # copy=True: pandas 3 hands out read-only views, which torch warns about when a batch or metric wraps them
    return codes.to_numpy(dtype=np.int64, copy=True)


def _multi_hot(ldf: pd.DataFrame, labels: list[str], source: str, *, saved_model: bool = False) -> np.ndarray:
    """The 0/1 label columns as (n, len(labels)) float32 rows, column j holding label `labels[j]`.

    Columns are matched to labels by name, never by position: a labels.csv (or `labels=`) in another order than
    the columns must not train output j on another label's column."""
    names = [str(c) for c in ldf.columns]
    _refuse_repeats(labels, source)
    if len(set(names)) != len(names):
        raise DataError(f"label_col names the same column twice for {source}: {names}; name each column once")
    if set(names) != set(labels):
        no_column = [l for l in labels if l not in names]
        no_label = [c for c in names if c not in labels]
        gaps = ([f"label{'s' if len(no_column) > 1 else ''} {no_column[:10]} without a column"] if no_column else []) \
            + ([f"column{'s' if len(no_label) > 1 else ''} {no_label[:10]} without a label"] if no_label else [])
        one = " A single column holding several labels per row takes label_delim= (e.g. '|')." \
            if len(names) == 1 else ""
        whose = f"the model's labels {labels[:20]}" if saved_model else \
            f"the labels {labels[:20]} (labels.csv or labels=)"
        # a saved model's labels are fixed: the data's columns are what can change
        fix = ("give one 0/1 column per label of the model, named as its labels (label_col / --label-col), in any "
               "order, or retrain with the data's labels") if saved_model else "list the same names, in any order"
        raise DataError(f"{whose} and the label_col columns {names[:20]} of "
                        f"{source} name different labels ({' and '.join(gaps)}); columns are matched to labels by "
                        f"name, so {fix}.{one}")
    values = ldf.iloc[:, [names.index(l) for l in labels]].to_numpy()
    try:
        arr = values.astype(np.float32)
        ok = np.isin(arr, (0.0, 1.0)).all()
    except (TypeError, ValueError):
        ok = False
    if not ok and values.dtype == object:  # a CSV's cells as written: pandas writes booleans as True / False
        try:
            arr = np.vectorize(lambda v: _BOOL_CELLS.get(v.strip().lower(), v) if isinstance(v, str) else v,
                               otypes=[object])(values).astype(np.float32)
            ok = np.isin(arr, (0.0, 1.0)).all()
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise DataError(f"multi-label columns {names[:10]} in {source} must hold only 0 and 1")
    return arr


def _refuse_missing(series: pd.Series, source: str) -> None:
    if series.isna().any():
        rows = _csv_lines(series.index, series.isna().to_numpy())
        raise DataError(f"label_col {series.name!r} in {source} has missing labels (CSV lines {rows})")


def _refuse_repeats(labels: list[str], source: str) -> None:
    # a label listed twice keeps one output row of the head, and its other row is never a positive target
    if len(set(labels)) != len(labels):
        twice = sorted(l for l in set(labels) if labels.count(l) > 1)
        raise DataError(f"the labels for {source} (labels.csv or labels=) list {twice} more than once; list each "
                        "label once")


def _delimited_labels(series: pd.Series, delim: str, source: str) -> list[str]:
    _refuse_missing(series, source)
    names = sorted({p.strip() for v in series.astype(str) for p in v.split(delim) if p.strip()})
    if len(names) < 2:
        raise DataError(f"label_col {series.name!r} in {source} has fewer than two labels {names} with "
                        f"label_delim={delim!r}")
    return names


def _delimited_multi_hot(series: pd.Series, labels: list[str], delim: str, source: str, *,
                         saved_model: bool = False) -> np.ndarray:
    # every part, given labels or not: an empty cell became a row of no labels where labels.csv was given
    _refuse_missing(series, source)
    _refuse_repeats(labels, source)
    index = {l: i for i, l in enumerate(labels)}
    out = np.zeros((len(series), len(labels)), dtype=np.float32)
    unknown = set()
    for row, value in enumerate(series.astype(str)):
        for part in value.split(delim):
            part = part.strip()
            if part in index:
                out[row, index[part]] = 1.0
            elif part:
                unknown.add(part)
    if unknown:
        raise DataError(_unknown_labels(series, source, sorted(unknown)[:10], labels, saved_model))
    return out


def _float_targets(series: pd.Series, source: str) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        rows = _csv_lines(series.index, bad)
        raise DataError(f"label_col {series.name!r} in {source} needs numbers for regression; CSV lines {rows} are "
                        f"missing or not numeric (e.g. {series[bad].iloc[0]!r})")
    out = values.to_numpy(dtype=np.float32, copy=True)  # writable, as in _label_indices
    infinite = ~np.isfinite(out)  # "inf", "-Infinity", or beyond float32 (1e39): an inf loss, NaN weights
    if infinite.any():
        rows = _csv_lines(series.index, infinite)
        raise DataError(f"label_col {series.name!r} in {source} needs finite numbers for regression; CSV lines "
                        f"{rows} are infinite or beyond float32's range (e.g. {series[infinite].iloc[0]!r})")
    return out


def class_weights(value: Any, targets: np.ndarray, n_labels: int, arg: str, problem_type: str,
                   needs: str) -> np.ndarray | None:
    """Per-class `weight` (single-label) or per-label `pos_weight` (multi-label), given or 'balanced'.

    Args:
        value: one number per label, "balanced", or None.
        targets: the training targets ("balanced" counts them).
        n_labels: how many labels.
        arg: "weight" or "pos_weight", as the message says it.
        problem_type: the task.
        needs: the task the argument applies to.
    """
    if value is None:
        return None
    if problem_type != needs:
        other = "weight" if arg == "pos_weight" else "pos_weight"
        raise DataError(f"{arg} applies to {needs.replace('_', ' ')}; this task is {problem_type.replace('_', ' ')}"
                        + ("" if problem_type == REGRESSION else f" (use {other})"))
    if isinstance(value, str):
        if value != "balanced":
            raise DataError(f"{arg}={value!r}: give one number per label or 'balanced'")
        if problem_type == SINGLE:
            counts = np.bincount(targets, minlength=n_labels).astype(np.float64)
            return (len(targets) / (n_labels * np.maximum(counts, 1))).astype(np.float32)
        pos = targets.sum(axis=0)
        return ((len(targets) - pos) / np.maximum(pos, 1)).astype(np.float32)
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if len(arr) != n_labels or not (arr > 0).all():
        raise DataError(f"{arg} has {len(arr)} values {arr.tolist()[:10]}; give {n_labels} positive numbers, one per "
                        "label in label order, or 'balanced'")
    return arr


def check_label_use(labels: Sequence[str], targets: np.ndarray, source: str, *, delimited: bool) -> None:
    """A multi-label task's labels that no training row has: refused when the labels were listed for joined
    labels (`label_delim`: a labels.csv with a header line made a dead output), said for 0/1 columns (a column
    of zeros is data, e.g. a rare label a sample missed; its output only learns "no").

    Args:
        labels: the label names, in output order.
        targets: the training rows' multi-hot targets (n, len(labels)).
        source: the training file or frame, as the message says it.
        delimited: whether the labels were joined in one column (`label_delim`).
    """
    unused = [l for l, n in zip(labels, np.asarray(targets).sum(0)) if n == 0]
    if not unused:
        return
    if delimited:
        raise DataError(f"labels ({len(labels)} given, e.g. from labels.csv) include {_short(unused[:10])}, which never "
                        f"occur in {source}; a label without training examples cannot be learned: remove it "
                        "(labels.csv holds one label per line, no header)")
    one = len(unused) == 1
    warnings.warn(f"label column{'' if one else 's'} {_short(unused[:10])} of {source} {'has' if one else 'have'} no "
                  f"positive row, so {'its output' if one else 'their outputs'} can only learn 'no' (and its F1 is "
                  "0 or undefined); drop the column or add rows that have the label", stacklevel=user_stacklevel())


def labels_and_targets(parts: Sequence[tuple[pd.DataFrame, str]], problem_type: str, *,
                       labels: Sequence[str] | None = None, label_delim: str | None = None
                       ) -> tuple[list[str], list[np.ndarray]]:
    """The label names (given, or read off the first part) and each part's targets for the task.

    Args:
        parts: (label columns, source name) per split, training first.
        problem_type: the task (`SINGLE`, `MULTI` or `REGRESSION`).
        labels: label names in output order (labels.csv or `labels=`); default: read off the training part.
        label_delim: separator of several labels in one column (multi-label).
    """
    first, source = parts[0]
    if problem_type == MULTI and label_delim is not None:
        given = labels is not None
        labels = list(labels) if given else _delimited_labels(first.iloc[:, 0], label_delim, source)
        targets = [_delimited_multi_hot(ldf.iloc[:, 0], labels, label_delim, src) for ldf, src in parts]
        check_label_use(labels, targets[0], source, delimited=True)
        return labels, targets
    if problem_type == MULTI:
        labels = list(labels) if labels is not None else [str(c) for c in first.columns]
        targets = [_multi_hot(ldf, labels, src) for ldf, src in parts]
        check_label_use(labels, targets[0], source, delimited=False)
        return labels, targets
    if problem_type == REGRESSION:
        return [str(first.columns[0])], [_float_targets(ldf.iloc[:, 0], src) for ldf, src in parts]
    _refuse_text_as_labels(first.iloc[:, 0], source)
    labels = single_labels(first.iloc[:, 0], labels, source)
    return labels, [_label_indices(ldf.iloc[:, 0], labels, src) for ldf, src in parts]
