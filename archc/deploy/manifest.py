"""A deploy package's `manifest.json` as typed records: what `archc.lower` writes, `archc.runtime` loads, and `archc
run`, `profile`, `bench` and `compile --explain-layout` read.

Standard library only: every package carries a copy of this file as `archc_manifest.py` beside its loader
(`archc_runtime.py`), which must run with numpy and TVM's runtime alone. `Manifest.from_json` checks every field
it reads and raises `ManifestError` (one sentence) for a manifest that is not one; the JSON is the same as the
dictionaries archc wrote before these records (the manifest's `manifest_version` is 1), so older packages load.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DTYPES = ("float32", "float16", "float64", "bfloat16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
          "uint64", "bool")  # archc.shapes names them so


class ManifestError(ValueError):
    """Why a manifest is not a valid archc manifest (its loader turns this into 'compile the package again')."""


def _get(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ManifestError(f"{where} has no '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ManifestError(f"{where}'s '{key}' is {type(value).__name__}, not {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the library: its name, full shape (batch included) and dtype name."""
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Any, where: str = "a tensor") -> TensorSpec:
        name = _get(data, "name", str, where)
        shape = _get(data, "shape", list, f"{where} '{name}'")
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ManifestError(f"{where} '{name}' has the shape {shape}, not a list of positive integers")
        dtype = _get(data, "dtype", str, f"{where} '{name}'")
        if dtype not in DTYPES:
            raise ManifestError(f"{where} '{name}' has the dtype '{dtype}', which archc does not build")
        return cls(name, tuple(shape), dtype)

    @property
    def dims(self) -> str:
        return "×".join(map(str, self.shape))


def triple(tvm: dict[str, Any]) -> str:
    """The LLVM triple of the CPU a TVM target dict's code runs on (a GPU target's host's); "" where it names none
    (the CPU of the machine that compiles it)."""
    host = tvm.get("host")
    return str(tvm.get("mtriple") or (host.get("mtriple") if isinstance(host, dict) else "") or "")


@dataclass(frozen=True)
class TargetInfo:
    """The target the library was built for: its name and description, where it runs (`runner`: local or a
    board's), its TVM target dict (with what was detected when compiling) and cross compiler."""
    name: str
    description: str
    runner: str
    tvm: dict[str, Any]
    cross_compiler: str | None = None

    @property
    def is_cuda(self) -> bool:
        return self.tvm.get("kind") == "cuda"

    @property
    def triple(self) -> str:
        return triple(self.tvm)

    @property
    def is_arm(self) -> bool:
        return "aarch64" in self.triple

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "runner": self.runner, "tvm": self.tvm,
                "cross_compiler": self.cross_compiler}

    @classmethod
    def from_json(cls, data: Any) -> TargetInfo:
        return cls(_get(data, "name", str, "the target"), str(data.get("description", "")),
                   str(data.get("runner", "local")), _get(data, "tvm", dict, "the target"),
                   data.get("cross_compiler"))


@dataclass
class BuildReport:
    """How the library was built: whose kernels, the tuning database applied and what it covered, where each
    convolution's configuration came from, the layout plan of archc's kernels. A GPU build has none of the tuning
    fields (its kernels get dlight's default schedules): `kernels_tuned` is None there."""
    compile_seconds: float = 0.0
    parallel_runtime: str = "tvm"  # archc's pool (runtime/pool.c) or TVM's
    kernels: str | None = None  # archc | tvm (CPU targets)
    database: str | None = None
    trials_now: int = 0  # tuning trials measured during this build
    kernels_tuned: int | None = None  # kernels with a record from the database
    kernels_naive: int = 0  # kernels left without a schedule
    kernels_archc: int | None = None  # archc's own kernels (kernels="archc")
    conv_configs: dict[str, int] | None = None  # source (shipped, searched, short search, predicted, rule) → count
    conv_tables: str | None = None  # the shipped tables used ("avx512/rocketlake"; the nearest ones said so)
    convolutions_searched: int | None = None  # searched in this build (whole grids, or the short pass's few)
    layout: dict[str, Any] | None = None  # the layout plan (archc.deploy.explain renders it)
    precision: str = "fp32"  # fp32, or bf16 (the convolutions AMX computes: --precision bf16)
    precision_chosen: str | None = None  # --precision auto: which it chose and why
    fp32_layers: list[str] | None = None  # --keep-fp32: layers a bf16 build computes in fp32 (ONNX node names)

    @property
    def tuned(self) -> bool:
        return bool(self.kernels_tuned)

    @property
    def cpu_schedules(self) -> bool:
        """Whether the build scheduled its kernels for a CPU (tuning fields present), not a GPU's defaults."""
        return self.kernels_tuned is not None

    _OPTIONAL = ("kernels", "database", "kernels_tuned", "kernels_archc", "conv_configs", "conv_tables",
                 "convolutions_searched", "layout", "precision_chosen", "fp32_layers")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tuned": self.tuned, "compile_seconds": round(self.compile_seconds, 3),
                               "parallel_runtime": self.parallel_runtime}
        if self.precision != "fp32":  # written where it is not the default (older manifests have none)
            out["precision"] = self.precision
        if self.cpu_schedules:
            out |= {"database": self.database, "trials_now": self.trials_now, "kernels_tuned": self.kernels_tuned,
                    "kernels_naive": self.kernels_naive}
        for key in self._OPTIONAL:
            value = getattr(self, key)
            if value is not None and key not in out:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: Any) -> BuildReport:
        if not isinstance(data, dict):
            raise ManifestError("the manifest's 'build' is not an object")
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        try:
            report = cls(**{k: v for k, v in data.items() if k in known})
            report.compile_seconds = float(report.compile_seconds)
            report.trials_now, report.kernels_naive = int(report.trials_now), int(report.kernels_naive)
        except (TypeError, ValueError) as err:
            raise ManifestError(f"the manifest's 'build' is not one archc writes ({err})") from None
        return report


