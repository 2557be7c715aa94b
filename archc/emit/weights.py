"""Weights: deterministic initialisation, or binding trained tensors from a file.

A weights file is a PyTorch state_dict (`.pt`/`.pth`, read with `torch.load(weights_only=True)`), `.safetensors`,
`.npz` or an `.onnx` file's initializers. archc names its tensors `<layer path>.<suffix>` with PyTorch's suffixes
(`stem/conv1.weight`, `stem/conv1/bn.running_var`); a file may spell the path with dots (`stem.conv1.weight`).

Binding (`bind_weights`) pairs the file's tensors with the graph's weights in three steps: the renames of a weights
map (`source name = archc name`, see `read_weights_map`), then equal names, then whatever is left on both sides in
order (the file's order against `Graph.weight_items()`), where each pair must agree in shape and in suffix
(`weight`, `bias`, `running_mean`, `running_var`). So torchvision's `resnet18` state_dict (`conv1.weight`,
`layer1.0.bn1.bias` …) binds to archc's `resnet18` (`stem/conv1.weight` …) by order. The first pair that disagrees
is an error; a `BindReport` says how many tensors were bound each way.
"""
from __future__ import annotations

import importlib
import math
import pickle
import re
import zlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archc import ops
from archc.errors import ArchcError
from archc.ir import Graph, Node
from archc.ops.registry import Init
from archc.shapes import dtype, fmt_dims


def _follows_relu(graph: Graph, node: Node, consumers: dict[int, list[Node]]) -> bool:
    """True if the kernel feeds a ReLU-family activation, looking through batch norm and dropout."""
    frontier = [node]
    for _ in range(4):
        nxt = []
        for n in frontier:
            for c in consumers.get(id(n.output), []):
                op = ops.lookup(c.op)
                assert op is not None, c.op  # the IR holds registered ops only
                if op.gain == "relu":
                    return True
                if op.transparent_for_init:
                    nxt.append(c)
        frontier = nxt
    return False


