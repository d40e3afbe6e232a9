"""Reading the data: CSV files and DataFrames, their text and label columns, and the labels as model targets.

Everything here names the file, column, rows or value it rejects, and the fix. The task types live here too:
they decide how a label column becomes targets (class indices, multi-hot rows, floats).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import re
import unicodedata
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, user_stacklevel

if TYPE_CHECKING:  # annotations only: encode imports this module
    from .encode import TextEncoder

__all__ = ["SINGLE", "MULTI", "REGRESSION", "PROBLEM_TYPES", "read_csv", "read_csv_chunks", "read_label_file", "empty_texts", "blank_text", "regression_name", "holdout_share", "VALID_PCT",
           "read_watching_fields", "row_names_in_front",
           "resolve_columns", "columns_like_training",
           "check_column_counts", "refuse_number_columns", "texts_from_frame", "targets_from_frame", "labels_and_targets", "single_labels", "class_weights",
           "task_options", "positive_int", "as_texts", "refuse_table", "CSV_CELLS", "csv_quoting", "check_csv_text",
           "column_list", "holds_lists", "label_parts", "refuse_text_as_labels", "mark_repeated_names",
           "REPEATED_NAMES",
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


def read_csv(path: str | Path, arg: str = "input", *, sep: str | None = None, encoding: str | None = None,
             quoting: int | None = None) -> pd.DataFrame:
    """Read a CSV with bertlearn's checks: a missing file lists its folder, cp1252 is detected, a tab-separated
    file read as CSV is named, a quote that would be dropped is a `DataError` naming the line, a quoted cell that
    may be rows merged by a stray quote is said, and the header's repeated names are refused where a column of
    that name is read (`check_csv_text`).

    Args:
        path: the file.
        arg: how error messages name it.
        sep, encoding: as for `pandas.read_csv` (default "," and UTF-8 with a cp1252 fallback).
        quoting: `csv.QUOTE_MINIMAL` (default: a field in double quotes is quoted, its quotes doubled, as pandas
            and spreadsheets write them) or `csv.QUOTE_NONE` (a file written without quoting: every quote is
            part of its field).
    """
    return _read_csv(Path(path), arg, sep=sep, encoding=encoding, quoting=csv_quoting(quoting))


def csv_quoting(quoting: Any, arg: str = "quoting") -> int:
    """`quoting` checked: `csv.QUOTE_MINIMAL` (None: the default) or `csv.QUOTE_ALL`, which read alike, or
    `csv.QUOTE_NONE`; anything else a `DataError`.

    Args:
        quoting: what the caller gave.
        arg: the argument's name, as the message says it.
    """
    if quoting is None:
        return csv.QUOTE_MINIMAL
    if isinstance(quoting, bool) or quoting not in (csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE):
        raise DataError(f"{arg}={quoting!r}: pass csv.QUOTE_MINIMAL (the default: a field in double quotes is "
                        "quoted, its quotes doubled) or csv.QUOTE_NONE (a file written without quoting: every quote "
                        "is part of its field)")
    return int(quoting)


def _read_csv(path: Path, arg: str, *, sep: str | None, encoding: str | None, quoting: int) -> pd.DataFrame:
    if not path.is_file():
        where = path.parent if path.parent.is_dir() else None
        hint = f"; files there: {sorted(p.name for p in where.iterdir())[:20]}" if where else \
            f"; directory {str(path.parent)!r} does not exist either"
        raise DataError(f"{arg}: file {str(path)!r} not found{hint}")
    # pandas' own reading of text columns is 3x faster than dtype=str (13 against 40 ms for 100k rows): read so,
    # and again as written only where it took a column for numbers or booleans
    # low_memory=False: pandas guesses per 262k-row chunk otherwise, and a column numeric in one chunk only comes
    # back as an object column of ints and strings
    read_kwargs = dict(sep=sep or ",", encoding=encoding or "utf-8-sig", quoting=quoting, low_memory=False,
                       **CSV_MISSING)
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
        read_kwargs["encoding"] = "cp1252"
        try:
            df = _checked_read(path, arg, {**read_kwargs, **CSV_CELLS})
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
    repeated = check_csv_text(path, arg, sep=read_kwargs["sep"], encoding=read_kwargs["encoding"], quoting=quoting)
    return mark_repeated_names(df, repeated)


def read_csv_chunks(path: str | Path, arg: str = "input", *, sep: str | None = None, chunksize: int = 10_000,
                    quoting: int | None = None) -> Iterator[pd.DataFrame]:
    """A CSV read as written (`CSV_CELLS`) `chunksize` rows at a time, with `read_csv`'s checks: UTF-8, else cp1252
    with the same warning; a file pandas cannot parse, with rows holding fields past the header's or a stray quote
    (`check_csv_text`) is a `DataError` naming the file (and the line) and the fix; each chunk carries the header's
    repeated names (`mark_repeated_names`), refused where such a column is read.

    Args:
        path: the file.
        arg: how error messages name it.
        sep: the field separator (default ",").
        chunksize: rows per chunk.
        quoting: `csv.QUOTE_MINIMAL` (default) or `csv.QUOTE_NONE`, as for `read_csv`.
    """
    path = Path(path)
    quoting = csv_quoting(quoting)
    if not path.is_file():
        read_csv(path, arg, sep=sep)  # raises with the folder's listing
    # the whole file is decoded up front: pandas meets a byte that is not UTF-8 in whichever chunk holds it, after
    # the chunks before it were used (written out), where read_csv reads the file again as cp1252
    encoding = _utf8_or_cp1252(path)
    kwargs = dict(sep=sep or ",", encoding=encoding, quoting=quoting, chunksize=chunksize, **CSV_CELLS)
    try:
        # before the first chunk is used: a merged row found later would come after predictions were written
        repeated = check_csv_text(path, arg, sep=kwargs["sep"], encoding=encoding, quoting=quoting)
        reader, verdict = pd.read_csv(path, **kwargs), None
        try:  # a reader left unfinished (a caller's early stop or error) closes its file
            while True:
                chunk, dropped = read_watching_fields(lambda: next(reader, None))
                if dropped and verdict is None:  # the file is scanned once, whichever chunk warns
                    verdict = row_names_in_front(path, arg, sep=kwargs["sep"], encoding=encoding, quoting=quoting)
                    if verdict:  # every row has its row name in front, the first chunk's too: read from the start
                        reader.close()
                        reader = pd.read_csv(path, **{**kwargs, "index_col": None})
                        chunk = next(reader, None)
                        _say_row_names(path, chunk)
                if chunk is None:
                    return
                yield mark_repeated_names(chunk, repeated)
        finally:
            reader.close()
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
    if dropped and row_names_in_front(path, arg, sep=kwargs["sep"], encoding=kwargs["encoding"],
                                      quoting=kwargs["quoting"]):
        df = pd.read_csv(path, **{**kwargs, "index_col": None})
        _say_row_names(path, df)
    return df


def _say_row_names(path: Path, df: pd.DataFrame) -> None:
    # a choice made for the user (the first field dropped from the data): said, once per read
    warnings.warn(f"{path.name}: every row has one field more than the header, and those first fields are unique "
                  f"(e.g. {_short(df.index[:3])}): read as row names (as R's write.table writes them), not as data; "
                  f"the columns are the header's {_short(list(df.columns)[:20])}", stacklevel=user_stacklevel())


def row_names_in_front(path: Path, arg: str, *, sep: str, encoding: str, quoting: int = csv.QUOTE_MINIMAL) -> bool:
    """After pandas dropped fields past the header's: True where every data row has exactly one field more than the
    header, never empty, and those first fields are unique (row names in front, as R's write.table writes them:
    read the first field as the index), False where the dropped fields are all empty (delimiters at the ends of
    rows: nothing lost); otherwise a `DataError` naming the first row whose extra fields hold data (an unquoted
    separator in a text, mostly: rows like "Paris, France,europe" whose first fields repeat are cut texts, not row
    names).

    Args:
        path: the CSV file.
        arg: how error messages name it.
        sep: its field separator.
        encoding: its encoding.
        quoting: as the file is read (`csv.QUOTE_MINIMAL` or `csv.QUOTE_NONE`).
    """
    if len(sep) != 1:  # a regular expression: no line to name
        raise DataError(f"{arg}: {str(path)!r} has rows with more fields than its header; fix those rows or quote "
                        "the fields that hold the separator")
    header, first, every, names = None, None, True, set()
    try:
        with _big_fields(), open(path, encoding=encoding, newline="") as fh:
            rows = csv.reader(fh, delimiter=sep, quoting=quoting)
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
                if every:
                    # row names are unique (R's are, 1, 2, 3...); a first field that repeats is data, a text cut at
                    # an unquoted separator, which taken as the index trained on the text's rest
                    every = row[0] not in names
                    names.add(row[0])
    except csv.Error as e:
        raise DataError(f"{arg}: {str(path)!r} is not a valid CSV ({e}); check the separator and the quoting") from None
    if first is None:
        return False
    if every:
        return True
    line, row, extra = first
    raise DataError(f"{arg}: {str(path)!r} line {line} has {len(row)} fields but the header has {len(header)} "
                    f"({_short(header[:20])}); its extra field{'s' if len(extra) > 1 else ''} "
                    f"{_short([e for e in extra if e][:5])} would be lost. Quote the field that holds a {sep!r} "
                    f'(e.g. "a{sep} b"), or fix the row to {len(header)} fields')


@contextlib.contextmanager
def _big_fields() -> Iterator[None]:
    # the csv module refuses fields over 128 KiB, which pandas reads (a long text): raised for a scan only
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(limit)


_QUOTE = '"'
# separators that prose holds: a quoted text with one and a line break is an ordinary multi-paragraph text there;
# with a tab (or "|") and a line break it is what rows merged by a stray quote look like
_PROSE_SEPARATORS = (",", ";")
REPEATED_NAMES = "bertlearn_repeated_names"  # the attrs key of a frame read from a file whose header repeats names


def check_csv_text(path: Path, arg: str, *, sep: str, encoding: str, quoting: int) -> dict[str, str]:
    """Refuse what pandas reads from a CSV without a word: a header naming a column twice (pandas renamed the second
    "label.1", and the first was used), and, unless `quoting` is `csv.QUOTE_NONE`, a field that opens with a quote
    that does not close at its end (`"bad" acting` read as `bad acting`; an opening quote in a TSV ran on over
    the next rows, merging them into one cell), found by Python's csv module in strict mode: a `DataError` naming
    the file, the line and the fix. A quoted cell spanning lines that holds the separator and a line break (rows
    merged, or a multi-line text with a tab; not checked for "," and ";", which texts hold) is said once a file.

    Only rows whose first line holds a quote are parsed (a row without one is a single line and cannot be read
    otherwise): 1.6 million tweets (135 MB), a quarter of them quoted, take about 0.6 s, where pandas reads them
    in about 0.55 s.

    Args:
        path: the CSV file.
        arg: how error messages name it.
        sep: its field separator (a regular expression of several characters is not checked).
        encoding: its encoding.
        quoting: how it is read (`csv.QUOTE_MINIMAL`, `csv.QUOTE_ALL` or `csv.QUOTE_NONE`).
    """
    if len(sep) != 1:
        return
    header_next, start, end, text = [True], [0], [0], [""]
    with _big_fields(), open(path, encoding=encoding, newline="") as fh:
        def lines() -> Iterator[str]:
            # feeds the reader the rows to check: the header, then from a line holding a quote to its row's end
            n = 0
            for line in fh:
                n += 1
                if header_next[0] is not None:  # between rows: choose where the next one starts
                    if header_next[0] and not line.strip("\r\n"):
                        continue
                    if not header_next[0] and _QUOTE not in line:
                        continue
                    header_next[0], start[0], text[0] = None, n, line
                end[0] = n
                yield line

        rows = csv.reader(lines(), delimiter=sep, quotechar=_QUOTE, quoting=quoting, strict=True)
        try:
            header = next(rows, None)
            if header is None:
                return {}
            repeated = _repeated_names(path, arg, header)
            if quoting == csv.QUOTE_NONE:
                return repeated
            header_next[0] = False
            merged_check = sep not in _PROSE_SEPARATORS
            for row in rows:
                if merged_check and end[0] > start[0]:
                    merged_check = not _warn_merged_rows(path, arg, row, sep, start[0], end[0])  # once a file
                header_next[0] = False
            return repeated
        except csv.Error as e:
            shown = _short([text[0].rstrip("\r\n")], 60)[0]
            what = ("opens a quoted field (a field that starts with a quote, \") that the file never closes, so a "
                    "CSV reader reads the rest of the file into that one cell"
                    if "end of data" in str(e) else
                    f"has a field that starts with a quote ({_QUOTE}) that does not end the field, so a CSV reader "
                    "drops those quotes and reads on to the next quote, across lines: the text would change, or "
                    "rows merge into one cell")
            raise DataError(f"{arg}: {str(path)!r} line {start[0]} ({shown!r}) {what}. If the file was written "
                            "without quoting (texts as typed, quotes and all), pass quoting=csv.QUOTE_NONE (--quoting "
                            "none); otherwise put that field in quotes and double the quotes inside it (the text "
                            '"bad" acting is written """bad"" acting")') from None


