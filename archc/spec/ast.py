"""The spec AST: plain dataclasses, every node with the `Span` it was written at."""
from __future__ import annotations

from dataclasses import dataclass, field

from archc.diagnostics import Span


# ---- expressions -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Const:
    value: object
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "not"
    operand: Expr
    span: Span


@dataclass(frozen=True)
class TensorRef:
    """`@name` or `@block/layer` used as a value: a block argument, or `shape(@image)`."""

    path: str
    span: Span


@dataclass(frozen=True)
class Attr:
    obj: Expr
    name: str
    span: Span


@dataclass(frozen=True)
class Index:
    obj: Expr
    index: Expr
    span: Span


@dataclass(frozen=True)
class Func:
    name: str
    args: Args
    span: Span


@dataclass(frozen=True)
class Seq:
    kind: str  # "tuple" or "list"
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class IfExp:
    """`then if cond else orelse`: only the chosen arm is evaluated."""

    cond: Expr
    then: Expr
    orelse: Expr
    span: Span


Expr = Const | Var | TensorRef | BinOp | Unary | Attr | Index | Func | Seq | IfExp


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Args:
    positional: tuple[Expr, ...] = ()
    keyword: tuple[Kwarg, ...] = ()


# ---- layers and statements ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """`conv(64, 3, stride=2)`: a registry op or a user block."""

    name: str
    args: Args
    span: Span


@dataclass(frozen=True)
class Merge:
    """`concat { branch; branch }`: every statement of the body is a branch from the same input."""

    name: str
    args: Args
    body: Body
    span: Span


@dataclass(frozen=True)
class Ref:
    """`@name` or `@block/layer`: continue from a named value instead of the previous statement's output."""

    name: str
    span: Span


Element = Call | Merge | Ref


@dataclass(frozen=True)
class RepeatN:
    count: Expr
    first: Args | None
    span: Span


@dataclass(frozen=True)
class RepeatFor:
    var: str
    items: Expr
    span: Span


@dataclass(frozen=True)
class LayerStmt:
    label: str | None
    label_span: Span | None
    chain: tuple[Element, ...] | Body
    repeat: RepeatN | RepeatFor | None
    span: Span


@dataclass(frozen=True)
class InputStmt:
    name: str
    dims: tuple[Expr, ...]
    dtype: str | None
    span: Span


@dataclass(frozen=True)
class OutputStmt:
    names: tuple[tuple[str, Span], ...]
    span: Span


@dataclass(frozen=True)
class LetStmt:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class IfStmt:
    cond: Expr
    then: Body
    orelse: Body | IfStmt | None
    span: Span


Stmt = LayerStmt | InputStmt | OutputStmt | LetStmt | IfStmt


@dataclass(frozen=True)
class Body:
    stmts: tuple[Stmt, ...]
    span: Span


# ---- top level ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: Body
    span: Span
    defaults: tuple[Call, ...] = ()  # the file's `defaults` line, applied to layers written in this file


@dataclass(frozen=True)
class NetworkDef:
    name: str
    params: tuple[Param, ...]
    body: Body
    span: Span
    defaults: tuple[Call, ...] = ()


@dataclass(frozen=True)
class Import:
    path: str
    span: Span


@dataclass
class Module:
    file: str
    imports: list[Import] = field(default_factory=list)
    defaults: list[Call] = field(default_factory=list)
    blocks: list[BlockDef] = field(default_factory=list)
    networks: list[NetworkDef] = field(default_factory=list)