def init_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal for kernels followed by a ReLU-family activation, Xavier-uniform otherwise; biases 0; BN identity.

    Each tensor draws from its own generator seeded by (seed, crc32(name)), so a tensor's values depend only on its
    name and shape, not on what else the network contains.
    """
    consumers = graph.consumers()
    out: dict[str, np.ndarray] = {}
    for name, node, w in graph.weight_items():
        np_type = dtype(node.output.dtype).numpy
        if w.init is Init.FAN:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            # drawn in float32 where the weight is no wider (VGG-16's 138 M: 5 s in float64, then cast)
            draw = np.float32 if np.dtype(np_type).itemsize <= 4 else np.float64
            if _follows_relu(graph, node, consumers):
                arr = rng.standard_normal(w.shape, dtype=draw) * draw(math.sqrt(2.0 / w.fan_in))
            else:
                limit = math.sqrt(6.0 / (w.fan_in + w.fan_out))
                arr = (rng.random(w.shape, dtype=draw) * draw(2 * limit) - draw(limit))
        elif w.init is Init.ZEROS:
            arr = np.zeros(w.shape)
        elif w.init is Init.ONES:
            arr = np.ones(w.shape)
        else:
            arr = np.full(w.shape, w.value)
        out[name] = arr.astype(np_type, copy=False)
    return out


# ---- reading a weights file ------------------------------------------------------------------------------------

FORMATS = ".pt/.pth (a PyTorch state_dict), .safetensors, .npz or .onnx"
TORCH_SUFFIXES = (".pt", ".pth")
NESTED_KEYS = ("state_dict", "model_state_dict", "model")  # where training checkpoints keep their state_dict


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Load a weights file into name → array, in the file's order (a .safetensors file's is sorted by name). Raises
    ArchcError with one sentence on failure."""
    path = Path(path)
    if not path.is_file():
        raise ArchcError(f"weights file '{path}' does not exist", code="no-file")
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return read_state_dict(path)
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file
            return dict(load_file(str(path)))
        if suffix == ".onnx":
            import onnx
            from onnx import numpy_helper
            model = onnx.load(str(path), load_external_data=False)
            return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
                    if t.data_location != onnx.TensorProto.EXTERNAL}
    except ArchcError:
        raise
    except Exception as err:  # corrupt archives raise a zoo of exception types
        raise ArchcError(f"cannot read weights from '{path}': {err}", code="bad-weights") from None
    raise ArchcError(f"weights file '{path}' has an unknown format; use {FORMATS}", code="bad-weights")


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A `torch.save`d state_dict, or a training checkpoint holding one under a key of NESTED_KEYS, as name → array
    in order. Read with `torch.load(weights_only=True)` only: tensors and plain containers, never pickled objects."""
    try:
        # optional dependency; imported by name, so the type check neither needs torch nor reads its types
        torch: Any = importlib.import_module("torch")
    except ImportError:
        raise ArchcError(f"reading the PyTorch file '{path}' needs PyTorch, which is not installed: pip install torch "
                         "(or save the weights as .safetensors or .npz)", code="no-torch") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if refused:
            raise ArchcError(f"'{path}' holds a pickled Python object ({refused.group(1)}), such as a whole model, not "
                             "a state_dict: archc reads PyTorch files with torch.load(weights_only=True), which "
                             "refuses those, so save `model.state_dict()` with torch.save and pass that file",
                             code="bad-weights") from None
        raise ArchcError(f"cannot read weights from '{path}': torch.load failed ({_torch_reason(err)}); is it a "
                         "file torch.save wrote?", code="bad-weights") from None
    except Exception as err:  # not a zip archive, truncated, …
        raise ArchcError(f"cannot read weights from '{path}': torch.load failed ({_torch_reason(err)}); is it a "
                         "file torch.save wrote?", code="bad-weights") from None
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), Mapping)), obj)
    if not isinstance(obj, Mapping):
        raise ArchcError(f"'{path}' holds a {type(obj).__name__}, not a state_dict (a dict of tensors): save "
                         "`model.state_dict()` with torch.save", code="bad-weights")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            out[str(key)] = _to_numpy(value, torch, path, key)
        elif not str(key).endswith("_extra_state"):  # a module's extra state is not a weight
            raise ArchcError(f"'{path}' is not a state_dict: its entry '{key}' is a {type(value).__name__}, not a "
                             f"tensor (archc reads a dict of tensors, or a checkpoint's {_or(NESTED_KEYS)})",
                             code="bad-weights")
    return out


def _to_numpy(value: Any, torch: Any, path: Path, key: object) -> np.ndarray:
    t = value.detach().cpu()
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.float()  # bfloat16, float8: no numpy dtype
    try:
        return np.asarray(t.numpy())
    except Exception as err:  # sparse, quantized …
        raise ArchcError(f"cannot read tensor '{key}' of '{path}': {_torch_reason(err)}", code="bad-weights") from None


def _torch_reason(err: Exception) -> str:
    """The informative line of torch.load's many-line messages."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _or(names: tuple[str, ...]) -> str:
    quoted = [f"'{n}'" for n in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


# ---- a weights map ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightsMap:
    """Explicit renames, applied before matching names and order: (line, source name, archc name or None to leave
    that tensor of the weights file out)."""
    path: str
    entries: tuple[tuple[int, str, str | None], ...]


def read_weights_map(path: str | Path) -> WeightsMap:
    """A weights map is a text file with one `source name = archc name` a line; `source name = -` leaves that
    tensor of the weights file out; `#` starts a comment. archc names may use dots for slashes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArchcError(f"weights map '{path}' does not exist", code="no-file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ArchcError(f"cannot read weights map '{path}': {err}", code="bad-weights-map") from None
    entries: list[tuple[int, str, str | None]] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        src, eq, dst = (part.strip() for part in line.partition("="))
        if not (eq and src and dst) or "=" in dst:
            raise ArchcError(f"weights map '{path}' line {n}: expected `source name = archc name` (or `source name "
                             f"= -`), got '{raw.strip()}'", code="bad-weights-map")
        if src in seen:
            raise ArchcError(f"weights map '{path}' line {n}: '{src}' is renamed already on line {seen[src]}",
                             code="bad-weights-map")
        seen[src] = n
        entries.append((n, src, None if dst == "-" else dst))
    return WeightsMap(str(path), tuple(entries))


# ---- binding ---------------------------------------------------------------------------------------------------

STANDARD_SUFFIXES = frozenset({"weight", "bias", "running_mean", "running_var"})


@dataclass(frozen=True)
class BindReport:
    """How a weights file was bound: every pair (source name, archc name, how: "name" | "map" | "order") in graph
    order, and the source tensors the weights map left out."""
    source: str  # the weights file
    pairs: tuple[tuple[str, str, str], ...]
    left_out: tuple[str, ...] = ()
    weights_map: str | None = None

    def count(self, how: str) -> int:
        return sum(1 for _, _, h in self.pairs if h == how)

    @property
    def by_name(self) -> int:
        return self.count("name")

    @property
    def renamed(self) -> int:
        return self.count("map")

    @property
    def by_order(self) -> int:
        return self.count("order")

    def line(self) -> str:
        """'weights: 102 tensors bound (0 by name, 102 by order) from resnet18.pth'"""
        ways = [f"{self.by_name} by name"]
        if self.weights_map is not None:
            ways.append(f"{self.renamed} renamed by {self.weights_map}")
        ways.append(f"{self.by_order} by order")
        left = f"; {len(self.left_out)} left out by {self.weights_map}" if self.left_out else ""
        return f"weights: {len(self.pairs)} tensors bound ({', '.join(ways)}) from {self.source}{left}"


@dataclass(frozen=True)
class Binding:
    weights: dict[str, np.ndarray]  # archc tensor name → array in the layer's dtype, in graph order
    report: BindReport


def bind_weights(graph: Graph, source: Mapping[str, np.ndarray], ignore: AbstractSet[str] = frozenset(),
                 weights_map: WeightsMap | None = None, origin: str | None = None) -> Binding:
    """Pair every weight of the graph with a tensor of `source` (in the file's order): the map's renames first,
    then equal names (dots may stand for slashes), then the rest in order, each pair agreeing in shape and suffix.
    The first tensor that cannot be paired is an error. `ignore` names tensors of the source that are not weights
    (an ONNX file's constants); BN's `num_batches_tracked` counters are skipped too. `origin` is the file's path."""
    label = f"weights file '{origin}'" if origin else "the weights file"
    wanted = {name: (node, w) for name, node, w in graph.weight_items()}
    by_dots = {k.replace("/", "."): k for k in wanted}
    tensors = {k: v for k, v in source.items() if k not in ignore and not k.endswith("num_batches_tracked")}
    bound: dict[str, tuple[str, str]] = {}  # archc name → (source name, how)
    taken: set[str] = set()  # source names bound or left out
    left_out: list[str] = []

    def resolve(name: str) -> str | None:
        return name if name in wanted else by_dots.get(name)

    def take(key: str, name: str, how: str, where: str = "") -> None:
        node, w = wanted[name]
        arr = tensors[key]
        if name in bound:
            raise ArchcError(f"{where}tensors '{bound[name][0]}' and '{key}' of {label} both name the weight "
                             f"'{name}'; leave one out with `{key} = -` in a weights map", code="weights-mismatch")
        if tuple(arr.shape) != tuple(w.shape):
            raise ArchcError(f"{where}tensor '{key}' has shape {fmt_dims(arr.shape) or 'scalar'} but layer "
                             f"'{node.name}' ({node.op}) needs {fmt_dims(w.shape)}", code="weights-mismatch")
        bound[name] = (key, how)
        taken.add(key)

    for line, src, dst in weights_map.entries if weights_map else ():
        assert weights_map is not None
        where = f"weights map '{weights_map.path}' line {line}: "
        if src not in source:
            raise ArchcError(f"{where}{label} has no tensor '{src}'", code="weights-mismatch")
        if dst is None:
            taken.add(src)
            left_out.append(src)
            continue
        if src not in tensors:
            raise ArchcError(f"{where}'{src}' is not a weight (num_batches_tracked counters and an ONNX file's "
                             "constants are skipped); leave it out of the map", code="weights-mismatch")
        name = resolve(dst)
        if name is None:
            example = next(iter(wanted), "conv1.weight")
            raise ArchcError(f"{where}'{dst}' is not a weight of '{graph.name}' (names are <layer path>.<suffix>, "
                             f"e.g. '{example}')", code="weights-mismatch")
        take(src, name, "map", where)
    for key in tensors:
        name = None if key in taken else resolve(key)
        if name is not None:
            take(key, name, "name")

    rest = [k for k in tensors if k not in taken]
    todo = [name for name in wanted if name not in bound]
    for key, name in zip(rest, todo):
        node, w = wanted[name]
        arr = tensors[key]
        suffix = key.rsplit(".", 1)[-1]
        if tuple(arr.shape) == tuple(w.shape) and (suffix == w.suffix or not {suffix, w.suffix} <= STANDARD_SUFFIXES):
            bound[name] = (key, "order")
            continue
        differs = "shape" if tuple(arr.shape) != tuple(w.shape) else f"suffix (.{suffix}, not .{w.suffix})"
        raise ArchcError(
            f"cannot pair the weights by order: tensor '{key}' of {label} ({fmt_dims(arr.shape) or 'scalar'}) "
            f"and '{name}' of layer '{node.name}' ({node.op}, {fmt_dims(w.shape)}) differ in {differs}, after "
            f"{_so_far(bound, len(wanted))}; rename the tensors that differ in a weights map (--weights-map)"
            + _order_hint(origin), code="weights-mismatch")
    if len(rest) > len(todo):
        key = rest[len(todo)]
        raise ArchcError(f"{label} has a tensor '{key}' that matches no layer of '{graph.name}' by name (shape "
                         f"{fmt_dims(tensors[key].shape) or 'scalar'}) and no weight is left to pair it with by "
                         f"order, after {_so_far(bound, len(wanted))}; leave it out with `{key} = -` in a weights "
                         "map (--weights-map)", code="weights-mismatch")
    if len(todo) > len(rest):
        name = todo[len(rest)]
        raise ArchcError(f"{label} has no tensor '{name}' (shape {fmt_dims(wanted[name][1].shape)}), by name or "
                         f"left to pair with it by order, after {_so_far(bound, len(wanted))}", code="weights-mismatch")

    weights = {name: np.asarray(tensors[bound[name][0]]).astype(dtype(node.output.dtype).numpy)
               for name, (node, _) in wanted.items()}
    pairs = tuple((bound[name][0], name, bound[name][1]) for name in wanted)
    report = BindReport(origin or "the weights file", pairs, tuple(left_out),
                        weights_map.path if weights_map else None)
    return Binding(weights, report)


def _so_far(bound: Mapping[str, tuple[str, str]], total: int) -> str:
    ways = [h for _, h in bound.values()]
    counts = ", ".join(f"{ways.count(how)} {words}" for how, words in
                       (("name", "by name"), ("map", "renamed"), ("order", "by order")) if how != "map" or how in ways)
    return f"{len(bound)} of {total} weights matched ({counts})"


def _order_hint(origin: str | None) -> str:
    if origin and origin.lower().endswith(".safetensors"):
        return " (a .safetensors file keeps no order: its tensors come sorted by name)"
    return ""


# ---- the last binding of a graph, for the command line's report -------------------------------------------------