@dataclass
class Verification:
    """How the library was checked against onnxruntime when it was built (`archc.lower.verify`): `status` passed,
    failed or skipped (`note`: why it could not run here). The difference is of each output's range (the largest
    magnitude onnxruntime gives), the worst output's; `divergence` names the first node whose inputs agree and
    whose output does not (a failed check)."""
    status: str  # passed | failed | skipped
    reference: str | None = None  # "onnxruntime 1.32.0"
    inputs: str | None = None  # what it ran on: "random normal, seed 0"
    tolerance: float | None = None
    max_rel_diff: float | None = None
    worst_output: str | None = None
    emulated: bool = False  # an aarch64 library run under qemu
    device: str | None = None  # the RPC device it ran on ("HOST:PORT (key KEY)"); None: this machine
    divergence: str | None = None
    note: str | None = None
    # a low-precision build's classifier output against onnxruntime's fp32 on more random inputs: {"output": name,
    # "inputs": N, "top1": how many agree on the best class, "top5": on the set of the best five}; None otherwise
    agreement: dict[str, Any] | None = None

    STATUSES = ("passed", "failed", "skipped")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "agreement" or self.agreement}

    @classmethod
    def from_json(cls, data: Any) -> Verification:
        if not isinstance(data, dict) or data.get("status") not in cls.STATUSES:
            raise ManifestError("the manifest's 'verification' is not one archc writes")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class CppLoader:
    """The C++ loader in the package: its source, how to build it, the program, the TVM runtime libraries it links
    (relative to the package), where they came from, and why it cannot be built from the package (None if it
    can)."""
    source: str = "cpp/main.cc"
    build: str = "make -C cpp"
    program: str = "run_model"
    runtime_libs: tuple[str, ...] = ()
    libs_from: str | None = None
    missing: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "build": self.build, "program": self.program,
                "runtime_libs": list(self.runtime_libs), "libs_from": self.libs_from, "missing": self.missing}

    @classmethod
    def from_json(cls, data: Any) -> CppLoader:
        if not isinstance(data, dict):
            return cls()
        return cls(str(data.get("source", "cpp/main.cc")), str(data.get("build", "make -C cpp")),
                   str(data.get("program", "run_model")), tuple(data.get("runtime_libs") or ()),
                   data.get("libs_from"), data.get("missing"))


