"""Text → AST, with syntax errors turned into located, human-worded diagnostics."""
from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from archc.diagnostics import Collector, Diagnostic, Span, note
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
    "REF": "a reference like @name", "SLASH": "'/'", "MINUS": "'-'", "PLUS": "'+'", "DOT": "'.'", "_POW": "'**'",
}
_TOP_LEVEL = {"NETWORK", "BLOCK", "IMPORT", "DEFAULTS"}  # keywords that start a definition: never inside braces
_DIMS = re.compile(r"(?<![\w.])\d+(?:[x×]\d+)+(?![\w.])")  # 3x3, 3×224×224


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


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _indent(text: str, offset: int) -> int:
    start = text.rfind("\n", 0, offset) + 1
    return len(text[start:offset]) - len(text[start:offset].lstrip(" \t"))


def _unclosed(text: str, end: int) -> tuple[str, int] | None:
    """The bracket open at offset `end` that most likely lacks its closer, as (bracket, offset); None when all
    are closed. Comments and strings are skipped. Of several open braces, the likely culprit is one that a '}'
    indented less than its own line closed (that '}' belonged to an outer brace), else the innermost open one."""
    stack: list[tuple[str, int, int]] = []  # (bracket, offset, indentation of its line)
    misaligned: list[int] = []
    i = 0
    while i < end:
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = end if nl < 0 else nl
            continue
        if ch in "\"'":
            close, nl = text.find(ch, i + 1), text.find("\n", i + 1)
            if close >= 0 and (nl < 0 or close < nl):
                i = close + 1
                continue
        elif ch in "([{":
            stack.append((ch, i, _indent(text, i)))
        elif ch in ")]}" and stack:
            opened, at, indent = stack.pop()
            line_start = text.rfind("\n", 0, i) + 1
            if ch == "}" and opened == "{" and not text[line_start:i].strip() and indent > _indent(text, i):
                misaligned.append(at)
        i += 1
    if not stack:
        return None
    bracket, at, _ = stack[-1]
    inside = [m for m in misaligned if m > stack[0][1]]
    if bracket == "{" and inside:
        return "{", inside[0]
    return bracket, at


def _opened_what(text: str, offset: int) -> str:
    """`network 'n'` or `block 'b'` when the brace at `offset` opens a definition, else `the '{'`."""
    start = text.rfind("\n", 0, offset) + 1
    m = re.match(r"\s*(network|block)\s+([A-Za-z_]\w*)", text[start:offset])
    return f"{m.group(1)} '{m.group(2)}'" if m else "the '{'"


def _explain(err: UnexpectedInput, text: str, file: str) -> tuple[str, Span, tuple[Diagnostic, ...]]:
    """A syntax error's message, where to point, and notes."""
    line, col = getattr(err, "line", 0) or 0, getattr(err, "column", 0) or 0
    tok = getattr(err, "token", None)
    at_end = isinstance(err, UnexpectedEOF) or isinstance(tok, Token) and tok.type == "$END" or line <= 0
    if at_end:
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        offset = len(text)
    elif isinstance(err, UnexpectedCharacters):
        offset = err.pos_in_stream or 0
    else:
        offset = tok.start_pos if isinstance(tok, Token) and tok.start_pos is not None else len(text)

    # `conv(16, 3x3)`: the shape syntax of `input` lines written where a value goes
    dims = None
    if not at_end:
        line_start, line_end = text.rfind("\n", 0, offset) + 1, text.find("\n", offset)
        found = _DIMS.finditer(text, line_start, len(text) if line_end < 0 else line_end)
        dims = next((m for m in found if m.start() < offset < m.end()), None)
    if dims is not None:
        sizes = re.split("[x×]", dims.group())
        start_line, start_col = _position(text, dims.start())
        return (f"'{dims.group()}' is not a value: write a kernel of {'×'.join(sizes)} as ({', '.join(sizes)}) "
                "(shapes like 3x224x224 are written only in `input` lines)",
                Span(file, start_line, start_col, start_line, start_col + len(dims.group())), ())

    # a definition's keyword, or the end of the file, while a bracket is still open
    top_level = isinstance(tok, Token) and tok.type in _TOP_LEVEL
    if at_end or top_level:
        open_ = _unclosed(text, offset)
        if open_ is not None and (open_[0] == "{" or top_level):
            bracket, at = open_
            closer = {"(": ")", "[": "]", "{": "}"}[bracket]
            what = _opened_what(text, at) if bracket == "{" else f"the '{bracket}'"
            o_line, o_col = _position(text, at)
            reached = "the file ends here" if at_end else f"'{tok}' starts here, still inside it"
            return (f"missing '{closer}' to close {what} opened here", Span(file, o_line, o_col, o_line, o_col + 1),
                    (note(reached, Span(file, line, col, line, col + (1 if at_end else len(str(tok))))),))

    if tok is not None and not at_end:
        previous = (getattr(err, "token_history", None) or [None])[-1]
        if previous is not None and previous.type in _KEYWORDS and "is a keyword" in _syntax_message(err):
            tok, line, col = previous, previous.line or 0, previous.column or 0  # point at the keyword itself
    width = len(str(tok)) if isinstance(tok, Token) and tok.type not in ("$END", "_NL") else 1
    return _syntax_message(err), Span(file, line, col, line, col + width), ()


def parse(text: str, file: str, diags: Collector) -> ast.Module | None:
    """Parse one file; on a syntax error record it (with location) and return None."""
    try:
        tree = _lark().parse(text, start="module")
    except TooDeep as err:
        line, col = err.token.line or 0, err.token.column or 0  # lexer tokens always have a position
        diags.error(codes.SYNTAX, f"brackets nest more than {MAX_NESTING} deep", Span(file, line, col, line, col + 1))
        return None
    except UnexpectedInput as err:
        message, span, notes = _explain(err, text, file)
        diags.error(codes.SYNTAX, message, span, notes)
        return None
    to_ast = ToAst(file)
    module: ast.Module = to_ast.transform(tree)
    for message, span, notes in to_ast.problems:
        diags.error(codes.SYNTAX, message, span, notes)
    return None if to_ast.problems else module


def parse_value(text: str) -> Any:
    """A command-line value (`--set dilations=[1, 2, 4]`) read as a spec-language literal expression; a bare word
    that is not one (`mode=bilinear`) stays a string."""
    from archc.spec.evaluate import EvalError, evaluate
    try:
        tree = _lark().parse(text, start="expr")
        return evaluate(ToAst("<--set>").transform(tree), {})
    except (UnexpectedInput, EvalError, TooDeep):
        return text
