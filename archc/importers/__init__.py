"""Importers: a network described in another framework's file becomes an archc spec (text the user can read and
edit), which then goes through the spec language like any other: Darknet's `.cfg` (darknet.py), Caffe's
`.prototxt` (caffe.py)."""
from __future__ import annotations

from pathlib import Path

from archc.errors import ArchcError
from archc.importers import caffe, darknet
from archc.importers.imported import Imported

SUFFIXES = {".cfg": darknet.convert, ".prototxt": caffe.convert}


def import_file(path: str | Path, flat: bool = False) -> Imported:
    """The spec for a model file, by its suffix; SpecError (each problem with its line) or ArchcError. Units the
    file repeats are written as blocks (importers/blocks.py) unless `flat`."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ArchcError(f"'{path}' is not a file archc imports: give a Darknet .cfg or a Caffe .prototxt",
                         code="bad-import")
    if not path.is_file():
        raise ArchcError(f"'{path}' does not exist", code="no-file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ArchcError(f"'{path}' cannot be read as text ({err})", code="bad-import") from None
    return SUFFIXES[path.suffix.lower()](text, str(path), flat)
