"""The spec language's own arithmetic: ints, floats, bools, strings and tuples. It never evaluates Python."""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from archc.diagnostics import Span
from archc.spec import ast
from archc.spec.scope import POISON, suggest

Refs = Callable[[str, Span], Any]  # `@path` written at a span → the tensor it names


class EvalError(Exception):
    def __init__(self, message: str, span: Span | None, code: str = "expr"):
        super().__init__(message)
        self.message, self.span, self.code = message, span, code


class Poisoned(EvalError):
    """A name whose `let` (or parameter) failed, its error already reported: the caller stops quietly."""

    def __init__(self, span: Span | None):
        super().__init__("", span)


def type_name(v: object) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, tuple):
        return "a tuple"
    if hasattr(v, "shape") and hasattr(v, "producer"):
        return "a tensor"
    return type(v).__name__


def _num(v: Any, span: Span, what: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EvalError(f"{what} needs numbers, got {type_name(v)}", span, "bad-type")
    return v


def _floordiv(a: Any, b: Any) -> Any:
    return a // b


def _truediv(a: Any, b: Any) -> Any:
    r = a / b
    return int(r) if isinstance(r, float) and r.is_integer() and isinstance(a, int) and isinstance(b, int) else r


_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _truediv, "//": _floordiv,
          "%": operator.mod, "**": operator.pow}
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}
_FUNCS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs, "int": int, "float": float,
                                         "round": round, "len": len, "floor": math.floor, "ceil": math.ceil}
_TENSOR_FUNCS = {"shape": lambda t: tuple(t.shape), "channels": lambda t: t.shape[1]}
MAX_INT = 1 << 40  # guards against `2 ** 2 ** 99` and friends: the language's numbers are layer sizes


def _word_operand(e: ast.Expr, env: Mapping[str, Any], refs: Refs | None) -> Any:
    """An operand of `==` / `!=`: an undefined bare word there is still an error (a misspelled name must not
    compare unequal in silence), but one that resembles no name was probably meant as a string: say how."""
    try:
        return evaluate(e, env, refs)
    except EvalError as err:
        if isinstance(e, ast.Var) and err.code == "undefined-name" and not suggest(e.name, env):
            err.message += f' (to compare with the word itself, quote it: "{e.name}")'
        raise


