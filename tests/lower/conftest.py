"""Every back-end test module tunes into a database of its own, never the user's (tests/conftest.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _own_cache(own_tuning_cache):
    yield
