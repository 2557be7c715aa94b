"""archc.util.atomic.atomic_dir: a folder appears whole or not at all, and a failure leaves no trace."""
from __future__ import annotations

import os
import stat

import pytest
from helpers import raises

from archc.util import atomic
from archc.util.atomic import atomic_dir


def listing(folder) -> dict[str, str]:
    """Every file under `folder`, relative path → text."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def old_output(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "old.txt").write_text("old")
    (out / "sub" / "keep.txt").write_text("old too")
    return out


def test_creates_the_folder_when_absent(tmp_path):
    out = tmp_path / "deep" / "out"  # missing parents are made, as write_bytes does
    with atomic_dir(out) as d:
        assert d.parent == out.parent and d.name.startswith(".out.") and not out.exists()
        (d / "a.txt").write_text("a")
    assert listing(out) == {"a.txt": "a"}
    assert os.listdir(out.parent) == ["out"]  # no temporary folder left beside it


def test_success_replaces_an_existing_folder_whole(tmp_path):
    out = old_output(tmp_path)
    with atomic_dir(out) as d:
        (d / "new.txt").write_text("new")
        assert listing(out) == {"old.txt": "old", "sub/keep.txt": "old too"}  # untouched until the end
    assert listing(out) == {"new.txt": "new"}  # no old file survives
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_exception_leaves_no_trace(tmp_path, error):
    out = old_output(tmp_path)
    with pytest.raises(type(error)):
        with atomic_dir(out) as d:
            (d / "new.txt").write_text("half")
            raise error
    assert listing(out) == {"old.txt": "old", "sub/keep.txt": "old too"}
    assert os.listdir(tmp_path) == ["out"]


def test_exception_without_a_previous_folder_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "out") as d:
            (d / "x").write_text("x")
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    out = old_output(tmp_path)
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old aside worked; moving the new folder in fails
            raise OSError("disk on fire")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="disk on fire"):
        with atomic_dir(out) as d:
            (d / "new.txt").write_text("new")
    assert listing(out) == {"old.txt": "old", "sub/keep.txt": "old too"}
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], ids=oct)
def test_permissions_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "out") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask


def test_an_existing_file_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with raises("output-exists", naming=str(out)):
        with atomic_dir(out):
            pytest.fail("the body must not run")
    assert out.read_text() == "a file" and os.listdir(tmp_path) == ["out"]


def test_a_file_that_appears_meanwhile_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    with raises("output-exists", naming=str(out)):
        with atomic_dir(out) as d:
            (d / "new.txt").write_text("new")
            out.write_text("someone else's")
    assert out.read_text() == "someone else's" and os.listdir(tmp_path) == ["out"]


def test_a_symlink_is_refused(tmp_path):
    real = old_output(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with raises("output-exists", naming=str(link)):
        with atomic_dir(link):
            pass
    assert link.is_symlink() and listing(real) == {"old.txt": "old", "sub/keep.txt": "old too"}


def test_overwrite_false_refuses_an_existing_folder_but_creates_a_new_one(tmp_path):
    out = old_output(tmp_path)
    with raises("output-exists", naming=str(out)):
        with atomic_dir(out, overwrite=False):
            pytest.fail("the body must not run")
    assert listing(out) == {"old.txt": "old", "sub/keep.txt": "old too"}
    with atomic_dir(tmp_path / "fresh", overwrite=False) as d:
        (d / "f").write_text("f")
    assert listing(tmp_path / "fresh") == {"f": "f"}


@pytest.mark.parametrize("name", [".", ".."])
def test_a_path_without_a_folder_name_is_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with raises("bad-output", naming=repr(name)):
        with atomic_dir(name):
            pass
    assert os.listdir(tmp_path) == []


def test_write_text_and_write_bytes_are_unchanged(tmp_path):
    atomic.write_text(tmp_path / "a" / "t.txt", "héllo")
    atomic.write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    assert (tmp_path / "a" / "t.txt").read_text("utf-8") == "héllo"
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path / "a")) == ["b.bin", "t.txt"]
