"""Property: any text, random or a mutated zoo spec, ends in a model or in a clean SpecError — never a crash.

Hypothesis runs derandomized (the same examples on every run, so CI cannot flake) and throws a few thousand
specs at the whole front end; the small ones that load are also emitted to ONNX and checked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc import spec
from archc.diagnostics import SpecError
from archc.emit import to_onnx
from archc.errors import ArchcError
from archc.options import ModelOptions

SPECS = Path(__file__).resolve().parents[2] / "specs"
BASES = sorted(p for p in SPECS.glob("*.arch")
               if p.stem in {"lenet5", "resnet18", "googlenet", "mobilenet_v2", "shufflenet_v2_x1_0", "unet",
                             "tcn", "fcn1d", "densenet121", "yolov3", "squeezenet1_1", "char_cnn", "c3d"})
VOCAB = ["network", "block", "input", "output", "let", "if", "else", "for", "in", "import", "defaults", "first",
         "conv", "dwconv", "deconv", "maxpool", "avgpool", "gap", "dense", "flatten", "reshape", "bn", "relu",
         "add", "concat", "mul", "identity", "slice", "upsample", "pad", "channel_shuffle", "softmax",
         "x", "c", "n", "in_channels", "in_shape", "stride", "pad", "groups", "same", "valid", "causal",
         "0", "1", "2", "3", "-1", "64", "1.5", "1e9", "3x32x32", "1x8", "2x4x4x4", '"lib/x.arch"', "true", "false",
         "(", ")", "{", "}", "[", "]", ",", ":", "=", "==", "@", "*", "×", "+", "-", "/", "//", "%", "**", ";",
         "\n", " ", "#", "not", "and", "or", ".", "\\"]
FUZZ = settings(max_examples=800, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(text: str, file: str) -> str:
    try:
        graph = spec.load_text(text, file)
    except SpecError as err:
        assert err.diagnostics and all(d.message for d in err.diagnostics)
        return "error"
    if len(graph.nodes) < 400 and graph.num_params + graph.num_nontrainable < 3_000_000 and all(
            int(np.prod(v.shape)) < 5_000_000 for n in graph.nodes for v in [n.output]):
        try:
            to_onnx(graph, ModelOptions(simplify=False))
        except ArchcError:
            pass
        return "model"
    return "big model"


@st.composite
def mutated(draw):
    path = draw(st.sampled_from(BASES))
    text = path.read_text()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace_number", "replace_word", "dup_line", "swap"]))
        lines = text.splitlines(keepends=True)
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 12)):]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(VOCAB)) + text[pos:]
        elif kind == "replace_number":
            digits = [i for i, ch in enumerate(text) if ch.isdigit()]
            if digits:
                i = draw(st.sampled_from(digits))
                text = text[:i] + draw(st.sampled_from(["0", "-1", "99999", "1.5", "2", "7"])) + text[i + 1:]
        elif kind == "replace_word":
            word = draw(st.sampled_from(VOCAB[:45]))
            text = text[:pos] + word + text[pos + draw(st.integers(0, 6)):]
        elif kind == "dup_line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "".join(lines)
        elif kind == "swap" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return str(path), text


@FUZZ
@given(mutated())
def test_mutated_zoo_specs_never_crash(case):
    file, text = case
    assert outcome(text, file) in ("error", "model", "big model")


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(VOCAB), max_size=60))
def test_token_soup_never_crashes(tokens):
    text = "network n {\n  input x: 3x16x16\n  " + " ".join(tokens) + "\n}\n"
    assert outcome(text, "<fuzz>") in ("error", "model", "big model")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text):
    assert outcome(text, "<fuzz>") in ("error", "model", "big model")


def test_deep_nesting_is_an_error_not_a_recursion_crash():
    deep = "network n {\n input x: 3x8x8\n conv(" + "(" * 5000 + "1" + ")" * 5000 + ", 3)\n}\n"
    assert outcome(deep, "<deep>") in ("error", "model")
