"""Lark parse tree → AST. The only place a `Span` is made from lark's position metadata."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from lark import Token, Transformer, v_args
from lark.tree import Meta

from archc.diagnostics import Diagnostic, Span, note
from archc.spec import ast

Problem = tuple[str, Span, tuple[Diagnostic, ...]]  # a syntax error's message, span and notes
Children = list[Any]  # a rule's children: tokens and the AST values of its subrules (None for a missing optional)


def _unquote(tok: str) -> str:
    return tok[1:-1]


def token_span(file: str, tok: Token) -> Span:
    """Where a token was written. Lark types a token's position Optional (a token made by hand has none); every
    token its lexer makes has one."""
    return Span(file, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)


@v_args(meta=True)
class ToAst(Transformer):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file
        self.problems: list[Problem] = []  # mistakes the grammar lets through; `parse` reports them as syntax errors

    def _span(self, meta: Meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 0, 0, 0, 0)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return token_span(self.file, tok)

    # ---- expressions
    def int_(self, meta: Meta, children: Children) -> ast.Const:
        return ast.Const(int(children[0]), self._span(meta))

    def float_(self, meta: Meta, children: Children) -> ast.Const:
        return ast.Const(float(children[0]), self._span(meta))

    def string(self, meta: Meta, children: Children) -> ast.Const:
        return ast.Const(_unquote(children[0]), self._span(meta))

    def true(self, meta: Meta, children: Children) -> ast.Const:
        return ast.Const(True, self._span(meta))

    def false(self, meta: Meta, children: Children) -> ast.Const:
        return ast.Const(False, self._span(meta))

    def var(self, meta: Meta, children: Children) -> ast.Var:
        return ast.Var(str(children[0]), self._span(meta))

    def _fold(self, meta: Meta, children: Children, op_of: Callable[[Any], str]) -> ast.Expr:
        result = children[0]
        for i in range(1, len(children), 2):
            result = ast.BinOp(op_of(children[i]), result, children[i + 1], self._span(meta))
        return result

    def sum(self, meta: Meta, children: Children) -> ast.Expr:
        return self._fold(meta, children, str)

    def product(self, meta: Meta, children: Children) -> ast.Expr:
        return self._fold(meta, children, str)

    def comparison(self, meta: Meta, children: Children) -> ast.Expr:
        return self._fold(meta, children, str)

    def power(self, meta: Meta, children: Children) -> ast.BinOp:
        return ast.BinOp("**", children[0], children[1], self._span(meta))

    def or_(self, meta: Meta, children: Children) -> ast.Expr:
        return self._chain_bool(meta, children, "or")

    def and_(self, meta: Meta, children: Children) -> ast.Expr:
        return self._chain_bool(meta, children, "and")

    def _chain_bool(self, meta: Meta, children: Children, op: str) -> ast.Expr:
        result = children[0]
        for c in children[1:]:
            result = ast.BinOp(op, result, c, self._span(meta))
        return result

    def if_expr(self, meta: Meta, children: Children) -> ast.IfExp:
        then, cond, orelse = children
        return ast.IfExp(cond, then, orelse, self._span(meta))

    def not_(self, meta: Meta, children: Children) -> ast.Unary:
        return ast.Unary("not", children[0], self._span(meta))

    def neg(self, meta: Meta, children: Children) -> ast.Unary:
        return ast.Unary("-", children[0], self._span(meta))

    def attr(self, meta: Meta, children: Children) -> ast.Attr:
        return ast.Attr(children[0], str(children[1]), self._span(meta))

    def index(self, meta: Meta, children: Children) -> ast.Index:
        return ast.Index(children[0], children[1], self._span(meta))

    def func(self, meta: Meta, children: Children) -> ast.Func:
        return ast.Func(str(children[0]), children[1] or ast.Args(), self._span(meta))

    def tuple_(self, meta: Meta, children: Children) -> ast.Seq:
        return ast.Seq("tuple", tuple(c for c in children if c is not None), self._span(meta))

    def list(self, meta: Meta, children: Children) -> ast.Seq:
        return ast.Seq("list", tuple(c for c in children if c is not None), self._span(meta))

    def kwarg(self, meta: Meta, children: Children) -> ast.Kwarg:
        return ast.Kwarg(str(children[0]), children[1], self._tok_span(children[0]))

    def arg(self, meta: Meta, children: Children) -> ast.Expr:
        return children[0]

    def args(self, meta: Meta, children: Children) -> ast.Args:
        kw_before = None
        for c in children:
            if isinstance(c, ast.Kwarg):
                kw_before = kw_before or c
            elif kw_before is not None:
                self.problems.append(("positional argument after a keyword argument", c.span,
                                      (note(f"keyword argument '{kw_before.name}' is here; positional arguments "
                                            "come first", kw_before.span),)))
                break
        pos = tuple(c for c in children if not isinstance(c, ast.Kwarg))
        kw = tuple(c for c in children if isinstance(c, ast.Kwarg))
        return ast.Args(pos, kw)

    # ---- layers
    def call(self, meta: Meta, children: Children) -> ast.Call:
        return ast.Call(str(children[0]), children[1] or ast.Args(), self._span(meta))

    def merge(self, meta: Meta, children: Children) -> ast.Merge:
        return ast.Merge(str(children[0]), children[1] or ast.Args(), children[2], self._span(meta))

    def ref(self, meta: Meta, children: Children) -> ast.Ref:
        return ast.Ref(str(children[0])[1:], self._span(meta))

    def tensor(self, meta: Meta, children: Children) -> ast.TensorRef:
        return ast.TensorRef(str(children[0])[1:], self._span(meta))

    def opath(self, meta: Meta, children: Children) -> tuple[str, Span]:
        return ("/".join(str(c) for c in children), self._span(meta))

    def chain(self, meta: Meta, children: Children) -> tuple[ast.Element, ...]:
        return tuple(children)

    def first(self, meta: Meta, children: Children) -> ast.Args:
        return children[0] or ast.Args()

    def repeat_n(self, meta: Meta, children: Children) -> ast.RepeatN:
        count = children[0]
        if isinstance(count, Token):
            count = ast.Const(int(count), self._tok_span(count))
        return ast.RepeatN(count, children[1] if len(children) > 1 else None, self._span(meta))

    def repeat_for(self, meta: Meta, children: Children) -> ast.RepeatFor:
        return ast.RepeatFor(str(children[0]), children[1], self._span(meta))

    def layer_stmt(self, meta: Meta, children: Children) -> ast.LayerStmt:
        label, chain, repeat = children
        return ast.LayerStmt(
            str(label) if label is not None else None,
            self._tok_span(label) if label is not None else None,
            chain,
            repeat,
            self._span(meta),
        )

    # ---- statements
    def shape(self, meta: Meta, children: Children) -> tuple[ast.Expr, ...]:
        tok = children[0]
        if isinstance(tok, ast.Seq):
            return tok.items
        span = self._tok_span(tok)
        return tuple(ast.Const(int(d), span) for d in str(tok).replace("×", "x").split("x"))

    def input_stmt(self, meta: Meta, children: Children) -> ast.InputStmt:
        name, dims, dtype = children
        return ast.InputStmt(str(name), dims, str(dtype) if dtype is not None else None, self._span(meta))

    def output_stmt(self, meta: Meta, children: Children) -> ast.OutputStmt:
        return ast.OutputStmt(tuple(children), self._span(meta))

    def let_stmt(self, meta: Meta, children: Children) -> ast.LetStmt:
        return ast.LetStmt(str(children[0]), children[1], self._span(meta))

    def if_stmt(self, meta: Meta, children: Children) -> ast.IfStmt:
        return ast.IfStmt(children[0], children[1], children[2], self._span(meta))

    def body(self, meta: Meta, children: Children) -> ast.Body:
        return ast.Body(tuple(children), self._span(meta))

    # ---- top level
    def param(self, meta: Meta, children: Children) -> ast.Param:
        return ast.Param(str(children[0]), children[1], self._tok_span(children[0]))

    def params(self, meta: Meta, children: Children) -> tuple[ast.Param, ...]:
        return tuple(children)

    def import_stmt(self, meta: Meta, children: Children) -> ast.Import:
        return ast.Import(_unquote(children[0]), self._span(meta))

    def defaults_stmt(self, meta: Meta, children: Children) -> tuple[str, tuple[ast.Call, ...]]:
        return ("defaults", tuple(children))

    def block_def(self, meta: Meta, children: Children) -> ast.BlockDef:
        return ast.BlockDef(str(children[0]), children[1] or (), children[2], self._span(meta))

    def network_def(self, meta: Meta, children: Children) -> ast.NetworkDef:
        return ast.NetworkDef(str(children[0]), children[1] or (), children[2], self._span(meta))

    def module(self, meta: Meta, children: Children) -> ast.Module:
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
