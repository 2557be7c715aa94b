"""Text → AST, with syntax errors turned into located, human-worded diagnostics."""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from archc.diagnostics import Collector, Span
from archc.spec import ast, codes
from archc.spec.to_ast import ToAst

MAX_NESTING = 100  # brackets and braces; deeper nesting is refused before it can exhaust Python's stack


class TooDeep(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


class ParenNewlines:
    """Drop newlines inside (...) and [...], so long argument lists can wrap; braces keep them (statements)."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = braces = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "LBRACE":
                braces += 1
            elif tok.type == "RBRACE":
                braces = max(0, braces - 1)
            elif tok.type == "_NL" and depth:
                continue
            if depth + braces > MAX_NESTING:
                raise TooDeep(tok)
            yield tok


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files("archc.spec").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, start=["module", "expr"], parser="lalr", postlex=ParenNewlines(), propagate_positions=True,
                maybe_placeholders=True)


# Friendlier words for the parser's terminal names.
_TOKEN_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string", "SHAPE": "a shape like 3x224x224",
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "COLON": "':'", "EQUAL": "'='", "_NL": "a new line", "SEMICOLON": "';'", "STAR": "'*'", "AT": "'@'",
    "$END": "end of file", "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
}


_KEYWORDS = {"NETWORK", "BLOCK", "INPUT", "OUTPUT", "LET", "IF", "ELSE", "FOR", "IN", "IMPORT", "DEFAULTS",
             "FIRST", "TRUE", "FALSE", "AND", "OR", "NOT"}


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token_type]
    return f"'{token_type.lower()}'" if token_type.isupper() else token_type


def _syntax_message(err: UnexpectedInput) -> str:
    if isinstance(err, UnexpectedCharacters):
        return f"unexpected character {err.char!r}"
    if isinstance(err, UnexpectedEOF):
        return "unexpected end of file (is a '}' or ')' missing?)"
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    got = "end of file" if tok.type == "$END" else ("end of line" if tok.type == "_NL" else repr(str(tok)))
    expected = sorted({_describe(t) for t in err.accepts or err.expected if not t.startswith("__")})
    if tok.type == "$END":
        return "unexpected end of file (is a '}' or ')' missing?)"
    if tok.type == "EQUAL":
        return f"unexpected {got}: keyword arguments are written name=value inside a call's parentheses"
    previous = (err.token_history or [None])[-1]
    if previous is not None and previous.type in _KEYWORDS and tok.type in ("COLON", "LPAR", "_NL", "$END"):
        return f"'{previous}' is a keyword of the language and cannot name a layer, block or parameter"
    if len(expected) > 8:
        structural = [_describe(t) for t in ("COMMA", "RPAR", "RSQB", "RBRACE", "_NL") if t in (err.accepts or ())]
        if not structural:
            return f"unexpected {got}"
        expected = structural
    if len(expected) <= 2:
        return f"unexpected {got}; expected " + " or ".join(expected)
    return f"unexpected {got}; expected one of " + ", ".join(expected)


def parse(text: str, file: str, diags: Collector) -> ast.Module | None:
    """Parse one file; on a syntax error record it (with location) and return None."""
    try:
        tree = _lark().parse(text, start="module")
    except TooDeep as err:
        line, col = err.token.line or 0, err.token.column or 0  # lexer tokens always have a position
        diags.error(codes.SYNTAX, f"brackets nest more than {MAX_NESTING} deep", Span(file, line, col, line, col + 1))
        return None
    except UnexpectedInput as err:
        line, col = getattr(err, "line", 0) or 0, getattr(err, "column", 0) or 0
        tok = getattr(err, "token", None)
        previous = (getattr(err, "token_history", None) or [None])[-1]
        if previous is not None and previous.type in _KEYWORDS and "is a keyword" in _syntax_message(err):
            tok, line, col = previous, previous.line, previous.column  # point at the keyword itself
        if isinstance(tok, Token) and tok.type == "$END" or line <= 0:
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        width = len(str(tok)) if isinstance(tok, Token) and tok.type not in ("$END", "_NL") else 1
        diags.error(codes.SYNTAX, _syntax_message(err), Span(file, line, col, line, col + width))
        return None
    return ToAst(file).transform(tree)


def parse_value(text: str) -> Any:
    """A command-line value (`--set dilations=[1, 2, 4]`) read as a spec-language literal expression; a bare word
    that is not one (`mode=bilinear`) stays a string."""
    from archc.spec.evaluate import EvalError, evaluate
    try:
        tree = _lark().parse(text, start="expr")
        return evaluate(ToAst("<--set>").transform(tree), {})
    except (UnexpectedInput, EvalError, TooDeep):
        return text