def _repeated_names(path: Path, arg: str, header: list[str]) -> dict[str, str]:
    """Each name the header gives two columns, with the `DataError` message for reading it (`REPEATED_NAMES`)."""
    # an empty name is no name: pandas calls each "Unnamed: i", and nobody picks it by name
    return {name: f"{arg}: {str(path)!r} has {header.count(name)} columns named {name!r} in its header "
                  f"({_short(header[:20])}), so which one is meant is unclear (pandas renames the second "
                  f"{name + '.1'!r} and picks the first); rename them in the header so each name is one column"
            for name in dict.fromkeys(header) if name != "" and header.count(name) > 1}


def mark_repeated_names(df: pd.DataFrame, repeated: dict[str, str]) -> pd.DataFrame:
    """Note on `df` (its `attrs`) the names its file's header repeats, so that picking one is refused (`_column`);
    a column nobody picks may repeat a name.

    Args:
        df: a frame (or chunk) read from the file.
        repeated: what `check_csv_text` returned for it.
    """
    if repeated:
        df.attrs[REPEATED_NAMES] = dict(repeated)
    return df


def _warn_merged_rows(path: Path, arg: str, row: list[str], sep: str, start: int, end: int) -> bool:
    """Say (and return True) where a quoted cell spanning lines holds the separator and a line break."""
    for cell in row:
        # a quote in the cell was written doubled: a quoting writer's field (pandas quotes a text with a tab)
        if sep in cell and ("\n" in cell or "\r" in cell) and _QUOTE not in cell:
            # a warning, not an error: a quoting writer's multi-line text with a tab (code, a pasted table) is
            # this too, and refusing it would leave no way to read the file
            warnings.warn(f"{arg}: {str(path)!r} lines {start}-{end} are read as one text, a quoted field holding "
                          f"the separator {sep!r} and line breaks ({_short([cell], 60)[0]!r}). Right for a "
                          "multi-line text; but rows merged by a stray quote (a text starting with a quote) look "
                          "the same: if those lines are separate rows, pass quoting=csv.QUOTE_NONE (--quoting none) "
                          "for a file written without quoting, or put the text that starts with a quote in quotes "
                          'and double the quotes inside it (the text "bad" acting is written """bad"" acting")',
                          stacklevel=user_stacklevel())
            return True
    return False