def evaluate(e: ast.Expr, env: Mapping[str, Any], refs: Refs | None = None) -> Any:
    """`env` maps names to values; a miss raises an `undefined-name` error. `refs(path, span)` resolves `@path`
    to a tensor (it raises EvalError itself when there is none). The language is dynamically typed: a value is an
    int, float, bool, str, a tuple of values or a tensor, and each operation checks its operands itself."""
    if isinstance(e, ast.Const):
        return e.value
    if isinstance(e, ast.TensorRef):
        if refs is None:
            raise EvalError("tensor references are not allowed here", e.span, "bad-type")
        return refs(e.path, e.span)
    if isinstance(e, ast.Var):
        if e.name in env:
            if env[e.name] is POISON:
                raise Poisoned(e.span)
            return env[e.name]
        raise EvalError(f"undefined name '{e.name}'" + suggest(e.name, env), e.span, "undefined-name")
    if isinstance(e, ast.IfExp):
        cond = evaluate(e.cond, env, refs)
        if not isinstance(cond, bool):
            raise EvalError(f"the condition of '… if … else …' must be true or false, got {type_name(cond)}",
                            e.cond.span, "bad-type")
        return evaluate(e.then if cond else e.orelse, env, refs)
    if isinstance(e, ast.Seq):
        return tuple(evaluate(i, env, refs) for i in e.items)
    if isinstance(e, ast.Unary):
        v = evaluate(e.operand, env, refs)
        if e.op == "not":
            if not isinstance(v, bool):
                raise EvalError(f"'not' needs a boolean, got {type_name(v)}", e.span, "bad-type")
            return not v
        return -_num(v, e.span, "'-'")
    if isinstance(e, ast.BinOp):
        if e.op in ("and", "or"):
            left = evaluate(e.left, env, refs)
            if not isinstance(left, bool):
                raise EvalError(f"'{e.op}' needs booleans, got {type_name(left)}", e.left.span, "bad-type")
            if (e.op == "and") != left:  # short circuit
                return left
            right = evaluate(e.right, env, refs)
            if not isinstance(right, bool):
                raise EvalError(f"'{e.op}' needs booleans, got {type_name(right)}", e.right.span, "bad-type")
            return right
        if e.op in ("==", "!="):
            a, b = _word_operand(e.left, env, refs), _word_operand(e.right, env, refs)
        else:
            a, b = evaluate(e.left, env, refs), evaluate(e.right, env, refs)
        if e.op in _COMPARE:
            if e.op not in ("==", "!=") and (isinstance(a, (str, tuple)) or isinstance(b, (str, tuple))):
                raise EvalError(f"cannot compare {type_name(a)} and {type_name(b)} with '{e.op}'", e.span, "bad-type")
            return _COMPARE[e.op](a, b)
        if e.op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
            return a + b
        _num(a, e.left.span, f"'{e.op}'"), _num(b, e.right.span, f"'{e.op}'")
        if e.op in ("/", "//", "%") and b == 0:
            raise EvalError("division by zero", e.span)
        if e.op == "**" and (abs(b) > 64 or abs(a) > MAX_INT):
            raise EvalError("exponent too large", e.span)
        r = _ARITH[e.op](a, b)
        if isinstance(r, complex) or (isinstance(r, (int, float)) and abs(r) > MAX_INT):
            raise EvalError(f"result {r} is out of range", e.span)
        return r
    if isinstance(e, ast.Index):
        seq, i = evaluate(e.obj, env, refs), evaluate(e.index, env, refs)
        if not isinstance(seq, tuple):
            raise EvalError(f"cannot index {type_name(seq)}", e.obj.span, "bad-type")
        if isinstance(i, bool) or not isinstance(i, int) or not -len(seq) <= i < len(seq):
            raise EvalError(f"index {i!r} is out of range for a tuple of {len(seq)}", e.index.span)
        return seq[i]
    if isinstance(e, ast.Attr):
        raise EvalError(f"values have no attribute '{e.name}' (use in_channels / in_shape inside a block)",
                        e.span, "undefined-name")
    if isinstance(e, ast.Func):
        fn = _FUNCS.get(e.name) or _TENSOR_FUNCS.get(e.name)
        if fn is None:
            available = ", ".join(sorted(_FUNCS) + sorted(_TENSOR_FUNCS))
            raise EvalError(f"unknown function '{e.name}'; available: {available}", e.span, "undefined-name")
        if e.args.keyword:
            raise EvalError(f"{e.name}() takes no keyword arguments", e.args.keyword[0].span, "bad-args")
        args = [evaluate(a, env, refs) for a in e.args.positional]
        if e.name in _TENSOR_FUNCS:
            if len(args) != 1 or type_name(args[0]) != "a tensor":
                raise EvalError(f"{e.name}() takes one tensor, e.g. {e.name}(@image)", e.span, "bad-args")
            return _TENSOR_FUNCS[e.name](args[0])
        try:
            if e.name in ("min", "max") and len(args) == 1 and isinstance(args[0], tuple):
                args = list(args[0])
            if e.name == "int" and len(args) == 1 and isinstance(args[0], bool):
                return int(args[0])  # true → 1, false → 0
            if e.name != "len":
                for a in args:
                    _num(a, e.span, f"{e.name}()")
            return fn(*args)
        except EvalError:
            raise
        except (TypeError, ValueError, OverflowError) as err:
            raise EvalError(f"{e.name}(): {err}", e.span, "bad-args") from None
    raise EvalError(f"cannot evaluate {type(e).__name__}", getattr(e, "span", None))
