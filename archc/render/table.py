"""The one shape every tabular output takes before it is rendered: columns, rows of plain values, footnotes.

Views (a per-layer table, a per-block table, a model comparison, a diff) build a `Table`; renderers
(text, md, csv, latex, html) turn any `Table` into text. Cells hold raw values (ints, floats, strings, None for
"unknown"); the column's `fmt` says how to show them, so CSV can keep exact numbers while a terminal shows 4.1G.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

UNITS = ("exact", "si")  # how the layer, block, comparison and diff tables show counts (params, MACs, FLOPs)


class Fmt(enum.Enum):
    TEXT = "text"  # str(value)
    INT = "int"  # 25,557,032
    SI = "si"  # 4.11G, 25.6M, 3.5k (counts: MACs, FLOPs, params in comparisons)
    BYTES = "bytes"  # 97.7 MiB
    FLOAT = "float"  # 2 decimals


class Align(enum.Enum):
    LEFT = "left"
    RIGHT = "right"


@dataclass(frozen=True)
class Column:
    """One column. The last four fields only matter when a terminal table is fitted to a narrower width
    (`render.fit`); every other renderer shows every column in full."""
    key: str
    header: str
    fmt: Fmt = Fmt.TEXT
    align: Align = Align.LEFT
    short: str | None = None  # a shorter heading, used first when the table is too wide
    drop: int = 0  # 0: always kept; otherwise may be left out, the highest number first
    fold: bool = False  # may be left out when every row that has a value has the same one (said in a footnote)
    wrap: bool = False  # its text may wrap inside the column (a sentence-like value, e.g. the totals' Value)


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    footnotes: list[str] = field(default_factory=list)
    # rows whose "style" key is "total" are totals lines; "group" rows head a group (e.g. a block in --by layer)


def count_fmt(units: str | None, default: Fmt) -> Fmt:
    """The format of a count column: "exact" → 25,557,032 (Fmt.INT), "si" → 25.56M (Fmt.SI), None → `default`."""
    if units is None:
        return default
    if units not in UNITS:
        raise ValueError(f"units must be one of {', '.join(UNITS)}, not {units!r}")
    return Fmt.INT if units == "exact" else Fmt.SI


UNKNOWN = "?"  # how a cell whose value is None (unknown cost) is shown; never 0


def format_cell(value: Any, fmt: Fmt) -> str:
    """One formatting rule for every renderer."""
    if value is None:
        return UNKNOWN
    if isinstance(value, str):
        return value
    if fmt is Fmt.INT:
        return f"{value:,}"
    if fmt is Fmt.SI:
        return si(value)
    if fmt is Fmt.BYTES:
        return human_bytes(value)
    if fmt is Fmt.FLOAT:
        return f"{value:.2f}"
    return str(value)


def si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:.2f}"


def human_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"
