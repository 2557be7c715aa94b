"""Write outputs atomically: a temporary file (or folder) beside the target, renamed into place only when complete."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from archc.errors import ArchcError


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write that becomes `path` only once the block ends without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a user's output follows their umask
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `path` to fill; on success it replaces `path` (an existing folder is replaced
    whole), on any exception it is removed and `path` is untouched.

    The folder is created in `path`'s parent (so the final rename stays on one file system) with permissions that
    follow the umask. Everything written into it is fsynced before the rename. Replacing an existing folder takes
    two renames (old aside, new in) and then deletes the old one: a crash between them leaves `path` missing and
    the old folder as `.<name>.old.*` beside it, never a half-written `path`. A target that is a file or a symbolic
    link is refused with `ArchcError`, and so is an existing folder when `overwrite` is false.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ArchcError(f"cannot write a folder to {str(path)!r}: give the output folder a name", code="bad-output")
    _check_target(path, overwrite)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}."))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a user's output follows their umask
        yield tmp
        _fsync_tree(tmp)
        _check_target(path, overwrite)  # again: something may have appeared while the folder was filled
        if os.path.lexists(path):
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.old."))
            try:
                os.rename(path, old)  # onto the empty placeholder, which rename replaces
            except BaseException:
                os.rmdir(old)
                raise
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)  # put the old folder back
                raise
            shutil.rmtree(old, ignore_errors=True)  # the new folder is in place; a leftover is only litter
        else:
            os.rename(tmp, path)
        _fsync(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_symlink():
        raise ArchcError(f"{path} is a symbolic link; remove it or choose another output folder", code="output-exists")
    if path.exists() and not path.is_dir():
        raise ArchcError(f"{path} exists and is a file, not a folder; remove it or choose another output folder",
                         code="output-exists")
    if path.exists() and not overwrite:
        raise ArchcError(f"{path} already exists; remove it, choose another output folder, or allow overwriting",
                         code="output-exists")


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (and `root`), so a rename never publishes unwritten data."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                _fsync(p)
        _fsync(dirpath)


def _fsync(path: str | Path) -> None:
    """Best effort: a file we cannot open for reading, or a folder on a platform that cannot fsync one (Windows),
    is skipped rather than failing the write."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
