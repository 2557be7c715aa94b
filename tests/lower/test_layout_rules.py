"""The layout pass's op table (archc/lower/kernels/optable.py), read by the block plan and the rewriter alike, and
the convolution workload (conv2d.Workload) behind the keys of the shipped tables and the tuning database."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from archc.lower.kernels import blocks, layout
from archc.lower.kernels.conv2d import Workload, parse
from archc.lower.kernels.optable import OPS, Kind
from archc.lower.kernels.search import TABLES, out_size

KERNELS = Path(layout.__file__).parent
OP_NAME = re.compile(r"relax\.[a-z0-9_.]+")


def _op_names(path: Path) -> set[str]:
    """The Relax op names written out in a module (string constants such as "relax.add")."""
    return {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and OP_NAME.fullmatch(n.value)}


def _imports(path: Path) -> set[str]:
    return {n.module for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.ImportFrom) and n.module}


def test_the_rewriter_has_a_rule_for_every_kind_of_the_table():
    assert set(layout._Rewriter.RULES) == set(Kind)
    assert {rule.kind for rule in OPS.values()} == set(Kind)  # no kind without an op
    for kind, method in layout._Rewriter.RULES.items():
        assert getattr(layout._Rewriter, kind.value) is method  # each kind dispatches to its own method


def test_the_plan_and_the_rewriter_both_read_the_one_table():
    """blocks.py and layout.py take the op classification from optable.py, and no op the layout pass names
    elsewhere in archc/lower/kernels is missing from the table (no second list of ops)."""
    for module in (blocks, layout):
        assert "archc.lower.kernels.optable" in _imports(Path(module.__file__))
    assert not _op_names(KERNELS / "blocks.py")  # the plan names no op: it groups by the table's kinds
    edges = {"channels_last.py": {"relax.permute_dims", "relax.nn.layer_norm"}}  # what it rewrites, not classifies
    for path in sorted(KERNELS.glob("*.py")):
        assert _op_names(path) - edges.get(path.name, set()) <= set(OPS), path.name
    assert {name for name, rule in OPS.items() if rule.one_d} == {
        "relax.nn.conv1d", "relax.nn.max_pool1d", "relax.nn.avg_pool1d"}


def test_one_depthwise_predicate():
    """conv2d has no test of its own: a workload is depthwise by the block plan's predicate on its shape."""
    import archc.lower.kernels.conv2d as conv2d
    assert not hasattr(conv2d, "is_depthwise") or conv2d.is_depthwise is blocks.is_depthwise
    depthwise = Workload.of((1, 3, 15, 15, 16), (3, 1, 3, 3, 1, 16), (2, 2), (1, 1, 1, 1), (1, 1))
    assert depthwise.depthwise and depthwise.groups == depthwise.channels == 48
    grouped = Workload.of((1, 4, 14, 14, 8), (4, 2, 3, 3, 8, 8), (2, 2), (1, 1, 1, 1), (1, 1))
    assert not grouped.depthwise and grouped.groups == 2 and grouped.per_group == 16
    assert not Workload.of((1, 1, 8, 8, 1), (1, 1, 3, 3, 1, 8), (1, 1), (0, 0, 0, 0), (1, 1)).depthwise  # 1 → 8


def _shipped() -> list[str]:
    return [key for p in sorted(TABLES.glob("*/*.json")) for key in json.loads(p.read_text(encoding="utf-8"))]


def test_every_shipped_key_round_trips():
    """Each key of the shipped tables reads back into a Workload whose key is the same string; the depthwise ones
    ("dw…") are exactly those the shape says are; a bf16 or int8 kernel's ("bf16:…", "int8:…") carries its step
    and is its float32 shape's otherwise."""
    keys = _shipped()
    assert len(keys) >= 200 and any(k.startswith("dw") for k in keys)
    for key in keys:
        w = Workload.parse(key)
        step, _, shape = key.rpartition(":")
        assert w.key == key and w.step == step and w.float32.key == shape
        assert Workload.parse(w.key) == w
        assert w.depthwise == shape.startswith("dw")
        assert parse(key) == w and out_size(key) == w.out_size
        data, weight, strides, padding, dilation, _ = w  # the old parse()'s tuple, and the step
        assert all(isinstance(x, int) for part in w[:5] for x in part)
        assert len(data) == 5 and len(weight) == 6 and len(strides) == len(dilation) == 2 and len(padding) == 4


def test_a_workload_key_spelled_out():
    w = Workload.of([1, 2, 14, 14, 16], [4, 2, 1, 1, 16, 16], [2, 2], [0, 0, 0, 0], [1, 1])
    assert w.key == "d1x2x14x14x16_w4x2x1x1x16x16_s2x2_p0x0x0x0_l1x1"
    assert (w.ic_bn, w.oc_bn, w.oc_chunks, w.kernel, w.out_size) == (16, 16, 4, (1, 1), (7, 7))
    dw = Workload.of((1, 2, 7, 7, 16), (2, 1, 3, 3, 1, 16), (1, 1), (1, 1, 1, 1), (1, 1))
    assert dw.key == "dwd1x2x7x7x16_w2x1x3x3x1x16_s1x1_p1x1x1x1_l1x1"


@pytest.mark.parametrize("key", ["", "d1x2_w1", "x1x2x14x14x16_w4x2x1x1x16x16_s2x2_p0x0x0x0_l1x1",
                                 "dwd1x2x14x14x16_w4x2x1x1x16x16_s2x2_p0x0x0x0_l1x1",  # "dw" on a dense shape
                                 "d1x2x7x7x16_w2x1x3x3x1x16_s1x1_p1x1x1x1_l1x1"])  # a depthwise shape without
def test_a_string_that_is_not_a_workload_key(key):
    with pytest.raises(ValueError):
        Workload.parse(key)
