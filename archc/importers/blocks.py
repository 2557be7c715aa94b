"""Blocks where an imported file repeats itself: the pass both importers run over their spec lines before writing
them (`archc import`; `--flat` turns it off).

An importer writes one line per source layer. A run of consecutive lines that recurs with the same structure
(ResNet's bottleneck units, DenseNet's conv-conv-concat, GoogLeNet's inception modules, SqueezeNet's fire modules)
becomes a `block` written once above the network, and every occurrence a call of it, its comment naming the
occurrence's first and last source layers. What may differ between occurrences, and so becomes a parameter, is
numbers only, and only in units that merge branches (`add`, `concat`): a plain chain of layers folds only where it
recurs exactly and back to back (Extraction's 1×1/3×3 pairs), since a line per layer already reads as the paper's
table. Ops without weights at the end of a unit's last line that not every occurrence has (an in-place dropout)
go on that occurrence's call. Where calls are named after layer numbers (a cfg's `layers6_9`, not GoogLeNet's
`inception_3a`), a run of equal calls back to back is one line, `layers34_53: conv_x3_shortcut(256, 256, 1024) * 5`.

Kept conservative, so that the folded spec computes what the flat one does:
- a unit folds only when it occurs at least twice, and when the block and its calls take fewer lines than the
  flat lines did;
- its references (`@name`) may name its own earlier lines or its input (the tensor its first line reads, which
  the block names `x: identity`), nothing else;
- nothing outside a unit refers to its lines but to the last, its output (which a reference then reaches as the
  call's label), and none but the last is a network output;
- lines without a label, and comment lines, are never in a unit.

Layers in a call live under the call's label (`inception_3a/conv1x1`), so their parameters are renamed:
`Folded.renames` maps each folded line's flat label to its new path, and `rename` a parameter name through it
(`conv6/bn.running_var` → `layers6_9/conv1/bn.running_var`): the importers apply it to their weights layouts.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from archc import ops

MAX_UNIT = 16  # the longest run of lines tried as one unit (GoogLeNet's inception module has 8)
KEYWORDS = {"network", "block", "input", "output", "let", "if", "else", "for", "in", "import", "defaults", "first",
            "true", "false", "and", "or", "not"}
RESERVED = KEYWORDS | {"in_channels", "in_shape", "min", "max", "abs", "int", "float", "round", "floor", "ceil",
                       "len", "shape", "channels"}
_PART = re.compile(r"@(?P<ref>[A-Za-z_]\w*(?:/[A-Za-z_]\w*)*)|(?<![\w.])(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
                   r"(?![\w.])")
_NAME = re.compile(r"[A-Za-z_]\w*")
# ops without weights that may end a unit's last line in some occurrences and not others (SqueezeNet's last fire
# module has Caffe's in-place drop9 on its concat's line): the call carries them, `fire9: fire(…) dropout(0.5)`
_FREE = {"relu", "relu6", "leaky", "leaky_relu", "dropout", "sigmoid", "tanh", "silu", "swish", "softmax", "hswish",
         "hsigmoid", "identity"}
_TAIL = re.compile(r"\s+([A-Za-z_]\w*)(\([^(){}@]*\))?$")


@dataclass
class Line:
    """One line of the network's body, as an importer writes it."""
    label: str | None  # None: an unlabelled layer (`flatten`), or a comment line (`text`)
    body: str = ""  # what follows `label: `, a leading `@source ` included
    comment: str = ""  # the line's comment (without `#`)
    first: str = ""  # its first source layer and line, for the comment of a call covering it
    last: str = ""  # its last source layer and line
    note: str = ""  # its comment inside a block definition (no line numbers: those differ between calls)
    text: str | None = None  # a line written as it is (a comment): never part of a unit


@dataclass
class Folded:
    blocks: list[str]  # the block definitions, lines of text, to go before the network
    lines: list[Line]  # the network's body: the flat lines left, and a call per occurrence (or run of them)
    renames: dict[str, str] = field(default_factory=dict)  # flat label of a folded line → its layer's new path
    refs: dict[str, str] = field(default_factory=dict)  # flat label of a unit's last line → its call's label
    calls: dict[str, int] = field(default_factory=dict)  # block → the occurrences it stands for

    def rename(self, name: str) -> str:
        return rename(name, self.renames)


def rename(name: str, renames: dict[str, str]) -> str:
    """A flat spec's parameter or layer name (`conv6.weight`, `conv6/bn.bias`) under the folded spec: its first
    path component renamed."""
    head = re.match(r"[^/.]+", name)
    if head is None or head.group() not in renames:
        return name
    return renames[head.group()] + name[head.end():]


