"""Language semantics: names, repetition, blocks, merges, references, imports, defaults, arithmetic."""
from __future__ import annotations

import pytest

from archc import spec
from archc.diagnostics import SpecError
from archc.options import ModelOptions


def load(body: str, blocks: str = "", options: ModelOptions | None = None, shape: str = "3x32x32"):
    return spec.load_text(f"{blocks}\nnetwork t(n = 2) {{\n  input x: {shape}\n{body}\n}}\n", "<t>", options)


def names(g):
    return [n.name for n in g.nodes]


def error(body: str, blocks: str = "") -> str:
    with pytest.raises(SpecError) as err:
        load(body, blocks)
    return err.value.diagnostics[0].message


def test_paper_style_names():
    g = load("conv1: conv(8, 3) relu * 2\n pool1: maxpool(2)\n conv(8, 3) relu\n conv(8, 3)")
    assert names(g) == ["conv1_1", "conv1_1/relu", "conv1_2", "conv1_2/relu", "pool1", "conv", "relu", "conv_2"]


def test_shapes_are_inferred_through_the_chain():
    g = load("conv(16, 3, stride=2) maxpool(2) conv(32, 1) flatten dense(10)")
    assert [n.output.shape for n in g.nodes] == [(1, 16, 16, 16), (1, 16, 8, 8), (1, 32, 8, 8), (1, 2048), (1, 10)]


def test_first_repetition_differs_and_names_are_1_based():
    blocks = "block unit(c, stride = 1) { conv(c, 3, stride=stride) }"
    g = load("stage: unit(8) * 3 first(stride=2)", blocks)
    assert names(g) == ["stage_1/conv", "stage_2/conv", "stage_3/conv"]
    assert [n.output.shape[2] for n in g.nodes] == [16, 16, 16]
    assert g.nodes[0].blocks[0].args == {"c": 8, "stride": 2}


def test_for_repetition_binds_a_variable():
    g = load("level: conv(4, 3, dilation=d) for d in [1, 2, 4]", shape="1x64")
    assert [n.attrs["dilations"] for n in g.nodes] == [(1,), (2,), (4,)]
    assert names(g) == ["level_1", "level_2", "level_3"]


def test_block_arithmetic_defaults_and_in_channels():
    blocks = """block b(w, e = w * 4) {
      let mid = max(w // 2, 1)
      a: conv(mid, 1)
      c: conv(e + in_channels - in_channels, 1)
    }"""
    g = load("b(6)", blocks)
    assert [n.output.shape[1] for n in g.nodes] == [3, 24]


def test_if_else_and_conditional_branches():
    blocks = """block res(c) {
      add {
        main: conv(c, 3)
        if in_channels != c { proj: conv(c, 1) } else { identity }
      }
    }"""
    g = load("r1: res(8)\n r2: res(8)", blocks)
    assert names(g) == ["r1/main", "r1/proj", "r1/add", "r2/main", "r2/add"]
    g = load("concat {\n a: conv(4, 1)\n if n > 5 { b: conv(4, 1) }\n }")
    assert names(g) == ["a", "concat"] and g.outputs[0].shape == (1, 4, 32, 32)  # no branch, no identity


def test_references_and_multiple_outputs():
    g = load("a: conv(8, 3)\n b: maxpool(2)\n c: @a conv(4, 1)\n d: concat { @a; @c }\n output d, b")
    assert names(g) == ["a", "b", "c", "d"]
    assert [v.shape for v in g.outputs] == [(1, 12, 32, 32), (1, 8, 16, 16)]
    assert g.nodes[2].inputs[0] is g.nodes[0].output


def test_path_references_into_blocks_and_tensor_arguments():
    blocks = """block up(w, skip) {
      u: deconv(w, 2, stride=2)
      concat(crop=true) { @skip; identity }
    }"""
    g = load("enc: conv(8, 3)\n down: maxpool(2)\n dec: up(8, @enc)\n side: @dec/u relu\n output dec, side", blocks)
    assert g.outputs[0].shape == (1, 16, 32, 32)
    assert g.nodes[-1].inputs[0].name == "dec/u"
    assert g.nodes[2].blocks[0].args["skip"] is g.nodes[0].output


