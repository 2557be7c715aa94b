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
    assert names(g) == ["a"] and g.outputs[0].shape == (1, 4, 32, 32)  # one branch left: it passes through


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
    g = spec.load_text("defaults conv(bias=false)\nnetwork t {\n input x: 3x8x8\n conv(4, 3)\n"
                       " conv(4, 3, bias=true)\n}", "<t>")
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


# ---- merges left with one branch, conditional expressions, bare words, recursion -----------------------------
def test_a_merge_left_with_one_branch_passes_it_through():
    blocks = """block res(c, shortcut = false) {
      r: add {
        main: { conv(c, 3) relu }
        if shortcut { identity }
      }
      after: @r bn
    }"""
    g = load("plain: res(3)\n resid: res(3, shortcut=true)\n tail: @plain/r sigmoid\n output plain, tail", blocks)
    assert names(g) == ["plain/r/main/conv", "plain/r/main/relu", "plain/after",
                        "resid/r/main/conv", "resid/r/main/relu", "resid/r", "resid/after", "tail"]
    assert g.nodes[2].inputs[0] is g.nodes[1].output  # `@r` is the one branch's output: the relu
    assert g.nodes[-1].inputs[0] is g.nodes[1].output  # and so is the path `@plain/r` from outside the block
    assert [n.op for n in g.nodes].count("add") == 1
    g = load("m: mul {\n if n > 5 { sigmoid }\n if n > 1 { tanh }\n }\n output m")
    assert names(g) == ["m/tanh"] and g.outputs[0] is g.nodes[0].output


def test_a_merge_written_with_one_branch_is_still_an_error():
    assert "add needs at least two branches, got 1" in error("add { conv(3, 3) }")
    assert "mul has no branches (no `if` in it applies)" in error("mul { if n > 5 { relu } }")


def evaluated(text: str):
    from archc.spec.parser import parse_value
    return parse_value(text)


@pytest.mark.parametrize("text, value", [
    ("1 if true else 2", 1),
    ("1 if false else 2 + 10", 12),  # the else arm takes the whole sum: `if … else` binds loosest
    ("(1 if false else 2) + 10", 12),
    ("1 + 1 if true else 5", 2),
    ("true or false if false else false", False),  # (true or false) if false else false
    ("1 if false else 2 if false else 3", 3),  # right-associative
    ("1 if false else 2 if true else 3", 2),
    ("8 // 0 if false else 4", 4),  # only the chosen arm is evaluated
    ("4 if 1 > 0 else 8 // 0", 4),
    ("int(true) + int(false)", 1),
    ("int(true if 3 > 2 else false) * 8", 8),
])
def test_conditional_expressions_and_int_of_bool(text, value):
    assert evaluated(text) == value


def test_conditional_expression_guards_a_division_for_every_parameter():
    for n, out in ((0, 8), (2, 4), (4, 2)):
        g = load("conv(8 // n if n > 0 else 8, 1)", options=ModelOptions(params={"n": n}))
        assert g.outputs[0].shape[1] == out
    assert "the condition of '… if … else …' must be true or false, got an integer" in error("conv(1 if n else 2, 1)")


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision.models._utils._make_divisible, verbatim."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # make sure that round down does not go down by more than 10%
        new_v += divisor
    return new_v


MAKE_DIVISIBLE = """block make_divisible_conv(v, divisor = 8) {
  let new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  let r = new_v + divisor if new_v < 0.9 * v else new_v
  conv(r, 1)
}"""


@pytest.mark.parametrize("v, divisor", [
    (3, 8), (8, 8), (12, 8), (16 * 0.75, 8), (20, 8), (27, 8), (36, 8), (37, 8), (44, 8), (45, 8), (67.2, 8),
    (96 * 0.35, 8), (160 * 1.4, 8), (1280 * 0.5, 8), (76, 16), (60, 16), (10, 4), (1, 8), (0.5, 8),
])
def test_make_divisible_matches_torchvision(v, divisor):
    net = "network t(v, d) {\n  input x: 3x8x8\n  make_divisible_conv(v, divisor=d)\n}"
    g = spec.load_text(f"{MAKE_DIVISIBLE}\n{net}", "<t>", ModelOptions(params={"v": v, "d": divisor}))
    assert g.outputs[0].shape[1] == _make_divisible(v, divisor)