def _column(df: pd.DataFrame, col: Any, arg: str, source: str) -> str:
    """Resolve a column name or integer position to a column name."""
    cols = list(df.columns)
    # a name first: a frame read with header=None, or with columns dropped, has integer names that are not the
    # positions (columns [0, 2, 1]: label_col=2 is the column named 2)
    integer = isinstance(col, (int, np.integer)) and not isinstance(col, bool)
    if integer and any(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c == col for c in cols):
        return _one_column(cols, col, arg, source)
    if integer:
        if not -len(cols) <= col < len(cols):
            raise DataError(f"{arg}={col} is out of range: {source} has {len(cols)} columns {cols}")
        return _refuse_repeated(df, _one_column(cols, cols[col], arg, source))
    if col in cols:
        return _refuse_repeated(df, _one_column(cols, col, arg, source))
    close = difflib.get_close_matches(str(col), [str(c) for c in cols], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"{arg}: column {col!r} not in {source}; columns are {cols}{hint}")


def _refuse_repeated(df: pd.DataFrame, name: Any) -> Any:
    # the header's own name, or pandas' rename of its second column ("label.1", picked by position or by that name)
    repeated = df.attrs.get(REPEATED_NAMES) or {}
    base = re.sub(r"\.\d+$", "", name) if isinstance(name, str) else name
    for key in (name, base):
        if key in repeated:
            raise DataError(repeated[key])
    return name


