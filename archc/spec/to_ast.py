"""Lark parse tree → AST. The only place a `Span` is made from lark's position metadata."""
from __future__ import annotations

import dataclasses

from lark import Token, Transformer, v_args

from archc.diagnostics import Span
from archc.spec import ast


def _unquote(tok: str) -> str:
    return tok[1:-1]


@v_args(meta=True)
class ToAst(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 0, 0, 0, 0)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    # ---- expressions
    def int_(self, meta, children):
        return ast.Const(int(children[0]), self._span(meta))

    def float_(self, meta, children):
        return ast.Const(float(children[0]), self._span(meta))

    def string(self, meta, children):
        return ast.Const(_unquote(children[0]), self._span(meta))

    def true(self, meta, children):
        return ast.Const(True, self._span(meta))

    def false(self, meta, children):
        return ast.Const(False, self._span(meta))

    def var(self, meta, children):
        return ast.Var(str(children[0]), self._span(meta))

    def _fold(self, meta, children, op_of):
        result = children[0]
        for i in range(1, len(children), 2):
            result = ast.BinOp(op_of(children[i]), result, children[i + 1], self._span(meta))
        return result

    def sum(self, meta, children):
        return self._fold(meta, children, str)

    def product(self, meta, children):
        return self._fold(meta, children, str)

    def comparison(self, meta, children):
        return self._fold(meta, children, str)

    def power(self, meta, children):
        return ast.BinOp("**", children[0], children[1], self._span(meta))

    def or_(self, meta, children):
        return self._chain_bool(meta, children, "or")

    def and_(self, meta, children):
        return self._chain_bool(meta, children, "and")

    def _chain_bool(self, meta, children, op):
        result = children[0]
        for c in children[1:]:
            result = ast.BinOp(op, result, c, self._span(meta))
        return result

    def not_(self, meta, children):
        return ast.Unary("not", children[0], self._span(meta))

    def neg(self, meta, children):
        return ast.Unary("-", children[0], self._span(meta))

    def attr(self, meta, children):
        return ast.Attr(children[0], str(children[1]), self._span(meta))

    def index(self, meta, children):
        return ast.Index(children[0], children[1], self._span(meta))

    def func(self, meta, children):
        return ast.Func(str(children[0]), children[1] or ast.Args(), self._span(meta))

    def tuple_(self, meta, children):
        return ast.Seq("tuple", tuple(c for c in children if c is not None), self._span(meta))

    def list(self, meta, children):
        return ast.Seq("list", tuple(c for c in children if c is not None), self._span(meta))

    def kwarg(self, meta, children):
        return ast.Kwarg(str(children[0]), children[1], self._tok_span(children[0]))

    def arg(self, meta, children):
        return children[0]

    def args(self, meta, children):
        pos = tuple(c for c in children if not isinstance(c, ast.Kwarg))
        kw = tuple(c for c in children if isinstance(c, ast.Kwarg))
        return ast.Args(pos, kw)

    # ---- layers
    def call(self, meta, children):
        return ast.Call(str(children[0]), children[1] or ast.Args(), self._span(meta))

    def merge(self, meta, children):
        return ast.Merge(str(children[0]), children[1] or ast.Args(), children[2], self._span(meta))

    def ref(self, meta, children):
        return ast.Ref(str(children[0])[1:], self._span(meta))

    def tensor(self, meta, children):
        return ast.TensorRef(str(children[0])[1:], self._span(meta))

    def opath(self, meta, children):
        return ("/".join(str(c) for c in children), self._span(meta))

    def chain(self, meta, children):
        return tuple(children)

    def first(self, meta, children):
        return children[0] or ast.Args()

    def repeat_n(self, meta, children):
        count = children[0]
        if isinstance(count, Token):
            count = ast.Const(int(count), self._tok_span(count))
        return ast.RepeatN(count, children[1] if len(children) > 1 else None, self._span(meta))

    def repeat_for(self, meta, children):
        return ast.RepeatFor(str(children[0]), children[1], self._span(meta))

    def layer_stmt(self, meta, children):
        label, chain, repeat = children
        return ast.LayerStmt(
            str(label) if label is not None else None,
            self._tok_span(label) if label is not None else None,
            chain,
            repeat,
            self._span(meta),
        )

    # ---- statements
    def shape(self, meta, children):
        tok = children[0]
        if isinstance(tok, ast.Seq):
            return tok.items
        span = self._tok_span(tok)
        return tuple(ast.Const(int(d), span) for d in str(tok).replace("×", "x").split("x"))

    def input_stmt(self, meta, children):
        name, dims, dtype = children
        return ast.InputStmt(str(name), dims, str(dtype) if dtype is not None else None, self._span(meta))

    def output_stmt(self, meta, children):
        return ast.OutputStmt(tuple(children), self._span(meta))

    def let_stmt(self, meta, children):
        return ast.LetStmt(str(children[0]), children[1], self._span(meta))

    def if_stmt(self, meta, children):
        return ast.IfStmt(children[0], children[1], children[2], self._span(meta))

    def body(self, meta, children):
        return ast.Body(tuple(children), self._span(meta))

    # ---- top level
    def param(self, meta, children):
        return ast.Param(str(children[0]), children[1], self._tok_span(children[0]))

    def params(self, meta, children):
        return tuple(children)

    def import_stmt(self, meta, children):
        return ast.Import(_unquote(children[0]), self._span(meta))

    def defaults_stmt(self, meta, children):
        return ("defaults", tuple(children))

    def block_def(self, meta, children):
        return ast.BlockDef(str(children[0]), children[1] or (), children[2], self._span(meta))

    def network_def(self, meta, children):
        return ast.NetworkDef(str(children[0]), children[1] or (), children[2], self._span(meta))

    def module(self, meta, children):
        mod = ast.Module(self.file)
        for c in children:
            if isinstance(c, ast.Import):
                mod.imports.append(c)
            elif isinstance(c, tuple) and c and c[0] == "defaults":
                mod.defaults.extend(c[1])
        defaults = tuple(mod.defaults)
        for c in children:
            if isinstance(c, ast.BlockDef):
                mod.blocks.append(dataclasses.replace(c, defaults=defaults))
            elif isinstance(c, ast.NetworkDef):
                mod.networks.append(dataclasses.replace(c, defaults=defaults))
        return mod