def test_bare_words_are_strings_as_arguments_to_ops_and_blocks():
    blocks = """block act(kind = "relu") {
      if kind == "hswish" { hswish } else if kind == 'relu' { relu } else { sigmoid }
    }"""
    g = load('act(kind=hswish)\n act(relu)\n act("hswish")\n act()\n act(tanh)\n upsample(mode="bilinear")', blocks)
    assert [n.op for n in g.nodes] == ["hswish", "relu", "hswish", "relu", "sigmoid", "upsample"]
    assert g.nodes[-1].args["mode"] == "bilinear"


def test_a_defined_name_wins_over_the_word():
    blocks = 'block act(kind = "relu") {\n if kind == "hswish" { hswish } else { relu }\n}'
    g = load('let hswish = "relu"\n act(hswish)\n let mode = "nearest"\n upsample(mode=mode)', blocks)
    assert [n.op for n in g.nodes] == ["relu", "upsample"] and g.nodes[1].args["mode"] == "nearest"


@pytest.mark.parametrize("body, message", [
    ("conv(foo + 1, 3)", "undefined name 'foo'"),  # arithmetic: always a name
    ("conv(nn * 2, 3)", "undefined name 'nn'; did you mean 'n'?"),
    ("conv(foo, 3)", "undefined name 'foo'"),  # an op argument that takes no string
    ("conv(4, 3, stride=two)", "undefined name 'two'"),
    ("conv(max(foo, 1), 3)", "undefined name 'foo'"),  # a function's argument
    ("upsample(mode=bicubic)", "argument 'mode' must be one of nearest, bilinear, linear, got 'bicubic'"),
    ("conv(4, 3, pad=(foo, 1))", "undefined name 'foo'"),
])
def test_words_that_stay_names(body, message):
    assert message in error(body)


def test_recursion_that_ends_is_allowed_and_runaway_recursion_is_reported_once():
    blocks = "block tower(d) {\n conv(4, 3)\n if d > 1 { tower(d - 1) }\n}"
    g = load("tower(3)", blocks)
    assert names(g) == ["tower/conv", "tower/tower/conv", "tower/tower/tower/conv"]
    with pytest.raises(SpecError) as err:
        load("t: tower(n)\n @x tower(n)\n @x tower(n)", "block tower(d) {\n conv(4, 3)\n tower(d - 1)\n tower(d)\n}")
    [d] = err.value.diagnostics
    assert d.message.startswith("block 'tower' uses itself (tower → tower → …) more than 64 deep")
    assert [n.message for n in d.notes] == ["'tower' is defined here", "'tower' is first used here"]


def test_a_failed_let_is_reported_once_and_later_layers_are_still_checked():
    with pytest.raises(SpecError) as err:
        load("let w = 8 // (n - 2)\n let v = w + 1\n conv(w, 3)\n conv(v, 3)\n b: @x conv(4, 3, groups=2)")
    assert [d.message for d in err.value.diagnostics] == [
        "division by zero", "conv: groups=2 does not divide the 3 input channels (input 1×3×32×32)"]


def test_blocks_nested_too_deep_without_recursion_are_reported_once():
    blocks = "\n".join(f"block b{i}(c) {{ b{i + 1}(c) }}" for i in range(70)) + "\nblock b70(c) { relu }"
    with pytest.raises(SpecError) as err:
        load("b0(1)", blocks)
    [d] = err.value.diagnostics
    assert d.message == "blocks nest more than 64 deep" and d.notes == ()
