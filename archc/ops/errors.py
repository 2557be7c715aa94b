"""The error an op's rule raises (here, not in registry.py, so that window.py can raise it while registry.py
imports window.py: the modules of archc/ops import one way)."""
from __future__ import annotations


class OpError(Exception):
    """A rule's complaint about its arguments or inputs. `attr` names the argument at fault, if any."""

    def __init__(self, message: str, attr: str | None = None, code: str = "bad-attr"):
        super().__init__(message)
        self.message = message
        self.attr = attr
        self.code = code
