"""Registry invariants: every ONNX op type the emitter writes for a spec op is listed in that op's `OpDef.onnx_ops`
and has an analyzer rule (`onnx_rule`), and no keyword or alias names two ops.

The emitted op types are read from real models: each case below is a one-layer network (or a merge with its
branches) built with `build_model(graph, None)` (shapes only, no weights), and each ONNX node is traced back to
its spec op through the `archc.layer` metadata the emitter writes.
"""
from __future__ import annotations

import dataclasses
import functools

import pytest

from archc import metadata, ops, spec
from archc.emit.onnx_model import build_model
from archc.ops import registry
from archc.ops.registry import OnnxRule, onnx_rule

# (layer, input shape without the batch axis); every branch of an op's emit rule that writes something different,
# and every alias once. tests/ops/test_ops_numerics.py checks the same ops' numbers against PyTorch.
CASES = [
    ("add { conv(3, 3); identity }", "3x5x5"),
    ("avgpool(3, stride=2, pad=1)", "2x8x8"),
    ("avgpool((1, 2, 2), count_include_pad=true)", "2x4x6x6"),
    ("bn", "3x4x4"),
    ("batchnorm(eps=1e-3)", "3x4"),
    ("channel_shuffle(3)", "6x2x2"),
    ("concat { identity; conv(2, 1) }", "2x4x4"),
    ("concat(crop=true) { identity; maxpool(2) }", "2x9x9"),
    ("conv(8, 3)", "3x10x10"),
    ("conv(4, 2, dilation=2, pad=causal, bias=false)", "3x20"),
    ("conv(4, 3, stride=(1, 2, 2), groups=2)", "4x6x9x9"),
    ("deconv(6, 4, stride=2, pad=1)", "3x7x7"),
    ("conv_transpose(3, 4, stride=2, pad=same, bias=false)", "2x9"),
    ("flatten dense(7)", "2x3x3"),
    ("fc(3, bias=false)", "5"),
    ("linear(2)", "4"),
    ("dropout(0.3)", "3x4"),
    ("dwconv(3, stride=2, multiplier=2)", "4x9x9"),
    ("flatten(axis=2)", "2x3x3"),
    ("gap", "5x7x7"),
    ("global_avgpool", "5x7"),
    ("gmp", "5x9"),
    ("global_maxpool", "5x3x3"),
    ("hsigmoid", "3x4x4"),
    ("hardsigmoid", "3"),
    ("hswish", "3x4x4"),
    ("hardswish", "3"),
    ("l2norm(20)", "6x3x3"),
    ("local(4, 3, stride=2)", "3x5x6"),
    ("local(2, 1, pad=0, bias=false)", "3x4x4"),
    ("leaky_relu(0.1)", "3x4x4"),
    ("leaky", "3"),
    ("lrn(5, alpha=1e-4, beta=0.75, bias=2)", "8x4x4"),
    ("maxpool(3, stride=2, ceil=true)", "2x12x12"),
    ("maxpool(3, stride=2, pad=1, dilation=2)", "2x17"),
    ("mul { identity; gap sigmoid }", "4x5x5"),
    ("pad((1, 2), mode=reflect)", "2x5x6"),
    ("pad(1, value=3)", "2x3x3"),
    ("prelu", "3x4x4"),
    ("prelu(shared=true)", "3x4x4"),
    ("prelu", "7"),
    ("relu", "3x4"),
    ("roi_align(2, stride=4) { identity; gap flatten reshape(1, 4) }", "4x8x8"),
    ("reorg(2)", "8x4x6"),
    ("relu6", "3x4"),
    ("reshape(3, -1)", "6x2x2"),
    ("sigmoid", "3"),
    ("silu", "3x4x4"),
    ("swish", "3"),
    ("slice(2, 5)", "6x2x2"),
    ("slice(1, axis=2)", "6x4x4"),
    ("flatten softmax", "3x2x2"),
    ("softmax(axis=2)", "3x4x4"),
    ("tanh", "3x4"),
    ("upsample(2)", "2x3x5"),
    ("upsample(2, mode=bilinear, align_corners=true)", "2x5x4"),
    ("upsample((2, 3))", "2x3x5"),
]

# Emitted op types an OpDef's `onnx_ops` does not list yet. Strict: when the OpDef is fixed, the case passes and
# pytest reports it, so the entry here must go.


