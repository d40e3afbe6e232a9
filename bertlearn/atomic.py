"""Atomic writes: every file and folder bertlearn saves goes through here, so a crash or a kill mid-save leaves
the previous version whole and never half a new one.

A write goes to a temporary sibling named `.NAME.tmp-PID` and is renamed over the target at the end
(`os.replace`, atomic on one file system). Temporaries left by a process that was killed are removed the next
time the same target is written. A leaf module: it imports nothing else from bertlearn.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_dir", "atomic_file", "recover"]


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def _sweep(path: Path) -> None:
    """Clean up after writers of `path` that no longer run: a previous version moved aside (`.NAME.old-PID`) by a
    writer killed before it put the new one in place goes back to `path`; half-written temporaries go."""
    for stale in sorted(path.parent.glob(f".{path.name}.*-*")):
        pid = stale.name.rsplit("-", 1)[-1]
        # this process's own name is a dead writer's whose PID it was given again (a restarted container): no write
        # of this process is under way while it sweeps
        if pid != str(os.getpid()) and _pid_alive(pid):
            continue
        if stale.name.startswith(f".{path.name}.old-") and not path.exists():
            with contextlib.suppress(FileNotFoundError):  # another process put it back first
                os.replace(stale, path)
        elif stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def recover(path: str | Path) -> None:
    """Put back a version of folder `path` that a writer killed between its two renames left aside, so a reader
    finds it (a resume looked for the checkpoint in that instant's gap, found none, trained from the start, and its
    first save then replaced the one it should have resumed).

    Args:
        path: the folder `atomic_dir` writes.
    """
    path = Path(path).absolute()
    if path.parent.is_dir():
        _sweep(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; when the block ends without an error it replaces `path`.

    On an error the temporary folder is removed and `path` is left as it was.

    Args:
        path: the folder to (re)write.
    """
    path = Path(path).absolute()
    if Path.cwd() == path or path in Path.cwd().parents:
        raise OSError(f"cannot replace {str(path)!r} as a whole: it is (or holds) the working directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        os.replace(path, old)  # a folder cannot be renamed over a non-empty one: move the old one aside first
    try:
        os.replace(tmp, path)
    except BaseException:
        if old.exists() and not path.exists():
            os.replace(old, path)  # the previous version back in place
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file name beside `path`; when the block ends without an error the file replaces `path`.

    On an error the temporary file is removed and `path` is left as it was.

    Args:
        path: the file to (re)write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