def _one_column(cols: list, name: Any, arg: str, source: str) -> Any:
    # a frame may hold two columns of one name (a CSV's are renamed "label.1"): the first was used without a word
    if cols.count(name) > 1:
        raise DataError(f"{arg}: {source} has {cols.count(name)} columns named {name!r}, so which one is meant is "
                        "unclear; rename them so each name is one column (e.g. df.columns = [...])")
    return name


def column_list(col: Any) -> list:
    """`col` as a list of column names or positions: a name or position alone, or any other iterable of them (a
    list, a tuple, a pandas Index such as `df.columns[1:]`, a numpy array, a Series).

    Args:
        col: what the user gave (`text_col`, `label_col`).
    """
    if isinstance(col, (str, bytes)) or not isinstance(col, Iterable):
        return [col]
    if isinstance(col, (set, frozenset)):
        # a set's order follows string hashing, which changes between runs: label columns are output order
        raise DataError(f"{col!r} is a set, whose order changes from run to run, and the columns' order is the "
                        f"model's output order; pass a list (e.g. {sorted(map(str, col))!r})")
    # numpy's scalars as Python's: the names are saved beside the model (bertlearn.json)
    return [c.item() if isinstance(c, np.generic) else c for c in col]


def resolve_columns(df: pd.DataFrame, col: Any, arg: str, source: str) -> list[str]:
    """Column names for `col` (a name, a position, or a list of either), or a `DataError` naming the columns there.

    Args:
        df: the frame.
        col: what the user gave (`text_col`, `label_col`).
        arg: the argument's name, as the message says it.
        source: the file or frame, as the message says it.
    """
    cols = column_list(col)
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
    given_list = column_list(given)
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


