"""Shared by the back-end tests: each module tunes into a database of its own, never the user's."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def own_tuning_cache(tmp_path_factory):
    """The default tuning database lives under the user's cache (XDG_CACHE_HOME): tests use their own. (The arm64
    root stays where it is: it is found through ARCHC_ARM64_ROOT or the home folder, not XDG_CACHE_HOME.)"""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