@dataclass
class _Prep:
    parts: list[tuple[str, str]]  # ("t", text), ("r", a reference's name), ("n", a number)
    leading: bool  # the line starts `@source `
    op: str  # its first op or merge
    merge: bool


@dataclass
class _Plan:
    """How one unit's occurrences fold: the block's text, and a call line per run of occurrences."""
    name: str
    length: int
    starts: list[int]
    block: list[str]
    calls: list[tuple[int, int, Line]]  # (first occurrence's line, occurrences, call line)
    renames: dict[str, str]
    refs: dict[str, str]

    @property
    def saved(self) -> int:
        return self.length * len(self.starts) - len(self.block) - len(self.calls)


def _prep(line: Line) -> _Prep:
    parts: list[tuple[str, str]] = []
    at = 0
    for m in _PART.finditer(line.body):
        if m.start() > at:
            parts.append(("t", line.body[at:m.start()]))
        parts.append(("r", m.group("ref")) if m.group("ref") else ("n", m.group("num")))
        at = m.end()
    if at < len(line.body):
        parts.append(("t", line.body[at:]))
    leading = bool(parts) and parts[0][0] == "r" and len(parts) > 1 and parts[1][1].startswith(" ")
    rest = "".join(v for _, v in parts[1 if leading else 0:]).strip()
    word = _NAME.match(rest)
    return _Prep(parts, leading, word.group() if word else "", "{" in line.body)


def _split(body: str) -> tuple[str, list[str]]:
    """A line's body less the ops without weights that end it (not its first op), and those ops."""
    tail: list[str] = []
    while (m := _TAIL.search(body)) and m.group(1) in _FREE:
        core = body[:m.start()]
        if not re.sub(r"^@\S+\s*", "", core.strip()):
            break
        tail.insert(0, m.group().strip())
        body = core
    return body, tail


def _argnames(parts: list[tuple[str, str]]) -> dict[int, str]:
    """Each number's argument: a keyword's name, or the op's parameter at its place (`conv(64, 3)`: out, kernel);
    the elements of a tuple are numbered (`pad=(0, 0, 1, 1)`: pad1 … pad4)."""
    names: dict[int, str] = {}
    stack: list[list[str | int | None]] = []  # [callee, argument index, keyword]
    word: str | None = None

    def arg(frame: list[str | int | None]) -> str:
        callee, i, kw = frame
        assert isinstance(i, int)
        if kw:
            return str(kw)
        op = ops.lookup(str(callee)) if callee else None
        return op.params[i].name if op is not None and i < len(op.params) else f"arg{i + 1}"

    for idx, (kind, v) in enumerate(parts):
        if kind == "n":
            if not stack:
                names[idx] = "value"
            elif stack[-1][0] is None:  # a tuple: the argument it is, numbered
                names[idx] = (arg(stack[-2]) if len(stack) > 1 else "value") + str(int(stack[-1][1] or 0) + 1)
            else:
                names[idx] = arg(stack[-1])
            word = None
            continue
        if kind == "r":
            word = None
            continue
        for tok in re.findall(r"[A-Za-z_]\w*|\S", v):
            if tok == "(":
                stack.append([word, 0, None])
            elif tok == ")" and stack:
                stack.pop()
            elif tok == "," and stack:
                stack[-1][1] = int(stack[-1][1] or 0) + 1
                stack[-1][2] = None
            elif tok == "=" and stack and word:
                stack[-1][2] = word
            word = tok if _NAME.fullmatch(tok) else None
    return names


def _prefix(labels: Sequence[str]) -> str:
    """The labels' common beginning up to and with its last `_` (`inception_3a_`), where every label goes on."""
    common = labels[0]
    for label in labels[1:]:
        while not label.startswith(common):
            common = common[:-1]
    common = common[:common.rfind("_") + 1]
    return common if common.strip("_") and all(len(label) > len(common) for label in labels) else ""


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}_{n}", n + 1
    taken.add(out)
    return out


def _number(names: list[str]) -> list[str]:
    """Names that repeat are numbered from 1 (conv, conv, shortcut → conv1, conv2, shortcut)."""
    counts: dict[str, int] = {}
    out = []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    for name in names:
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            out.append(f"{name}{seen[name]}")
        else:
            out.append(name)
    return out