def blank_text(text: str) -> bool:
    """True where `text` has no visible character: only whitespace, control and format characters.

    Zero-width spaces, a byte-order mark, soft hyphens and U+FFFD are dropped by BERT's text cleaning: such a text
    becomes no token there, and the model answers for an empty input (a byte-level BPE keeps their bytes, as it
    keeps whitespace: content that says nothing either way).

    Args:
        text: one text.
    """
    return all(c.isspace() or c == "\ufffd" or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def empty_texts(s: pd.Series) -> np.ndarray:
    """A mask of the cells of text column `s` that are missing or blank (`blank_text`): the rows `dropna` drops.

    Args:
        s: a text column.
    """
    text = s.astype(str)
    empty = s.isna().to_numpy() | (text.str.strip() == "").to_numpy()
    # only a cell without a letter, digit or underscore can be blank: the rest skip the per-character test
    maybe = ~empty & ~text.str.contains(r"\w", regex=True).to_numpy(dtype=bool)
    if maybe.any():
        empty[maybe] = text[maybe].map(blank_text).to_numpy(dtype=bool)
    return empty


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
        bad = empty_texts(s)
        if bad.any() and not dropna:
            rows = _csv_lines(s.index, bad)
            invisible = int((bad & (s.astype(str).str.strip() != "").to_numpy() & s.notna().to_numpy()).sum())
            raise DataError(f"text_col {col!r} in {source} has {int(bad.sum())} empty or missing texts "
                            f"(CSV lines {rows}{'...' if bad.sum() > 10 else ''})"
                            f"{f', {invisible} of them only invisible characters (zero-width spaces, control characters)' if invisible else ''}"
                            f"; {empty_fix}")
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
        if label_delim is not None or (len(cols) == 1 and holds_lists(df[cols[0]])):
            return _delimited_multi_hot(df[cols[0]], encoder.labels, label_delim, source, saved_model=saved_model)
        return _multi_hot(df[cols], encoder.labels, source, saved_model=saved_model)
    if len(cols) != 1:
        raise DataError(f"label_col={label_col!r} names {len(cols)} columns; this model's task needs one")
    _refuse_lists(df[cols[0]], source, encoder.problem_type, saved_model=saved_model)
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


VALID_PCT = 0.2  # the share held out for validation when no validation set is given


def holdout_share(valid_pct: float | None, valid: str | None) -> float:
    """The share of the training rows to hold out: `valid_pct`, or `VALID_PCT` when it is None; a `DataError` when a
    validation set is given too (the share was ignored in silence: `valid_pct=0.5` beside the default val.csv).

    Args:
        valid_pct: the share asked for, or None.
        valid: how the validation set given is named in the message (e.g. "val_file / valid_df"), or None.
    """
    if valid_pct is not None and valid is not None:
        raise DataError(f"valid_pct={valid_pct} holds out a share of the training rows only when no validation set "
                        f"is given, and {valid} is: leave valid_pct out, or give no validation set")
    return VALID_PCT if valid_pct is None else valid_pct


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


def as_texts(texts: Any, arg: str, *, pairs: bool = False, say_empty: bool = True) -> list[Any]:
    """`texts` as a list of strings (or of (a, b) pairs), a single text wrapped; anything else a `DataError`.

    Args:
        texts: a text, a list of texts, or (text_a, text_b) pairs.
        arg: the argument's name, as the message says it.
        pairs: the model takes sentence pairs.
        say_empty: warn about blank texts (`blank_text`: empty, or only whitespace and invisible characters);
            each still gets its row.
    """
    refuse_table(texts, arg, pairs=pairs)
    if pairs:
        texts = [texts] if isinstance(texts, tuple) and len(texts) == 2 and isinstance(texts[0], str) else list(texts)
        bad = [i for i, t in enumerate(texts) if not (isinstance(t, (tuple, list)) and len(t) == 2
                                                       and all(isinstance(s, str) for s in t))]
        if bad:
            raise DataError(f"{arg}: items {bad[:10]} are not (text_a, text_b) pairs of strings; this model was "
                            "trained on sentence pairs")
        texts = [tuple(t) for t in texts]
        if say_empty:
            _say_empty(arg, [i for i, (a, b) in enumerate(texts) if blank_text(a) or blank_text(b)], pairs=True)
        return texts
    if isinstance(texts, str):
        texts = [texts]
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
    if say_empty:
        _say_empty(arg, [i for i, t in enumerate(texts) if blank_text(t)])
    return texts


def _say_empty(arg: str, empty: list[int], *, pairs: bool = False) -> None:
    # a blank row of a list (predict_batch(df.text.tolist())) was answered from the special tokens alone, a
    # confident label for no text, while `bertlearn predict` and the CSV readers refuse such rows
    if empty:
        what = "pairs with a blank side" if pairs else "blank"
        warnings.warn(f"{arg}: item{'s' if len(empty) > 1 else ''} {empty[:10]}"
                      f"{f' (and {len(empty) - 10} more)' if len(empty) > 10 else ''} {'are' if len(empty) > 1 else 'is'} "
                      f"{what} (empty, or only whitespace and invisible characters): each still gets a prediction, the model's answer for no text; drop or fill them "
                      "if that is not what you want", stacklevel=user_stacklevel())


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


def refuse_text_as_labels(series: pd.Series, source: str, n_rows: int | None = None) -> None:
    """Refuse a single-label column with nearly a class per row (more than 100 distinct values, over 90% of the
    rows): the text, or numbers to regress, named as the labels.

    Args:
        series: the label column, or (with `n_rows`) its distinct values in order of appearance.
        source: the file or frame, as the message names it.
        n_rows: the column's number of rows where `series` holds its distinct values only (a file read in chunks).
    """
    # nearly every row its own class: the text (or a number to regress) was named as the labels, and a classifier
    # with a class per row learns nothing; real tasks with that many classes have several rows per class
    distinct = series.nunique()
    n_rows = len(series) if n_rows is None else n_rows
    if distinct > 100 and distinct > 0.9 * n_rows:
        numbers = pd.to_numeric(series, errors="coerce").notna().all()
        raise DataError(f"label_col {series.name!r} in {source} has {distinct} distinct values in {n_rows} rows "
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


_LISTS = (list, tuple, set, frozenset, np.ndarray)  # a row's labels as datasets' to_pandas gives a Sequence column


def holds_lists(series: pd.Series) -> bool:
    """Whether a label column's cells are lists (tuples, sets, arrays) of labels.

    Args:
        series: the label column.
    """
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) not in ("mixed", "unknown-array"):
        return False  # strings, numbers: one C pass decides
    return any(isinstance(v, _LISTS) for v in series)


def label_parts(value: Any, delim: str | None) -> list[str]:
    """A multi-label cell's labels: each element of a list (tuple, set, array) named as a single label is, else the
    cell's text split at `delim`; empty parts left out.

    Args:
        value: the cell.
        delim: the separator of joined labels, or None (lists only).
    """
    if isinstance(value, _LISTS):
        parts = [_label_name(v) for v in np.asarray(value, dtype=object).reshape(-1)] \
            if isinstance(value, np.ndarray) else [_label_name(v) for v in value]
    elif delim is None:
        parts = [_label_name(value)]
    else:
        parts = [p.strip() for p in str(value).split(delim)]
    return [p for p in parts if p]


def _refuse_lists(series: pd.Series, source: str, problem_type: str, *, saved_model: bool = False) -> None:
    # a list's repr was one class ("['a', 'b']"), or pandas raised "unhashable type: 'list'"
    if not holds_lists(series):
        return
    example = next(v for v in series if isinstance(v, _LISTS))
    example = example.tolist() if isinstance(example, np.ndarray) else example
    task = ("regression (one number per row)" if problem_type == REGRESSION else
            "a single-label task (one label per row)")
    fix = ("this model predicts one label per text: give one label per row" if saved_model else
           "pass multi_label=True to read each list as the row's set of labels")
    raise DataError(f"label_col {series.name!r} in {source} holds lists of labels (e.g. {_short([example], 60)[0]}), "
                    f"and this is {task}; {fix}")


def _delimited_labels(series: pd.Series, delim: str | None, source: str) -> list[str]:
    _refuse_missing(series, source)
    names = sorted({p for v in series for p in label_parts(v, delim)})
    if len(names) < 2:
        how = f"label_delim={delim!r}" if delim is not None else "lists of labels"
        raise DataError(f"label_col {series.name!r} in {source} has fewer than two labels {names} with {how}")
    return names


def _delimited_multi_hot(series: pd.Series, labels: list[str], delim: str | None, source: str, *,
                         saved_model: bool = False) -> np.ndarray:
    # every part, given labels or not: an empty cell became a row of no labels where labels.csv was given
    _refuse_missing(series, source)
    _refuse_repeats(labels, source)
    index = {l: i for i, l in enumerate(labels)}
    out = np.zeros((len(series), len(labels)), dtype=np.float32)
    unknown = set()
    for row, value in enumerate(series):
        for part in label_parts(value, delim):
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


def regression_name(labels: Sequence[str] | None, column: Any) -> str:
    """The name of a regression's one output: the one label given, else the label column's name.

    Args:
        labels: label names given (`labels=` or labels.csv), or None.
        column: the label column.
    """
    if labels is None:
        return str(column)
    labels = list(labels)
    if len(labels) != 1:
        # labels=[...] given to a regression was ignored without a word
        raise DataError(f"labels: regression predicts one number per row, so it takes one name for its output (or "
                        f"none: the label column's {str(column)!r}); got {len(labels)} labels {_short(labels[:10])}: "
                        "pass labels=None, or one name, or regression=False to classify")
    return str(labels[0])


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
    if problem_type == MULTI and (label_delim is not None or (first.shape[1] == 1 and holds_lists(first.iloc[:, 0]))):
        # one column of joined labels, or of lists of them (each element a label)
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
    for ldf, src in parts:
        _refuse_lists(ldf.iloc[:, 0], src, problem_type)
    if problem_type == REGRESSION:
        return ([regression_name(labels, first.columns[0])],
                [_float_targets(ldf.iloc[:, 0], src) for ldf, src in parts])
    refuse_text_as_labels(first.iloc[:, 0], source)
    labels = single_labels(first.iloc[:, 0], labels, source)
    return labels, [_label_indices(ldf.iloc[:, 0], labels, src) for ldf, src in parts]