@dataclass(frozen=True)
class Proposals:
    """Faster R-CNN's two stages (`--detect faster_rcnn`): the package's library is stage one (the backbone and the
    RPN), the package in the subfolder `heads` stage two (RoIAlign and the per-proposal heads). Between them the
    loaders choose the proposals: `k` = len(ratios) × len(sizes) anchors per location of stage one's `scores`
    (N×2k×H×W: k background then k object logits) and `deltas` (N×4k×H×W) outputs, every `stride` input pixels;
    boxes decoded around them, clipped to the image; the `pre_nms` best by object probability; greedy
    non-maximum suppression above IoU `iou`; the best R (stage two's proposals input, R×4) kept. Stage two takes
    stage one's outputs `passes` (its cut) and the proposals; its outputs `cls` (R×(K + 1), background first) and
    `box` (R×4K offsets, class by class) are decoded per class as the detection's `classes`, `confidence`,
    `iou` and `max_boxes` say."""
    scores: int
    deltas: int
    sizes: tuple[float, ...]  # anchor sizes: the square root of an anchor's area, in input pixels
    ratios: tuple[float, ...]  # anchor aspect ratios, height / width
    stride: int
    passes: tuple[int, ...]
    rois: tuple[int, ...]  # stage two's proposals input: R×4 or 1×R×4
    cls: int
    box: int
    pre_nms: int = 1000
    iou: float = 0.7
    heads: str = "heads"

    def to_json(self) -> dict[str, Any]:
        return {"scores": self.scores, "deltas": self.deltas, "sizes": list(self.sizes), "ratios": list(self.ratios),
                "stride": self.stride, "passes": list(self.passes), "rois": list(self.rois), "cls": self.cls,
                "box": self.box,
                "pre_nms": self.pre_nms, "iou": self.iou, "heads": self.heads}

    @classmethod
    def from_json(cls, data: Any) -> Proposals:
        where = "the manifest's proposals"
        numbers = {}
        for key in ("sizes", "ratios"):
            values = _get(data, key, list, where)
            if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                     for v in values):
                raise ManifestError(f"{where}' {key} are not positive numbers")
            numbers[key] = tuple(float(v) for v in values)
        passes = _get(data, "passes", list, where)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in passes):
            raise ManifestError(f"{where}' passes are not output indices")
        rois = _get(data, "rois", list, where)
        if len(rois) not in (2, 3) or rois[-1] != 4 or not all(isinstance(v, int) and v > 0 for v in rois):
            raise ManifestError(f"{where}' rois is not a shape of R×4 boxes")
        heads = _get(data, "heads", str, where)
        if not heads or "/" in heads or heads.startswith("."):
            raise ManifestError(f"{where}' heads is not a subfolder's name")
        return cls(_get(data, "scores", int, where), _get(data, "deltas", int, where), numbers["sizes"],
                   numbers["ratios"], _get(data, "stride", int, where), tuple(passes), tuple(rois),
                   _get(data, "cls", int, where),
                   _get(data, "box", int, where), _get(data, "pre_nms", int, where),
                   float(_get(data, "iou", (int, float), where)), heads)

    def to_text(self) -> str:
        return (f"scores {self.scores}\ndeltas {self.deltas}\nsizes {' '.join(map(repr, self.sizes))}\n"
                f"ratios {' '.join(map(repr, self.ratios))}\nstride {self.stride}\n"
                f"passes {' '.join(map(str, self.passes))}\nrois {' '.join(map(str, self.rois))}\n"
                f"cls {self.cls}\nbox {self.box}\npre_nms {self.pre_nms}\n"
                f"rpn_iou {self.iou!r}\nheads {self.heads}/{self.heads}.so\n")