def _strip_notes(notes: list[str]) -> list[str]:
    """The notes of a unit's lines without the prefix they share (`inception_3a/1x1` → `1x1`)."""
    words = [w for n in notes for w in re.split(r",\s*", n) if w]
    if len(words) < 2:
        return notes
    common = _prefix([w.replace("/", "_") for w in words])
    if not common:
        return notes
    return [re.sub(rf"(^|,\s*){re.escape(words[0][:len(common)])}", r"\1", n) for n in notes]


class _Folder:
    def __init__(self, lines: Sequence[Line], start: str, outputs: Sequence[str]):
        self.lines = list(lines)
        self.prep = [_prep(line) for line in self.lines]
        split = [_split(line.body) for line in self.lines]
        self.core = [_prep(Line(line.label, body)) for line, (body, _) in zip(self.lines, split, strict=True)]
        self.tail = [tail for _, tail in split]  # as a unit's last line: its core, and the ops after it
        self.src: list[str | None] = []  # the tensor each line reads (its `@source`, else the line before's)
        self.users: dict[str, set[int]] = {}  # label → the lines referring to it (-1: a network output)
        flow: str | None = start
        for i, (line, p) in enumerate(zip(self.lines, self.prep, strict=True)):
            if line.text is not None:
                self.src.append(None)
                continue
            self.src.append(p.parts[0][1] if p.leading else flow)
            for kind, v in p.parts:
                if kind == "r":
                    self.users.setdefault(v, set()).add(i)
            flow = line.label
        for name in outputs:
            self.users.setdefault(name, set()).add(-1)
        self.used = [False] * len(self.lines)
        self.taken = {line.label for line in self.lines if line.label} | KEYWORDS | {start} | \
            set(ops.registry.keywords())
        self.blocks: set[str] = set()

    def signature(self, s: int, n: int) -> tuple[object, ...] | None:
        """The structure of lines s … s+n−1 as one unit, or None where they cannot be one: its references as
        (own line) or its input ("x"), and in a unit that merges, its numbers as "#"."""
        lines = self.lines[s:s + n]
        if len(lines) < n or any(self.used[s:s + n]) or any(line.label is None or line.text is not None
                                                             for line in lines):
            return None
        own = {line.label: k for k, line in enumerate(lines)}
        for line in lines[:-1]:
            assert line.label is not None
            if any(not s <= i < s + n for i in self.users.get(line.label, ())):
                return None  # read from outside the unit (or a network output): not foldable
        merge = any(self.part(s, k, n).merge for k in range(n))
        out: list[tuple[object, ...]] = []
        for j in range(n):
            p = self.part(s, j, n)
            items: list[object] = []
            for idx, (kind, v) in enumerate(p.parts):
                if kind == "r":
                    if j == 0 and idx == 0 and p.leading:
                        continue  # the unit's input: the call's own `@source`
                    k = own.get(v)
                    if k is not None and k < j:
                        items.append(("own", k))
                    elif v == self.src[s]:
                        items.append(("x",))
                    else:
                        return None
                elif kind == "n":
                    items.append("#" if merge else v)
                else:
                    items.append(v.lstrip() if j == 0 and idx == 1 and p.leading else v)
            out.append(tuple(items))
        return (merge, tuple(out))

    def part(self, s: int, j: int, n: int) -> _Prep:
        """Line s+j as a line of the unit of n lines from s: the last less the ops without weights after it."""
        return self.core[s + j] if j == n - 1 else self.prep[s + j]

    def best(self) -> _Plan | None:
        best: _Plan | None = None
        size = len(self.lines)
        for n in range(2, min(MAX_UNIT, size // 2) + 1):
            found: dict[tuple[object, ...], list[int]] = {}
            for s in range(size - n + 1):
                sig = self.signature(s, n)
                if sig is not None:
                    found.setdefault(sig, []).append(s)
            for sig, starts in found.items():
                chosen: list[int] = []
                for s in starts:
                    if not chosen or s >= chosen[-1] + n:
                        chosen.append(s)
                if not sig[0]:  # a plain chain: only where it repeats back to back (one `* N` call, not a call
                    # in place of each of its lines)
                    chosen = [s for k, s in enumerate(chosen) if (k and chosen[k - 1] + n == s) or
                              (k + 1 < len(chosen) and chosen[k + 1] == s + n)]
                if len(chosen) < 2 or n * len(chosen) - n - 3 - 1 <= (best.saved if best else 0):
                    continue
                plan = self.plan(sig, chosen, n)
                if plan.saved > (best.saved if best else 0):
                    best = plan
        return best

    def plan(self, sig: tuple[object, ...], starts: list[int], n: int) -> _Plan:
        merge, shape = sig
        assert isinstance(shape, tuple)
        lines0 = self.lines[starts[0]:starts[0] + n]
        labels0 = [str(line.label) for line in lines0]
        # the layers' names inside the block: the labels less their shared prefix (inception_3a_3x3 → conv3x3),
        # or less their numbers (Darknet's conv6 → conv1, the unit's first conv)
        prefix = _prefix(labels0)
        if prefix:
            inner = [label[len(prefix):] for label in labels0]
        else:
            inner = [re.sub(r"_?\d+$", "", label) or label for label in labels0]
        fixed = []
        for name, k in zip(inner, range(n), strict=True):
            op = self.part(starts[0], k, n).op or "layer"
            if not _NAME.fullmatch(name):
                name = op + re.sub(r"\W", "_", name)
            elif name in KEYWORDS:
                name = op if op not in inner else f"{op}_{name}"
            fixed.append(name)
        inner = _number(fixed) if len(set(fixed)) < len(fixed) else fixed
        local: set[str] = set(inner) | RESERVED
        x = _unique("x", local) if any(("x",) in line for line in shape) else ""

        # the numbers that differ between occurrences: a parameter each (equal ones on one line share one)
        params: list[str] = []
        slot_param: dict[tuple[int, int], str] = {}
        args: list[list[str]] = [[] for _ in starts]
        if merge:
            for j in range(n):
                parts = self.part(starts[0], j, n).parts
                argnames = _argnames(parts)
                seen: dict[tuple[str, ...], str] = {}
                for idx, (kind, _) in enumerate(parts):
                    if kind != "n":
                        continue
                    values = tuple(self.part(s, j, n).parts[idx][1] for s in starts)
                    if len(set(values)) == 1:
                        continue
                    if values not in seen:
                        seen[values] = _unique(f"{inner[j]}_{argnames[idx]}", local)
                        params.append(seen[values])
                        for a, v in zip(args, values, strict=True):
                            a.append(v)
                    slot_param[(j, idx)] = seen[values]

        # the block's name: the labels' prefix less its number (inception_3a_ → inception, fire2_ → fire), else
        # the kinds of its lines (conv_x3_shortcut)
        stem = re.sub(r"_?\d+[a-z]?$", "", prefix.rstrip("_"))
        if not stem or not _NAME.fullmatch(stem):
            roles = [re.sub(r"_?\d+$", "", label) or "layer" for label in labels0]
            runs: list[list[object]] = []
            for role in roles:
                if runs and runs[-1][0] == role:
                    runs[-1][1] = int(str(runs[-1][1])) + 1
                else:
                    runs.append([role, 1])
            stem = "_".join(f"{r}_x{c}" if c != 1 else str(r) for r, c in runs)
            stem = stem if len(stem) <= 32 and _NAME.fullmatch(stem) else "unit"
        name = _unique(stem, self.taken | self.blocks)

        # the calls: named after each occurrence's prefix where every one has its own (inception_3a), else after
        # the first and last layer numbers (layers6_9), and then a run of equal calls is one `* N` line
        prefixes = [_prefix([str(line.label) for line in self.lines[s:s + n]]).rstrip("_") for s in starts]
        named = all(p and _NAME.fullmatch(p) and p not in self.taken for p in prefixes) and \
            len(set(prefixes)) == len(prefixes)
        # the ops without weights that end the last line: in the block as far as every occurrence has them, the
        # rest on the calls
        tails = [self.tail[s + n - 1] for s in starts]
        common = 0
        while all(len(t) > common and t[common] == tails[0][common] for t in tails):
            common += 1
        for a, t in zip(args, tails, strict=True):
            a.append(" ".join(t[common:]))  # compared for a `* N` run; taken off again below
        runs_: list[list[int]] = []
        for i, s in enumerate(starts):
            if (not named and runs_ and starts[runs_[-1][-1]] + n == s and args[runs_[-1][-1]] == args[i]
                    and not self.prep[s].leading):
                runs_[-1].append(i)
            else:
                runs_.append([i])
        taken = self.taken | self.blocks | {name}
        calls: list[tuple[int, int, Line]] = []
        renames: dict[str, str] = {}
        refs: dict[str, str] = {}
        for run in runs_:
            s0, s1 = starts[run[0]], starts[run[-1]]
            first, last = self.lines[s0], self.lines[s1 + n - 1]
            if named:
                label = _unique(prefixes[run[0]], taken)
            else:
                since = re.search(r"\d+$", str(first.label))
                until = re.search(r"\d+$", str(last.label))
                label = _unique(f"layers{since.group()}_{until.group()}" if since and until else
                                f"{name}_{run[0] + 1}", taken)
            for k, i in enumerate(run):
                path = f"{label}_{k + 1}" if len(run) > 1 else label
                for j in range(n):
                    renames[str(self.lines[starts[i] + j].label)] = f"{path}/{inner[j]}"
                refs[str(self.lines[starts[i] + n - 1].label)] = path
            start = f"@{self.prep[s0].parts[0][1]} " if self.prep[s0].leading else ""
            *numbers, after = args[run[0]]
            body = f"{start}{name}({', '.join(numbers)})" + (f" {after}" if after else "") + \
                (f" * {len(run)}" if len(run) > 1 else "")
            comment = (f"{len(run)} units: " if len(run) > 1 else "") + f"{first.first} … {last.last}"
            calls.append((s0, len(run), Line(label, body, comment, first.first, last.last)))

        # the block's text: the first occurrence's lines, with the parameters and the block's own references
        rows: list[tuple[str, str]] = [(f"  {x}: identity", "the block's input, read by reference below")] \
            if x else []
        notes = _strip_notes([line.note for line in lines0])
        for j in range(n):
            parts = self.part(starts[0], j, n).parts
            text = []
            for idx, (kind, v) in enumerate(parts):
                if kind == "r":
                    if j == 0 and idx == 0 and self.prep[starts[0]].leading:
                        continue
                    at = labels0.index(v) if v in labels0 else n
                    text.append(f"@{inner[at]}" if at < j else f"@{x}")
                elif kind == "n":
                    text.append(slot_param.get((j, idx), v))
                else:
                    text.append(v.lstrip() if j == 0 and idx == 1 and self.prep[starts[0]].leading else v)
            if j == n - 1 and common:
                text.append(" " + " ".join(tails[0][:common]))
            rows.append((f"  {inner[j]}: {''.join(text)}", notes[j]))
        width = min(70, max(len(r) for r, _ in rows))
        what = f"{lines0[0].first} … {lines0[-1].last}"
        block = [f"# Found {len(starts)} times; the first: {what}.",
                 f"block {name}({', '.join(params)}) {{",
                 *[(r.ljust(width) + f"  # {c}" if c else r).rstrip() for r, c in rows], "}"]
        return _Plan(name, n, starts, block, calls, renames, refs)

    def run(self) -> Folded:
        plans: list[_Plan] = []
        while (plan := self.best()) is not None:
            plans.append(plan)
            self.blocks.add(plan.name)
            for s in plan.starts:
                for k in range(plan.length):
                    self.used[s + k] = True
            for _, _, call in plan.calls:
                self.taken.add(str(call.label))
        renames = {k: v for p in plans for k, v in p.renames.items()}
        refs = {k: v for p in plans for k, v in p.refs.items()}
        calls = {s: (count * p.length, line) for p in plans for s, count, line in p.calls}

        def fix(text: str) -> str:
            return re.sub(r"@([A-Za-z_]\w*)\b(?!/)", lambda m: "@" + refs.get(m.group(1), m.group(1)), text)

        out: list[Line] = []
        i = 0
        while i < len(self.lines):
            line = self.lines[i]
            if i in calls:
                span, call = calls[i]
                out.append(Line(call.label, fix(call.body), call.comment, call.first, call.last))
                i += span
                continue
            if line.text is not None:
                text = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: refs.get(m.group(), m.group()), line.text) \
                    if refs else line.text
                out.append(Line(None, text=text))
            else:
                out.append(Line(line.label, fix(line.body), line.comment, line.first, line.last, line.note))
            i += 1
        # a block is defined before its first call
        order = sorted(plans, key=lambda p: p.starts[0])
        blocks = [text for p in order for text in [*p.block, ""]]
        return Folded(blocks, out, renames, refs, {p.name: len(p.starts) for p in order})


def fold(lines: Sequence[Line], start: str = "image", outputs: Sequence[str] = ()) -> Folded:
    """The blocks found in an importer's lines (`start`: the input the first line reads; `outputs`: the labels the
    network returns besides its last line), and the lines with a call in place of each occurrence."""
    return _Folder(lines, start, outputs).run()


def unfolded(lines: Sequence[Line]) -> Folded:
    """The lines as they are (`archc import --flat`)."""
    return Folded([], list(lines))
