"""Several analyses side by side (`Comparison`) and what changing one model into another costs (`Diff`).

Plain data like `Analysis`, saved and reloaded as JSON (`to_json` / `from_json`), rendered by `archc.render`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from archc.analysis.model import SCHEMA_VERSION, Analysis, check_schema
from archc.shapes import Shape


@dataclass
class Summary:
    """One model's row of a comparison."""

    model: str
    input: Shape | None  # the first input without its batch
    params: int  # trainable
    macs: int
    flops: int
    activations: int  # bytes of all layer outputs
    peak: int  # peak memory in bytes
    depth: int
    rf: tuple[float, ...] | None  # the last finite receptive field before any global layer
    rf_whole: bool  # the outputs see the whole input (a global layer came after `rf`)
    weights: int  # bytes of the weights at float32


SORT_KEYS = ("model", "input", "params", "macs", "flops", "activations", "peak", "depth", "rf", "weights")


def summarize(a: Analysis) -> Summary:
    spatial = [lay.receptive_field for lay in a.layers if lay.receptive_field is not None]
    finite = [rf for rf in spatial if not rf.whole]
    whole = bool(spatial) and spatial[-1].whole
    rf = finite[-1].size if (whole and finite) else (spatial[-1].size if spatial and not whole else None)
    t = a.totals
    return Summary(model=a.model, input=tuple(a.inputs[0]["shape"][1:]) if a.inputs else None,
                   params=t.trainable_params, macs=t.macs, flops=t.flops, activations=t.activation_bytes,
                   peak=t.peak_memory_bytes, depth=t.depth, rf=tuple(rf) if rf is not None else None, rf_whole=whole,
                   weights=t.weight_bytes_by_dtype["float32"])


@dataclass
class Comparison:
    rows: list[Summary]
    sort: str | None = None
    analyses: list[Analysis] = field(default_factory=list)  # the full analyses, in the order given

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "sort": self.sort, "rows": [asdict(r) for r in self.rows],
                "models": [a.to_json() for a in self.analyses]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        check_schema(data, "comparison")
        rows = [Summary(**{**r, "input": _tuple(r["input"]), "rf": _tuple(r["rf"])}) for r in data["rows"]]
        return cls(rows, data.get("sort"), [Analysis.from_json(m) for m in data.get("models", [])])


def compare(analyses: list[Analysis], sort: str | None = None) -> Comparison:
    """Rows in the order given, or sorted by a column: numbers largest first, names alphabetically."""
    if sort is not None and sort not in SORT_KEYS:
        raise ValueError(f"cannot sort by {sort!r}; columns: {', '.join(SORT_KEYS)}")
    rows = [summarize(a) for a in analyses]
    if sort:
        rows.sort(key=lambda r: (getattr(r, sort) is None, getattr(r, sort) or 0),
                  reverse=sort not in ("model", "input", "rf"))
    return Comparison(rows, sort, list(analyses))


@dataclass
class LayerChange:
    name: str
    change: str  # added / removed / changed
    output_a: Shape | None
    output_b: Shape | None
    params_a: int
    params_b: int
    macs_a: int | None
    macs_b: int | None

    @property
    def params_d(self) -> int:
        return self.params_b - self.params_a

    @property
    def macs_d(self) -> int | None:
        return None if self.macs_a is None or self.macs_b is None else self.macs_b - self.macs_a


@dataclass
class Diff:
    a: str
    b: str
    changes: list[LayerChange]
    unchanged: int  # layers present in both with the same output, cost and op (not listed)
    params_a: int
    params_b: int
    macs_a: int
    macs_b: int

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "a": self.a, "b": self.b, "unchanged": self.unchanged,
                "changes": [{**asdict(c), "params_d": c.params_d, "macs_d": c.macs_d} for c in self.changes],
                "totals": {"params_a": self.params_a, "params_b": self.params_b,
                           "params_d": self.params_b - self.params_a, "macs_a": self.macs_a, "macs_b": self.macs_b,
                           "macs_d": self.macs_b - self.macs_a}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Diff:
        check_schema(data, "diff")
        changes = [LayerChange(**{k: v for k, v in c.items() if k not in ("params_d", "macs_d")} |
                               {"output_a": _tuple(c["output_a"]), "output_b": _tuple(c["output_b"])})
                   for c in data["changes"]]
        t = data["totals"]
        return cls(data["a"], data["b"], changes, data["unchanged"], t["params_a"], t["params_b"], t["macs_a"],
                   t["macs_b"])


def diff(a: Analysis, b: Analysis) -> Diff:
    """Layers matched by name; one change for each layer added, removed, or with another output, cost or op."""
    la, lb = {lay.name: lay for lay in a.layers}, {lay.name: lay for lay in b.layers}
    order = [lay.name for lay in a.layers] + [lay.name for lay in b.layers if lay.name not in la]
    changes = []
    for name in order:
        x, y = la.get(name), lb.get(name)
        if x and y and (x.output_shape, x.params, x.macs, x.op) == (y.output_shape, y.params, y.macs, y.op):
            continue
        changes.append(LayerChange(
            name, "added" if x is None else "removed" if y is None else "changed",
            x.output_shape if x else None, y.output_shape if y else None,
            x.params if x else 0, y.params if y else 0, x.macs if x else 0, y.macs if y else 0))
    unchanged = len(a.layers) - sum(1 for c in changes if c.change in ("changed", "removed"))
    return Diff(a.model, b.model, changes, unchanged, a.totals.trainable_params, b.totals.trainable_params,
                a.totals.macs, b.totals.macs)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