def test_shape_function_reads_tensor_shapes():
    g = load("up: deconv(4, 4, stride=4)\n slice(0, shape(@x)[2], axis=2) slice(0, channels(@x) * 10, axis=3)")
    assert g.outputs[0].shape == (1, 4, 32, 30)


def test_defaults_apply_to_layers_in_the_file():
    g = spec.load_text("defaults conv(bias=false)\nnetwork t {\n input x: 3x8x8\n conv(4, 3)\n conv(4, 3, bias=true)\n}",
                       "<t>")
    assert [len(n.weights) for n in g.nodes] == [1, 2]


def test_network_parameters_and_batch_override():
    g = load("conv(n, 3)", options=ModelOptions(params={"n": 5}, batch=3))
    assert g.outputs[0].shape == (3, 5, 32, 32) and g.params == {"n": 5}
    g = load("conv(4, 3)", options=ModelOptions(inputs={None: (2, 3, 64, 48)}))
    assert g.outputs[0].shape == (2, 4, 64, 48)


def test_imports_resolve_next_to_the_file_and_on_the_search_path(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "blocks.arch").write_text('import "more.arch"\nblock two(c) { one(c) one(c) }\n')
    (lib / "more.arch").write_text("block one(c) { conv(c, 3) relu }\n")
    main = tmp_path / "net.arch"
    main.write_text('import "lib/blocks.arch"\nnetwork n {\n input x: 3x8x8\n two(4)\n}\n')
    assert len(spec.load(main).nodes) == 4
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (elsewhere / "net.arch").write_text('import "blocks.arch"\nnetwork n {\n input x: 3x8x8\n two(4)\n}\n')
    with pytest.raises(SpecError):
        spec.load(elsewhere / "net.arch")
    assert len(spec.load(elsewhere / "net.arch", ModelOptions(include_path=(str(lib),))).nodes) == 4
    monkeypatch.setenv("ARCHC_PATH", str(lib))
    assert len(spec.load(elsewhere / "net.arch").nodes) == 4


def test_errors_keep_going_across_independent_statements():
    with pytest.raises(SpecError) as err:
        load("cnv(3, 3)\n a: conv(4, 3, bad=1)\n b: @x conv(4, 3, pad=huh)")
    assert [d.code for d in err.value.diagnostics] == ["unknown-op", "bad-args", "bad-type"]


def test_block_errors_point_inside_and_note_the_use_site():
    with pytest.raises(SpecError) as err:
        load("u: unit(3)", "block unit(c) {\n  conv(c, 3, groups=2)\n}")
    d = err.value.diagnostics[0]
    assert d.span.line == 2 and "groups=2 does not divide the 3 input channels" in d.message
    assert [n.message for n in d.notes] == ["in block 'unit' used here"] and d.notes[0].span.line == 6


@pytest.mark.parametrize("body, message", [
    ("conv(2 ** 99, 3)", "exponent too large"),
    ("conv(1, 3) * 100000", "repeat count must be an integer in 1..10000"),
    ("conv(n + true, 3)", "'+' needs numbers, got a boolean"),
    ("conv(@x + 1, 3)", "'+' needs numbers, got a tensor"),
    ("conv(4, 3) for d in 5", "needs a non-empty list"),
    ("conv(4, 3, pad=(1, 2, 3))", "pad has 3 values; give 1, 2 (one per axis) or 4 (begins, ends)"),
    ("slice(5, 2)", "slice [5, 2) is empty"),
    ("reshape(7, -1)", "cannot reshape 1×3×32×32 to N×(7, -1)"),
    ("upsample(2, mode=nearest, align_corners=true)", "align_corners applies to bilinear"),
    ("deconv(4, 3, stride=2, output_padding=2)", "output_padding 2 must be smaller than the stride"),
    ("maxpool(3, pad=2)", "padding 2 is more than half the kernel 3"),
    ("conv(4, 3) shape(@x)", "unknown op or block 'shape'"),
])
def test_messages(body, message):
    assert message in error(body)


def test_empty_group_is_a_warning_not_an_error():
    g = load("nothing: { }\n conv(4, 3)")
    assert [w.code for w in g.warnings] == ["empty-group"] and g.warnings[0].span.line == 4
    assert len(g.nodes) == 1
