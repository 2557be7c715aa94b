"""The Python API: one function per CLI verb, as tvmc's was (`archc.load`, `archc.compile`, `archc.tune`,
`archc.analyze`, `archc.profile`, `archc.bench`, `archc.report`, `archc.quantize`; a package runs with
`archc.runtime.load_package`).

Each takes a path or an already loaded `Model`, plus options (a `ModelOptions`, or its fields as keywords), and
returns a plain result that can be saved as JSON and read back:

    model = archc.load("specs/resnet50.arch", input="1x3x320x320")
    result = archc.compile(model, target="onnx", output="resnet50.onnx")     # → CompileResult
    analysis = archc.analyze("resnet50.onnx", batch=8)                        # → Analysis
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.errors import ArchcError, UsageError, VerificationFailed
from archc.options import ModelOptions

if TYPE_CHECKING:
    from archc.analysis import Analysis
    from archc.analysis.cam import Cam
    from archc.deploy.manifest import Verification
    from archc.deploy.profile import Profile
    from archc.emit.quantize import Quantized
    from archc.frontends import Model
    from archc.importers import Imported
    from archc.measurement import BenchResults
    from archc.targets import Target

Source = str | Path  # or a loaded Model


def load(source: Source, options: ModelOptions | None = None, *, shapes_only: bool = False, **kw: Any) -> Model:
    """A spec or ONNX file → a `Model` (ONNX graph with static shapes). `shapes_only=True` reads or makes no weight
    data (enough for analysis). Keywords are `ModelOptions` fields (`weights="trained.pth"` binds a weights file).
    Raises `SpecError` (located diagnostics) or `ArchcError` (one sentence)."""
    from archc.frontends import load as frontend_load
    return frontend_load(source, ModelOptions.make(options, **kw), weights=not shapes_only)


@dataclass
class CompileResult:
    model: str
    source: str
    target: str
    output: str
    layers: int
    params: int | None  # trainable parameters of a spec; None for an ONNX file (see `archc analyze`)
    inputs: list[tuple[str, tuple[int, ...]]]
    outputs: list[tuple[str, tuple[int, ...]]]
    verification: Verification | None = None  # a package's check against onnxruntime (None: not asked)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompileResult:
        from archc.deploy.manifest import Verification
        io = {k: [(n, tuple(s)) for n, s in data[k]] for k in ("inputs", "outputs")}
        checked = data.get("verification")
        return cls(**{**data, **io, "verification": Verification.from_json(checked) if checked else None})


def compile(source: Source | Model, target: str | Target = "onnx", output: str | Path | None = None,
            options: ModelOptions | None = None, *, trials: int = 0, minutes: float | None = None,
            db: str | Path | None = None, quick: int | None = None, show_progress: bool = False,
            kernels: str = "archc", verify: bool = True, tolerance: float | None = None, rpc: Any = None,
            detect: str | None = None, precision: str | None = None, keep_fp32: Sequence[str] = (),
            **kw: Any) -> CompileResult:
    """Compile a spec (or ONNX file) for a target and write the result atomically. For `onnx`: without `output`,
    the file goes to `<source stem>.onnx` in the current folder (an output folder gets that name inside it). For a
    TVM target: a package folder, `<source stem>.<target>/` without `output`; the target's tuning database (`db`,
    default under the user's cache folder) is applied, after `trials` more measurements (and/or `minutes` of them)
    when asked; each kernel still without a record gets `quick` measurements of its own (default
    `lower.build.QUICK_TRIALS`; 0: none). `kernels`: on CPU targets, "archc" (its own blocked-layout kernels, the
    default) or "tvm" (TVM's legalized kernels, tuned by MetaSchedule only). `verify`: run the package's library
    beside onnxruntime on random inputs where this machine runs it natively, or with `rpc` (an
    `archc.runtime.rpc.Remote`) on that device, every output within `tolerance` of its range (default
    `lower.verify.TOLERANCE`, 1e-4); on a mismatch the first diverging node is named, the package is written marked
    unverified in its manifest, and `VerificationFailed` is raised. `detect` ("yolov2" or "yolov3"): the package's
    loaders decode the head outputs into boxes, scores and classes (`Package.detect`), with the network's `anchors`
    and `num_classes` parameters (`_detection`); "faster_rcnn": two stages, the second a package in `heads/`.
    `precision` "bf16": the convolutions AMX computes run in bf16 on its tiles (CPUs with AMX-BF16, --target
    native), verified to `lower.verify.TOLERANCES["bf16"]` unless `tolerance` says otherwise; "auto": bf16 where
    it runs fast, else fp32; default: the target file's `precision` (fp32 unless it says). `keep_fp32`: ONNX node
    names of layers a bf16 build computes in fp32 (`lower.build.kept_weights`)."""
    from archc import targets
    from archc.util.onnx_skeleton import write_model
    tgt = targets.get(target) if isinstance(target, str) else target
    precision = precision or tgt.precision
    if keep_fp32 and tgt.backend != "tvm":
        raise UsageError(f"--keep-fp32 keeps layers of a bf16 library in fp32, and '{tgt.name}' writes an ONNX file; "
                         "compile for a CPU target with --precision bf16", code="bad-option")
    model = source if not isinstance(source, (str, Path)) else load(source, options, **kw)
    if not model.has_weights:
        raise ArchcError(f"'{model.source}' was loaded without weights (for analysis); load it with weights to "
                         "compile it", code="no-weights")
    stem = Path(model.source).stem
    if tgt.backend == "tvm":
        from archc.deploy.manifest import Manifest
        from archc.lower import QUICK_TRIALS, lower, tune, write_package
        from archc.lower import verify as verification
        from archc.lower.package import Stage
        folder = Path(output) if output is not None else Path(f"{stem}.{tgt.name}")
        detection, staged = _detection(model, detect) if detect else (None, None)
        if folder.suffix == ".onnx" or folder.is_file():
            raise UsageError(f"compiling for '{tgt.name}' makes a package folder; give -o a folder name, "
                             f"not '{folder}'", code="bad-output")
        budget = tune.Budget.of(trials, minutes) if trials or minutes else None
        database = Path(db) if db else None

        def build(m: Model) -> tuple[Any, Any]:
            """The library and its checker (None without --verify): a rebuild without tuning, at the precision
            built (auto resolved), is the verifier's node-by-node run; its tolerance that precision's."""
            lowered = lower(m, tgt, database, budget, show_progress, QUICK_TRIALS if quick is None else quick,
                            kernels, precision, keep_fp32)
            built = lowered.report.precision

            def rebuild(m: Model, out: Path) -> None:
                write_package(m, lower(m, tgt, database, None, False, 0, kernels, built, keep_fp32), out)
            return lowered, verification.checker_at(m, rebuild, built, tolerance, rpc) if verify else None

        first = staged.first if staged else model  # a two-stage detector: its library is stage one
        second = None
        if staged:
            lowered, check = build(staged.second)
            second = Stage(staged.second, lowered, HEADS, check)
        lowered, check = build(first)
        manifest = write_package(first, lowered, folder, check, detection, second)
        checks = [(folder, manifest.verification)]
        if second is not None:
            checks.append((folder / second.folder, Manifest.read(folder / second.folder).verification))
        for where, checked in checks:
            if checked is not None and checked.status == "failed":
                raise VerificationFailed(where, checked)
        checked = manifest.verification
        return CompileResult(model.name, model.source, tgt.name, str(folder), model.layer_count, model.params,
                             model.inputs, model.outputs, checked)
    if detect:
        raise UsageError("--detect decodes boxes in a package's loaders: compile for a TVM target", code="bad-usage")
    if precision != "fp32":
        raise UsageError(f"--precision {precision} chooses a library's kernels: compile for a TVM target "
                         "(--target native)", code="bad-usage")
    out = Path(output) if output is not None else Path(f"{stem}.onnx")
    if out.is_dir():
        out = out / f"{stem}.onnx"
    if out.resolve() == Path(model.source).resolve():
        raise UsageError(f"writing '{out}' would overwrite the model it is compiled from; give another -o",
                         code="bad-output")
    write_model(model.proto, out)  # over 2 GiB of weights: and OUT.data beside it
    return CompileResult(model.name, model.source, tgt.name, str(out), model.layer_count, model.params,
                         model.inputs, model.outputs)


def _detection(model: Model, kind: str) -> tuple[Any, Any]:
    """The post-processing record of `--detect KIND` for this model, from its network parameters, and for a
    two-stage detector its two stages (`lower.split.Split`; else None). YOLOv2's one head takes every anchor;
    YOLOv3's heads (its outputs, coarsest first) take the anchors in reverse thirds, as yolov3.cfg's masks
    (6,7,8 / 3,4,5 / 0,1,2). Faster R-CNN: `_proposals`."""
    from archc.deploy.manifest import Detection
    if kind not in Detection.KINDS:
        raise UsageError(f"--detect {kind!r}: archc decodes {', '.join(Detection.KINDS)}", code="bad-option")
    if kind == "faster_rcnn":
        return _proposals(model)
    params = model.graph.params if model.graph is not None else {}
    anchors, classes = params.get("anchors"), params.get("num_classes")
    if not anchors or not isinstance(classes, int) or len(anchors) % 2:
        raise UsageError(f"--detect {kind} needs the network parameters 'anchors' (w, h pairs) and 'num_classes', "
                         f"as specs/{kind}.arch has them", code="bad-usage")
    pairs = [tuple(float(v) for v in anchors[i:i + 2]) for i in range(0, len(anchors), 2)]
    outputs = model.outputs if kind == "yolov3" else model.outputs[:1]
    if len(pairs) % len(outputs):
        raise UsageError(f"--detect {kind}: {len(pairs)} anchors do not share out over {len(outputs)} outputs",
                         code="bad-usage")
    per = len(pairs) // len(outputs)
    heads = []
    for i, (name, shape) in enumerate(outputs):
        mine = pairs[(len(outputs) - 1 - i) * per:(len(outputs) - i) * per]
        need = per * (5 + classes)
        if len(shape) != 4 or shape[1] != need:
            raise UsageError(f"--detect {kind}: the output '{name}' is {'×'.join(map(str, shape))}; {per} anchors × "
                             f"(5 + {classes}) classes need N×{need}×H×W", code="bad-usage")
        heads.append((i, tuple(v for pair in mine for v in pair)))
    return Detection(kind, tuple(heads), classes), None


HEADS = "heads"  # the subfolder of a two-stage detector's package that holds stage two
ANCHOR_SETS = {15: ((32, 64, 128, 256, 512), (0.5, 1, 2)),  # Mask R-CNN's C4 (the deck's k = 15): 5 sizes, 3 ratios
               9: ((128, 256, 512), (0.5, 1, 2))}  # Faster R-CNN's paper: 3 sizes, 3 ratios


def _proposals(model: Model) -> tuple[Any, Any]:
    """`--detect faster_rcnn`: the network cut at its proposals input (R×4 or 1×R×4), stage one's outputs of 2k
    and 4k channels read as the RPN's scores and offsets, stage two's of K + 1 and 4K columns as the class scores
    and box offsets; k anchors from the network's `anchors` (k) parameter, with sizes and ratios from its
    `anchor_sizes` and `anchor_ratios` parameters or, for k = 15 and 9, the papers' (ANCHOR_SETS); the stride
    from RoIAlign's spatial scale."""
    from archc.deploy.manifest import Detection, Proposals
    from archc.lower.split import split
    params = model.graph.params if model.graph is not None else {}
    k, classes = params.get("anchors"), params.get("num_classes")
    need = "the network parameters 'anchors' (k) and 'num_classes', as specs/faster_rcnn_r50_c4.arch has them"
    if not isinstance(k, int) or not isinstance(classes, int):
        raise UsageError(f"--detect faster_rcnn needs {need}", code="bad-usage")
    sizes, ratios = params.get("anchor_sizes"), params.get("anchor_ratios")
    if sizes is None and ratios is None and k in ANCHOR_SETS:
        sizes, ratios = ANCHOR_SETS[k]
    if not sizes or not ratios or len(list(sizes)) * len(list(ratios)) != k:
        raise UsageError(f"--detect faster_rcnn: {k} anchors per location need the parameters 'anchor_sizes' and "
                         "'anchor_ratios' (as many sizes × ratios as anchors); archc knows the sets of k = "
                         f"{' and '.join(map(str, ANCHOR_SETS))}", code="bad-usage")
    late = [name for name, shape in model.inputs if shape[-1:] == (4,) and len(shape) in (2, 3)]
    if len(late) != 1:
        raise UsageError("--detect faster_rcnn needs one proposals input of R×4 boxes (as `input rois: 300x4`)",
                         code="bad-usage")
    staged = split(model, late[0], HEADS)
    first, second = staged.first.outputs, staged.second.outputs

    def find(outputs: list[Any], want: Any, what: str) -> int:
        found = [i for i, (_, shape) in enumerate(outputs) if want(shape)]
        if len(found) != 1:
            raise UsageError(f"--detect faster_rcnn: {len(found) or 'no'} outputs look like {what}",
                             code="bad-usage")
        return found[0]
    scores = find(first, lambda s: len(s) == 4 and s[1] == 2 * k, f"the RPN's scores (N×{2 * k}×H×W)")
    deltas = find(first, lambda s: len(s) == 4 and s[1] == 4 * k, f"the RPN's offsets (N×{4 * k}×H×W)")
    cls = find(second, lambda s: s[-1] == classes + 1, f"the class scores (R×{classes + 1})")
    box = find(second, lambda s: s[-1] == 4 * classes, f"the box offsets (R×{4 * classes})")
    scales = [a.f for n in staged.second.proto.graph.node if n.op_type == "RoiAlign" for a in n.attribute
              if a.name == "spatial_scale"]
    if len(scales) != 1 or scales[0] <= 0:
        raise UsageError("--detect faster_rcnn needs one RoIAlign on the proposals (its spatial scale gives the "
                         "anchors' stride)", code="bad-usage")
    passes = tuple(len(first) - len(staged.cut) + i for i in range(len(staged.cut)))
    record = Proposals(scores, deltas, tuple(float(v) for v in sizes), tuple(float(v) for v in ratios),
                       round(1 / scales[0]), passes, staged.second.inputs[-1][1], cls, box, heads=HEADS)
    return Detection("faster_rcnn", (), classes, confidence=0.05, iou=0.5, proposals=record), staged


def tune(source: Source | Model, target: str | Target, trials: int = 0, db: str | Path | None = None,
         options: ModelOptions | None = None, *, minutes: float | None = None, rpc: Any = None,
         show_progress: bool = False, kernels: str = "archc", precision: str | None = None,
         keep_fp32: Sequence[str] = (), **kw: Any) -> Any:
    """Grow a CPU target's tuning database by `trials` measurements on the model's kernels (MetaSchedule), or for
    `minutes`, or whichever ends first; every later compile for that target applies it. With archc's `kernels`
    (the default), the configurations of the model's convolutions are searched first (seconds each; those the
    database has are kept). Returns the tasks, trials, records and convolutions searched (`lower.tune.TuneSummary`).
    `rpc`: an `archc.runtime.rpc.Remote`, to measure on its devices. `precision`: the kernels of a build at that
    precision are tuned (default: the target file's, as `compile`); `keep_fp32`: those of a bf16 build that keeps
    these layers in fp32 (as `compile`'s)."""
    from archc import targets
    from archc.lower import tune_model
    from archc.lower.tune import Budget
    tgt = targets.get(target) if isinstance(target, str) else target
    if tgt.backend != "tvm":
        raise UsageError(f"target '{tgt.name}' has nothing to tune; give a TVM target (archc targets)",
                         code="needs-tvm-target")
    budget = Budget.of(trials, minutes)
    model = source if not isinstance(source, (str, Path)) else load(source, options, **kw)
    return tune_model(model, tgt, Path(db) if db else None, budget, show_progress, rpc, kernels,
                      precision or tgt.precision, tuple(keep_fp32))


def profile(package: str | Path, repeat: int = 20, *, threads: int | None = None, rpc: Any = None) -> Profile:
    """Time every compiled kernel of a deploy package, slowest first, beside the whole model's time (`archc
    profile`): here on `threads` threads (default: TVM_NUM_THREADS, else every CPU), or with `rpc` (an
    `archc.runtime.rpc.Remote`) on that device. Returns an `archc.deploy.profile.Profile` (to_json / from_json)."""
    from archc.lower.profile import profile as run_profile
    return run_profile(package, repeat, rpc, threads=threads)


def analyze(source: Source | Model, options: ModelOptions | None = None, *, fold_bn: bool = False,
            **kw: Any) -> Analysis:
    """Paper-style facts of a spec or any ONNX file: per layer, per block, totals (see `archc.analysis`).
    `fold_bn`: as an inference engine runs it, each batch norm folded into the convolution before it."""
    from archc.analysis import analyze as run_analysis
    model = source if not isinstance(source, (str, Path)) else load(source, options, shapes_only=True, **kw)
    return run_analysis(model, fold_bn=fold_bn)


def bench(source: Source, target: str | Target | None = None, options: ModelOptions | None = None, *,
          output: str | Path | None = None, **kw: Any) -> BenchResults:
    """Measure a spec, ONNX file or package folder compiled for `target` against onnxruntime and every other
    engine installed (`archc bench`); returns the results (`BenchResults`, records of schema_version 1 in
    `archc.measurement.results`; `to_json()` is the file's JSON), also
    written atomically to `output` when given. Keywords: `ModelOptions` fields, and `archc.measurement.run.bench`'s
    (`batches=[1, 8]`, `threads`, `repeat`, `seconds`, `engines`, `variants`, `trials`, `db`, `rpc`, ...)."""
    from dataclasses import fields

    from archc.measurement import run, write
    model_kw = {k: kw.pop(k) for k in list(kw) if k in {f.name for f in fields(ModelOptions)} | {"input"}}
    results = run.measure(source, target, ModelOptions.make(options, **model_kw), **kw)
    if output is not None:
        write(results, output)
    return results


def report(results: Sequence[str | Path | BenchResults], output: str | Path, title: str | None = None) -> Path:
    """Render `archc bench` results (files, or results as `bench` returns them) into one self-contained HTML
    report at `output`, written atomically (`archc report`); returns its path."""
    from archc.measurement import read
    from archc.render.report import render_report
    loaded = [read(r) if isinstance(r, (str, Path)) else r for r in results]
    render_report(loaded, Path(output), title)
    return Path(output)


def cam(source: Source | Model, image: str | Path, class_index: int | None = None, output: str | Path | None = None,
        *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None, **kw: Any) -> Cam:
    """The class activation map (`archc cam`) of a network ending in global average pooling and a fully connected
    layer, for an image file or an .npy input: of `class_index`, or of the network's top class; drawn over the
    picture into the PNG `output` when given (written atomically). Keywords: `ModelOptions` fields (`weights`)."""
    from archc.analysis.cam import class_activation_map, tail
    from archc.render.cam import write_png
    from archc.util.inputs import read_input
    model = source if not isinstance(source, (str, Path)) else load(source, **kw)
    if not model.has_weights:
        raise ArchcError("a class activation map needs the network's weights; load it with them", code="no-weights")
    found = tail(model.proto)  # the network's structure first: its error says more than the input's
    x, picture = read_input(str(image), model.inputs[0][1], list(mean) if mean else None, list(std) if std else None)
    result = class_activation_map(model.proto, found, x, class_index)
    result.picture = picture
    if output is not None:
        write_png(output, picture, result.upsampled)
    return result


def quantize(source: Source | Model, calibrate: str | Path, output: str | Path | None = None, *,
             method: str = "percentile", mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             samples: int = 100, check: int = 50, keep_fp32: Sequence[str] = (), **kw: Any) -> Quantized:
    """The model's int8 QDQ form (`archc quantize`): onnxruntime's static quantization, per-channel symmetric int8
    weights and uint8 activations whose ranges `method` (minmax, percentile, entropy) sets from the images or .npy
    files in `calibrate` (at most `samples`; images normalised by `mean` and `std`), with its agreement with the
    float32 model on those inputs and on `check` random ones; written atomically to `output` when given. The nodes
    named in `keep_fp32` stay float32 (an int8 build computes them in fp32). Keywords: `ModelOptions` fields
    (`weights`)."""
    from archc.emit import quantize as q
    from archc.util.onnx_skeleton import write_model
    model = source if not isinstance(source, (str, Path)) else load(source, **kw)
    if not model.has_weights:
        raise ArchcError("quantization needs the network's weights; load it with them", code="no-weights")
    if samples < 1 or check < 0:
        raise UsageError("--samples needs at least 1 input and --check 0 or more", code="bad-option")
    shape = model.inputs[0][1]
    inputs = q.calibration_inputs(calibrate, shape, list(mean) if mean else None, list(std) if std else None,
                                  samples)
    int8 = q.quantize(model.proto, inputs, method, tuple(keep_fp32))
    on_calibration, on_random = q.agreement(model.proto, int8, inputs, q.random_inputs(shape, check))
    result = q.Quantized(int8, None, method, sum(len(x) for x in inputs), q.count_quantized(int8), on_calibration,
                         on_random, tuple(keep_fp32))
    if output is not None:
        write_model(int8, Path(output))
        result.output = Path(output)
    return result


def import_spec(source: str | Path, output: str | Path | None = None, weights: str | Path | None = None,
                flat: bool = False) -> Imported:
    """A network in another framework's file (a Darknet .cfg, a Caffe .prototxt) as an archc spec (`archc
    import`): its text and the source framework's own figures (`Imported`), the text also written atomically to
    `output` when given. With `weights` (Darknet's .weights for a cfg, Caffe's .caffemodel for a prototxt), its
    tensors under archc's names are written beside `output` as an .npz (the same name, atomically), which
    `--weights` binds by name; the file is read and checked against the network first, so a bad one leaves nothing
    written. Units the file repeats (ResNet's bottlenecks, GoogLeNet's inception modules) are written as blocks,
    a call per unit, the layers named under the call (`inception_3a/conv1x1`; `imported.renames`), unless
    `flat` (a line per layer, as the file has them)."""
    import numpy as np

    from archc.importers import import_file
    from archc.importers.caffemodel import read_caffemodel
    from archc.importers.darknet import read_weights
    from archc.util.atomic import atomic_file, write_text
    imported = import_file(source, flat)
    if weights is not None and output is None:
        raise UsageError("weights are written beside the spec: give an output for it too", code="bad-usage")
    if output is not None:
        if Path(output).resolve() == Path(source).resolve():
            raise UsageError(f"-o '{output}' is the file being imported: name another", code="bad-output")
        tensors = None
        if weights is not None:
            if not Path(weights).is_file():
                raise ArchcError(f"weights file '{weights}' does not exist", code="no-file")
            read = read_caffemodel if imported.framework == "Caffe" else read_weights
            tensors = read(Path(weights), imported)  # read first: a bad file leaves nothing written
        write_text(output, imported.text)
        if tensors is not None:
            with atomic_file(Path(output).with_suffix(".npz")) as f:
                np.savez(f, **tensors)  # type: ignore[arg-type]  # numpy's stub types the keywords as its flag
    return imported


def read_result(path: str | Path) -> Any:
    """A saved analysis, comparison or diff (the JSON `archc analyze --format json` writes), read back."""
    from archc.analysis import Analysis
    from archc.analysis.compare import Comparison, Diff
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ArchcError(f"cannot read results from '{path}': {err}", code="bad-analysis") from None
    if isinstance(data, dict) and "changes" in data:
        return Diff.from_json(data)
    if isinstance(data, dict) and "rows" in data:
        return Comparison.from_json(data)
    return Analysis.from_json(data)
