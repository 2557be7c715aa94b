"""Argument binding (archc/spec/bind.py) on its own: no expander, expressions evaluated by a plain callback."""
from __future__ import annotations

import pytest

from archc import ops, spec
from archc.diagnostics import Span
from archc.spec import ast, codes
from archc.spec.bind import BindError, bind_block, bind_op, check_defaults, signature
from archc.spec.evaluate import evaluate

HERE = Span("<t>", 1, 1, 1, 2)


def call(name: str, *positional: object, **keyword: object) -> ast.Call:
    def expr(v: object) -> ast.Expr:
        return ast.Var(v[1:], HERE) if isinstance(v, str) and v.startswith("$") else ast.Const(v, HERE)
    kws = tuple(ast.Kwarg(k, expr(v), Span("<t>", 2, len(k), 2, len(k) + 1)) for k, v in keyword.items())
    return ast.Call(name, ast.Args(tuple(expr(v) for v in positional), kws), HERE)


def bind(c: ast.Call, env: dict | None = None, defaults: dict | None = None, first: ast.Args | None = None):
    op = ops.lookup(c.name)
    assert op is not None
    reported: list[tuple[str, str, Span | None]] = []
    bound = bind_op(op, c, first, evaluate=lambda e: evaluate(e, env or {}), names=env or {},
                    defaults=defaults or {}, report=lambda *d: reported.append(d))
    return bound, reported


def test_values_have_defaults_applied_and_spans_only_for_written_arguments():
    bound, reported = bind(call("conv", 8, 3, stride=2))
    assert dict(bound.values) == {"out": 8, "kernel": 3, "stride": 2, "pad": "same", "dilation": 1, "groups": 1,
                                  "bias": True}
    assert set(bound.spans) == {"out", "kernel", "stride"}
    assert bound.spans["stride"].line == 2
    assert not reported
    with pytest.raises(TypeError):
        bound.values["out"] = 1  # type: ignore[index]  # frozen: the mapping is read-only


def test_bare_words_are_string_choices_unless_defined():
    bound, _ = bind(call("conv", 8, 3, pad="$same"))
    assert bound.values["pad"] == "same"
    bound, _ = bind(call("conv", 8, 3, pad="$same"), env={"same": 2})
    assert bound.values["pad"] == 2


def test_file_defaults_apply_under_written_arguments():
    table = check_defaults([call("conv", bias=False, stride=2)], lambda *d: None)
    bound, _ = bind(call("conv", 8, 3, stride=1), defaults=table)
    assert (bound.values["bias"], bound.values["stride"]) == (False, 1)
    assert "bias" in bound.spans  # written on the defaults line


def test_bad_defaults_are_reported_and_dropped():
    reported: list[tuple[str, str, Span | None]] = []
    table = check_defaults([call("nope", x=1), call("conv", 1, zz=1, bias=False)], lambda *d: reported.append(d))
    assert [(c, m) for c, m, _ in reported] == [
        (codes.UNKNOWN_OP, "defaults for unknown op 'nope'"),
        (codes.BAD_ARGS, "defaults take keyword arguments only, e.g. defaults conv(bias=false)"),
        (codes.BAD_ARGS, "conv has no argument 'zz'"),
    ]
    assert [kw.name for kw in table["conv"].keyword] == ["bias"]


def test_first_positional_is_reported_and_binding_goes_on():
    first = ast.Args((ast.Const(2, HERE),), (ast.Kwarg("stride", ast.Const(2, HERE), HERE),))
    bound, reported = bind(call("conv", 8, 3, stride=1), first=first)
    assert reported == [(codes.BAD_ARGS, "first(...) takes keyword arguments only", HERE)]
    assert bound.values["stride"] == 2


@pytest.mark.parametrize("c, code, message", [
    (call("conv", 8, 3, out=4), codes.BAD_ARGS, "argument 'out' given twice"),
    (call("conv", 8), codes.BAD_ARGS, "conv needs argument 'kernel' (an integer or a tuple of integers); "
     "signature: conv(out, kernel, stride=1, pad=same, dilation=1, groups=1, bias=true)"),
    (call("conv", 8, 3, strid=2), codes.BAD_ARGS, "conv has no argument 'strid'; did you mean 'stride'? "
     "(arguments: out, kernel, stride, pad, dilation, groups, bias)"),
    (call("conv", 8, 3, bias=1), codes.BAD_TYPE, "argument 'bias' must be true or false, got 1"),
])
def test_mistakes_raise_a_located_bind_error(c, code, message):
    with pytest.raises(BindError) as err:
        bind(c)
    assert (err.value.code, err.value.message) == (code, message)
    assert err.value.span is not None


def test_block_binding_leaves_defaults_to_the_block():
    bdef = ast.BlockDef("b", (ast.Param("c", None, HERE), ast.Param("d", ast.Const(1, HERE), HERE)),
                        ast.Body((), HERE), HERE)
    bound = bind_block(bdef, call("b", 4), None, lambda e: evaluate(e, {}))
    assert dict(bound.values) == {"c": 4} and set(bound.spans) == {"c"}
    with pytest.raises(BindError) as err:
        bind_block(bdef, call("b", d=2), None, lambda e: evaluate(e, {}))
    assert err.value.message == "block 'b' needs argument 'c' (arguments: c, d)"
    assert [n.message for n in err.value.notes] == ["'b' is defined here"]


def test_signature_is_public():
    conv = ops.lookup("conv")
    assert conv is not None
    assert spec.signature(conv) == signature(conv) == \
        "conv(out, kernel, stride=1, pad=same, dilation=1, groups=1, bias=true)"


def test_node_args_carry_no_spans():
    g = spec.load_text("network t {\n input x: 3x8x8\n conv(4, 3, stride=2)\n}", "<t>")
    assert dict(g.nodes[0].args) == {"out": 4, "kernel": 3, "stride": 2, "pad": "same", "dilation": 1, "groups": 1,
                                     "bias": True}


def test_block_arguments_follow_the_bare_word_rule():
    bdef = ast.BlockDef("act", (ast.Param("kind", ast.Const("relu", HERE), HERE),), ast.Body((), HERE), HERE)
    bound = bind_block(bdef, call("act", "$hswish"), None, lambda e: evaluate(e, {}), names={}, layers=set())
    assert dict(bound.values) == {"kind": "hswish"}
    bound = bind_block(bdef, call("act", kind="$k"), None, lambda e: evaluate(e, {"k": "tanh"}), names={"k"})
    assert dict(bound.values) == {"kind": "tanh"}
    with pytest.raises(BindError) as err:
        bind_block(bdef, call("act", "$enc"), None, lambda e: evaluate(e, {}), names={}, layers={"enc"})
    assert (err.value.code, err.value.message) == (codes.UNKNOWN_NAME, "'enc' is a layer, not a value: pass it as @enc")


def test_an_op_argument_that_takes_no_string_evaluates_a_bare_word():
    with pytest.raises(Exception, match="undefined name 'widht'"):
        bind(call("conv", "$widht", 3))
