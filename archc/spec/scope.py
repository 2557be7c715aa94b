"""Label scopes of the expander, and the "did you mean" hint every unknown-name diagnostic ends with."""
from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from typing import Final

from archc.ir import Value


class Poison(enum.Enum):
    """The value of a statement whose layer failed (its error is reported): later checks that need its shape are
    skipped, so one mistake is not reported again by every layer after it."""

    POISON = "poison"


POISON: Final = Poison.POISON
Flow = Value | Poison | None  # what flows from statement to statement: the current value, if any


class Scope:
    """The labels written at one level of nesting. `path` prefixes the full names of the layers made in it."""

    def __init__(self, path: str, parent: Scope | None):
        self.path = path
        self.parent = parent  # None at a block boundary: a block sees only its own labels
        self.values: dict[str, Value | Poison] = {}

    def full(self, local: str) -> str:
        return f"{self.path}/{local}" if self.path else local

    def child(self, label: str) -> Scope:
        return Scope(self.full(label), self)

    def lookup(self, name: str) -> Value | Poison | None:
        s: Scope | None = self
        while s is not None:
            if name in s.values:
                return s.values[name]
            s = s.parent
        return None

    def visible(self) -> list[str]:
        names: list[str] = []
        s: Scope | None = self
        while s is not None:
            names += list(s.values)
            s = s.parent
        return names


def suggest(name: str, options: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest of `options`, or nothing."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
