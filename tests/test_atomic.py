"""The one helper every save goes through: a write lands whole or not at all, and a killed writer's leftovers go."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bertlearn.atomic import atomic_dir, atomic_file


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    with atomic_file(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible until the block ends
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_dir_swaps_the_whole_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("2")
            raise KeyboardInterrupt
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a": "1", "b": "1"}
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c"]  # the new folder replaces the old one, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_leftovers_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited: its pid no longer runs
    (tmp_path / f".model.tmp-{pid}").mkdir()
    (tmp_path / f".f.txt.tmp-{pid}").write_text("half")
    live = tmp_path / ".f.txt.tmp-1"  # pid 1 is alive: a write in progress elsewhere is left alone
    live.write_text("busy")
    with atomic_dir(tmp_path / "model"):
        pass
    with atomic_file(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".f.txt.tmp-1", "f.txt", "model"]


def test_a_writer_killed_between_its_two_renames_loses_nothing(tmp_path):
    """The old folder is moved aside before the new one takes its name: a kill in between leaves only the moved-aside
    copy, which the next write (or read of the target through a new write) puts back instead of deleting."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    target = tmp_path / "model"
    aside = tmp_path / f".model.old-{int(dead.stdout)}"
    aside.mkdir()
    (aside / "weights").write_text("previous")  # what the killed writer had moved aside
    with pytest.raises(RuntimeError):
        with atomic_dir(target):
            raise RuntimeError("this write fails too")
    assert (target / "weights").read_text() == "previous"


def test_a_failed_swap_puts_the_previous_folder_back(tmp_path, monkeypatch):
    import os
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("previous")
    real = os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("new")
    monkeypatch.setattr(os, "replace", real)
    assert (target / "weights").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_working_directory_is_never_swapped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="it is \\(or holds\\) the working directory"):
        with atomic_dir("."):
            pass


def test_recover_puts_back_a_dead_writers_copy_even_under_this_process_id(tmp_path):
    """A restarted container often gives the new job the killed job's PID: its `.NAME.old-PID` looked alive (it is
    this process's own), so a resume found no checkpoint, and the first write then deleted it as its own leftover."""
    import os

    from bertlearn.atomic import recover
    target = tmp_path / "last"
    aside = tmp_path / f".last.old-{os.getpid()}"
    aside.mkdir()
    (aside / "state.json").write_text("{}")
    recover(target)
    assert (target / "state.json").is_file() and not aside.exists()
    recover(tmp_path / "nothing" / "here")  # a folder that never was: nothing to do