def case_id(case) -> str:
    return f"{case[0]} @ {case[1]}"


@functools.cache
def emitted(layer: str, shape: str) -> tuple[tuple[str, str, str], ...]:
    """(spec keyword, ONNX op type, node name) of every node the emitter writes for the case's network."""
    graph = spec.load_text(f"network t {{\n  input x: {shape}\n  {layer}\n}}\n", "<test_registry>")
    model = build_model(graph, None)
    out = []
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        assert metadata.LAYER in meta, f"node {node.name} ({node.op_type}) has no {metadata.LAYER} metadata"
        out.append((meta[metadata.LAYER], node.op_type, node.name))
    return tuple(out)


def test_every_listed_onnx_op_has_an_analyzer_rule():
    missing = {op.keyword: [t for t in op.onnx_ops if onnx_rule(t) is None] for op in ops.all_ops()}
    assert not {k: v for k, v in missing.items() if v}, "ONNX op types without an analyzer rule (register_onnx)"


def test_passthrough_ops_list_no_onnx_op():
    for op in ops.all_ops():
        assert bool(op.passthrough) == (op.onnx_ops == ()), op.keyword


def test_the_cases_cover_every_op():
    """A new op needs a case here: its emitted ONNX is what the other tests check."""
    seen = {keyword for case in CASES for keyword, _, _ in emitted(*case)}
    expected = {op.keyword for op in ops.all_ops() if not op.passthrough}
    assert expected - seen == set(), "add a case to CASES for these ops"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_emitted_op_types_have_analyzer_rules(case):
    nodes = emitted(*case)
    assert nodes, "the case emits no node"
    assert [(k, t) for k, t, _ in nodes if onnx_rule(t) is None] == []


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_emitted_op_types_are_listed_in_their_opdef(case):
    unlisted = [(keyword, op_type, name) for keyword, op_type, name in emitted(*case)
                if op_type not in ops.lookup(keyword).onnx_ops]
    assert unlisted == [], "OpDef.onnx_ops must list every op type the emitter writes for it"


def test_every_case_parses_to_the_keyword_not_the_alias():
    """The `archc.layer` metadata names the op by its keyword, so `lookup` finds the OpDef from either spelling."""
    keywords = {op.keyword for op in ops.all_ops()}
    for case in CASES:
        for keyword, _, _ in emitted(*case):
            assert keyword in keywords, (case, keyword)


# ---- names: no two OpDefs share a keyword or alias ------------------------------------------------------------
def test_no_two_ops_share_a_keyword_or_alias():
    names = [name for op in ops.all_ops() for name in (op.keyword, *op.aliases)]
    assert sorted(names) == sorted(set(names)), "a name is used twice"
    assert sorted(names) == registry.keywords()
    for op in ops.all_ops():
        for name in (op.keyword, *op.aliases):
            assert ops.lookup(name) is op


@pytest.fixture
def saved_registry():
    """Restore both registries after a test that tries to register into them."""
    ops_before, rules_before = dict(registry._REGISTRY), dict(registry._ONNX_RULES)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(ops_before)
    registry._ONNX_RULES.clear()
    registry._ONNX_RULES.update(rules_before)


def test_register_refuses_a_duplicate_keyword_or_alias(saved_registry):
    conv, dense = ops.lookup("conv"), ops.lookup("dense")
    with pytest.raises(ValueError, match="'conv' registered twice"):
        registry.register(dataclasses.replace(conv, aliases=()))
    with pytest.raises(ValueError, match="'fc' registered twice"):
        registry.register(dataclasses.replace(dense, keyword="fc", aliases=()))
    with pytest.raises(ValueError, match="'linear' registered twice"):
        registry.register(dataclasses.replace(dense, keyword="linear", aliases=("dense",)))
    with pytest.raises(ValueError, match="'Conv' registered twice"):
        registry.register_onnx(OnnxRule("Conv", "none", lambda v: 0))
    assert ops.lookup("conv") is conv and ops.lookup("fc") is dense and onnx_rule("Conv") is not None


def test_a_refused_registration_leaves_no_trace(saved_registry):
    before = registry.keywords()
    with pytest.raises(ValueError, match="'conv' registered twice"):
        registry.register(dataclasses.replace(ops.lookup("conv"), keyword="brand_new_op", aliases=("conv",)))
    assert registry.keywords() == before