@dataclass(frozen=True)
class Detection:
    """A detector's post-processing, which both loaders run after the library (archc_detect.py; main.cc).
    YOLO's decoding of its head outputs (`heads`: each the output's index and its anchors' w, h pairs, in grid
    cells for YOLOv2's softmax classes, in input pixels for YOLOv3's sigmoid ones), boxes kept above `confidence`
    (objectness × the best class's probability); Faster R-CNN's (`proposals`): its two stages, each box of each
    class scored by its probability and kept above `confidence`. Then greedy non-maximum suppression per class
    above IoU `iou`, the `max_boxes` best."""
    kind: str  # "yolov2", "yolov3" or "faster_rcnn"
    heads: tuple[tuple[int, tuple[float, ...]], ...]  # YOLO's; empty for Faster R-CNN
    classes: int
    confidence: float = 0.25
    iou: float = 0.45
    max_boxes: int = 100
    proposals: Proposals | None = None  # Faster R-CNN's

    KINDS = ("yolov2", "yolov3", "faster_rcnn")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "heads": [{"output": o, "anchors": list(a)} for o, a in self.heads],
                "classes": self.classes, "confidence": self.confidence, "iou": self.iou, "max_boxes": self.max_boxes,
                **({"proposals": self.proposals.to_json()} if self.proposals else {})}

    @classmethod
    def from_json(cls, data: Any) -> Detection:
        where = "the manifest's detection"
        kind = _get(data, "kind", str, where)
        if kind not in cls.KINDS:
            raise ManifestError(f"{where} is of kind '{kind}', which this archc does not decode")
        heads = []
        for head in _get(data, "heads", list, where):
            anchors = _get(head, "anchors", list, f"{where}'s head")
            if len(anchors) < 2 or len(anchors) % 2 or not all(isinstance(a, (int, float)) for a in anchors):
                raise ManifestError(f"{where}'s anchors are not pairs of numbers")
            heads.append((_get(head, "output", int, f"{where}'s head"), tuple(float(a) for a in anchors)))
        if kind == "faster_rcnn" and "proposals" not in data:
            raise ManifestError(f"{where} of kind faster_rcnn has no 'proposals'")
        proposals = Proposals.from_json(data["proposals"]) if kind == "faster_rcnn" else None
        return cls(kind, tuple(heads), _get(data, "classes", int, where),
                   float(_get(data, "confidence", (int, float), where)), float(_get(data, "iou", (int, float), where)),
                   _get(data, "max_boxes", int, where), proposals)

    def to_text(self) -> str:
        """As the C++ loader reads it (detection.txt): one `key value…` line each, a `head OUTPUT w h w h …` line
        per YOLO head, Faster R-CNN's proposal settings (`Proposals.to_text`)."""
        heads = "".join(f"head {o} {' '.join(repr(a) for a in anchors)}\n" for o, anchors in self.heads)
        return (f"kind {self.kind}\n{heads}classes {self.classes}\nconfidence {self.confidence!r}\n"
                f"iou {self.iou!r}\nmax_boxes {self.max_boxes}\n"
                + (self.proposals.to_text() if self.proposals else ""))


@dataclass
class Manifest:
    """A package's manifest.json."""
    model: str
    library: str  # the library's file name, in the package folder itself
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    target: TargetInfo
    tvm_version: str
    archc_version: str
    onnx_sha256: str = ""
    source: str = ""  # the spec or ONNX file it was compiled from
    build: BuildReport = field(default_factory=BuildReport)
    cpp_loader: CppLoader = field(default_factory=CppLoader)
    verification: Verification | None = None  # None: built before archc verified builds, or with --no-verify
    detection: Detection | None = None  # a detector's post-processing in the loaders (compile --detect)
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"manifest_version": self.manifest_version, "model": self.model, "library": self.library,
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs],
                "target": self.target.to_json(), "tvm_version": self.tvm_version,
                "archc_version": self.archc_version, "onnx_sha256": self.onnx_sha256, "source": self.source,
                "build": self.build.to_json(), "cpp_loader": self.cpp_loader.to_json()} | (
                    {"verification": self.verification.to_json()} if self.verification else {}) | (
                    {"detection": self.detection.to_json()} if self.detection else {})

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError("the manifest is not a JSON object")
        version = data.get("manifest_version", MANIFEST_VERSION)
        if not isinstance(version, int) or version > MANIFEST_VERSION:
            raise ManifestError(f"the manifest has version {version}; this archc reads version {MANIFEST_VERSION} "
                                "and older")
        library = _get(data, "library", str, "the manifest")
        if not library or Path(library).name != library or library in (".", ".."):
            raise ManifestError(f"the manifest's library '{library}' is not a file name in the package folder")
        inputs = [TensorSpec.from_json(t, "an input") for t in _get(data, "inputs", list, "the manifest")]
        outputs = [TensorSpec.from_json(t, "an output") for t in _get(data, "outputs", list, "the manifest")]
        if not inputs or not outputs:
            raise ManifestError("the manifest lists no inputs or no outputs")
        return cls(model=str(data.get("model", Path(library).stem)), library=library, inputs=inputs,
                   outputs=outputs, target=TargetInfo.from_json(_get(data, "target", dict, "the manifest")),
                   tvm_version=str(data.get("tvm_version", "")), archc_version=str(data.get("archc_version", "")),
                   onnx_sha256=str(data.get("onnx_sha256", "")), source=str(data.get("source", "")),
                   build=BuildReport.from_json(data.get("build", {})),
                   cpp_loader=CppLoader.from_json(data.get("cpp_loader")),
                   verification=Verification.from_json(data["verification"]) if data.get("verification") else None,
                   detection=Detection.from_json(data["detection"]) if data.get("detection") else None,
                   manifest_version=version)

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        """The manifest of a package folder; ManifestError if it is not valid (OSError if it cannot be read)."""
        try:
            data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ManifestError(f"{MANIFEST} is not JSON ({err})") from None
        return cls.from_json(data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"
