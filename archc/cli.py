"""The `archc` command: one short function per verb over the library. The only place that prints errors and
picks exit codes: 0 success, 1 a user error without a source location, 2 a bad spec or bad usage, 70 an internal
error (a bug in archc: set ARCHC_DEBUG=1 for the traceback)."""
from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from archc.version import __version__

if TYPE_CHECKING:
    from archc.diagnostics import SpecError
    from archc.frontends import Model
    from archc.options import ModelOptions


def _fail(message: str, code: str, status: int) -> None:
    """`archc: error: <sentence>  [<code>]` on stderr (the code as the spec language's diagnostics end in theirs:
    archc/errors.py and archc/runtime/__init__.py list them), then exit with `status`."""
    click.echo(f"archc: error: {message}  [{code}]", err=True)
    sys.exit(status)


def _parse_set(values: tuple[str, ...]) -> dict:
    if not values:  # the spec parser (lark) is imported only when needed: `analyze model.onnx` starts faster
        return {}
    from archc.errors import UsageError
    from archc.spec.parser import parse_value
    out = {}
    for item in values:
        if "=" not in item:
            raise UsageError(f"--set expects name=value, got '{item}'", code="bad-option")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def _parse_inputs(values: tuple[str, ...]) -> dict:
    from archc.shapes import parse_shape
    out: dict[str | None, tuple[int, ...]] = {}
    for item in values:
        name, _, shape = item.rpartition("=")
        out[name or None] = parse_shape(shape)
    return out


def rpc_options(f: Callable[..., None]) -> Callable[..., None]:
    """--rpc HOST:PORT --rpc-key KEY → `remote` (an archc.runtime.rpc.Remote, or None: this machine)."""
    @click.option("--rpc", "rpc_address", metavar="HOST:PORT",
                  help="Run on a device of a TVM RPC tracker (python -m tvm.exec.rpc_tracker) instead of here.")
    @click.option("--rpc-key", metavar="KEY", help="With --rpc: the key the device registered with.")
    @functools.wraps(f)
    def wrapper(*args: Any, rpc_address: str | None, rpc_key: str | None, **kw: Any) -> None:
        remote = None
        if rpc_address or rpc_key:
            from archc.runtime.rpc import Remote
            remote = Remote.parse(rpc_address or "", rpc_key)
        f(*args, remote=remote, **kw)
    return wrapper


MAX_THREADS = 1024  # archc.runtime.MAX_THREADS (pool.c's), without importing the runtime (numpy) to build options
LOOPBACK = "127.0.0.1"  # archc.runtime.rpc.LOOPBACK, `archc rpc-server`'s default address, likewise

threads_option = click.option(
    "--threads", type=click.IntRange(1, MAX_THREADS),
    help="Threads of the library's parallel loops, this one included. [default: TVM_NUM_THREADS, else every CPU]")


def _names(given: tuple[str, ...]) -> list[str]:
    """A repeatable option's names, each given alone or as NAME,NAME."""
    return [name for names in given for name in names.split(",") if name]


def precision_option(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--precision of compile, tune and bench: `what` it does there; the default is the target file's."""
    from archc.targets import PRECISIONS
    return click.option("--precision", type=click.Choice(PRECISIONS),
                        help=f"{what} [default: the target file's `precision`, else fp32]")


def keep_fp32_option(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--keep-fp32 of compile, tune and bench (a bf16 build's layers computed in fp32): `what` it does there."""
    return click.option("--keep-fp32", "keep", multiple=True, metavar="NODE",
                        help=f"{what} (its ONNX node's name, e.g. a spec's `stem/conv1`; `archc analyze MODEL --by "
                             "layer` lists them) in fp32, the rest in bf16 as usual: for the layers bf16 hurts most "
                             "(benchmarks/precision_sensitivity.py finds them). Repeat for more (or give NODE,NODE).")


def model_options(f: Callable[..., None]) -> Callable[..., None]:
    """Options shared by every verb that reads a model; the verb receives them as one `ModelOptions`."""
    @functools.wraps(f)
    def wrapper(*args: Any, inputs: tuple[str, ...], batch: int | None, set_: tuple[str, ...],
                include_path: tuple[str, ...], **kwargs: Any) -> None:
        from archc.options import ModelOptions
        options = ModelOptions(inputs=_parse_inputs(inputs), batch=batch, params=_parse_set(set_),
                               include_path=tuple(include_path))
        return f(*args, options=options, **kwargs)
    wrapper = click.option("-I", "--include-path", multiple=True, type=click.Path(file_okay=False),
                           help="Extra folder to search for imported .arch files (also: ARCHC_PATH).")(wrapper)
    wrapper = click.option("--set", "set_", multiple=True, metavar="NAME=VALUE",
                           help="Set a network parameter, e.g. --set num_classes=10.")(wrapper)
    wrapper = click.option("--batch", type=click.IntRange(min=1), help="Batch size (default 1).")(wrapper)
    wrapper = click.option("--input", "inputs", multiple=True, metavar="[NAME=]SHAPE",
                           help="Full input shape with batch, e.g. --input 1x3x320x320 (first input) or "
                           "image=2x3x224x224.")(wrapper)
    return wrapper


def _load(path: str, options: ModelOptions, weights: bool = True) -> Model:
    """Load a model through the front door and show its spec warnings (with their source lines)."""
    import archc
    from archc.diagnostics import render
    model = archc.load(path, options, shapes_only=not weights)
    for w in model.warnings:
        click.echo(render(w), err=True)
    return model


def _shapes(pairs: list[tuple[str, tuple[int, ...]]]) -> str:
    from archc.shapes import fmt_dims
    return ", ".join(fmt_dims(shape) for _, shape in pairs)


def _summary(model: Model) -> str:
    """'5 layers, 20,730 parameters, input 1×3×32×32 → output 1×10' (an ONNX file: its node count; parameters need
    the analyzer). The shapes are echoed so that a misread spec shows itself (channels forgotten, a kernel where
    the channels were meant)."""
    params = f", {model.params:,} parameters" if model.params is not None else ""
    unit = "layers" if model.graph is not None else "nodes"
    return f"{model.layer_count} {unit}{params}, input {_shapes(model.inputs)} → output {_shapes(model.outputs)}"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="archc")
def main() -> None:
    """archc: compile CNN specs (.arch) and ONNX models into tuned deploy packages for CPUs and GPUs (Apache TVM),
    and analyze network architectures into paper-style tables.

    \b
    Examples:
      archc compile specs/googlenet.arch --target native    # a deploy package for this CPU: googlenet.native/
      archc run googlenet.native/                           # outputs, top-5 classes, the time of a run
      archc compile specs/googlenet.arch --target cuda      # for an NVIDIA GPU (needs nvcc)
      archc compile specs/googlenet.arch -o googlenet.onnx  # the ONNX graph alone (--target onnx)
      archc analyze specs/resnet50.arch                     # per-block table: sizes, params, MACs, memory
      archc bench specs/resnet18.arch --target native       # against onnxruntime, alternating
      archc import yolov2.cfg                               # a Darknet cfg (or Caffe prototxt) as a spec
      archc cam specs/resnet18.arch dog.jpg --weights w.pth # where the network looks for its top class
      archc targets                                         # the named targets
    """


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--target", default="onnx", show_default=True,
              help="A target name (`archc targets` lists them) or a target .toml file.")
@click.option("-o", "--output", type=click.Path(),
              help="The output: for --target onnx an .onnx file, for a TVM target a package folder; with several "
              "models a folder to put them in. Default: <model file's stem>.onnx or <stem>.<target>/ here.")
@click.option("--no-simplify", is_flag=True, help="Skip onnx-simplifier.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Bind trained weights: a PyTorch state_dict (.pt/.pth), .safetensors, .npz or .onnx; tensors "
              "are matched by name, the rest by order (shapes checked).")
@click.option("--weights-map", type=click.Path(dir_okay=False), metavar="FILE",
              help="Renames for --weights: lines `source name = archc name` (`= -` leaves a tensor out).")
@click.option("--seed", default=0, show_default=True, help="Seed of the deterministic weight initialisation.")
@click.option("--tune", "trials", type=click.IntRange(min=1), metavar="TRIALS",
              help="TVM targets: first grow the tuning database by this many MetaSchedule measurements.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), metavar="M",
              help="TVM targets: first tune for M minutes (with --tune: whichever ends first).")
@click.option("--db", type=click.Path(file_okay=False),
              help="TVM targets: the tuning database folder (default: ~/.cache/archc/tuning/<target>).")
@click.option("--no-tune", is_flag=True, help="TVM targets: leave kernels without a tuning record naive (builds in "
              "seconds, runs slowly) instead of giving each a short tuning pass.")
@click.option("--kernels", type=click.Choice(["archc", "tvm"]), default="archc", show_default=True,
              help="CPU targets: archc's own blocked-layout kernels, or TVM's (MetaSchedule-tuned only).")
@click.option("--explain-layout", is_flag=True,
              help="CPU targets: print the layout plan (each convolution's channel blocks, relayouts, folded ops).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="TVM targets: run the library beside onnxruntime on random inputs (where this machine can run "
              "or emulate it) and compare every output; a mismatch names the first diverging node, marks the "
              "package unverified and exits 4.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True),
              help="With --verify: the largest difference allowed, of each output's range (default 1e-4; "
                   "3e-2 with --precision bf16 or int8).")
@precision_option("--target native: bf16 runs the convolutions and dense layers whose channels allow it in bf16, "
                  "on the CPU's AMX tiles (Intel Xeon from Sapphire Rapids on) or with AVX512-BF16 (AMD Zen 4 on), "
                  "the rest in fp32; refused on a CPU with neither. int8: a QDQ model's convolutions and dense "
                  "layers (archc quantize makes one) in int8 with AVX512-VNNI (Intel from Cascade Lake, AMD Zen 4 "
                  "on). --target graviton3 (aarch64): bf16 with BFMMLA and BFDOT, int8 with USMMLA and USDOT; "
                  "--target rpi5: int8 with SDOT. auto: bf16 where it runs fast, else fp32.")
@click.option("--detect", type=click.Choice(["yolov2", "yolov3", "faster_rcnn"]),
              help="TVM targets: the package's loaders decode the outputs into boxes, scores and classes "
                   "(YOLOv2's region output, YOLOv3's heads; the spec's `anchors` and `num_classes`). "
                   "faster_rcnn: two stages, the second in the package's heads/ folder, the proposals chosen "
                   "between them.")
@keep_fp32_option("--precision bf16: compute this layer")
@rpc_options
@model_options
def compile(models: tuple[str, ...], target: str, output: str | None, no_simplify: bool, weights: str | None,
            weights_map: str | None, seed: int, trials: int | None, minutes: float | None, db: str | None,
            no_tune: bool, kernels: str, explain_layout: bool, verify: bool, tolerance: float | None,
            precision: str | None, detect: str | None, keep: tuple[str, ...], options: ModelOptions,
            remote: Any) -> None:
    """Compile spec(s) (or ONNX files) for a target: every shape inferred, checked, written atomically."""
    import archc
    from archc import targets
    from archc.errors import UsageError
    from archc.util.progress import progress
    tgt = targets.get(target)
    many = len(models) > 1
    if many and output and Path(output).suffix == ".onnx":
        raise UsageError("several models need -o to name a folder, not a .onnx file", code="bad-output")
    if many and output:
        Path(output).mkdir(parents=True, exist_ok=True)
    options = options.with_(simplify=not no_simplify, weights=weights, weights_map=weights_map, seed=seed)
    with progress(len(models), "compiling", enabled=many) as advance:
        for path in models:
            model = _load(path, options)
            if model.binding is not None:
                click.echo(model.binding.line(), err=True)
            out = output
            if many and output and tgt.backend != "onnx":  # several packages: one folder each inside -o
                out = str(Path(output) / f"{Path(path).stem}.{tgt.name}")
            # one live bar at a time: with several models the zoo's bar wins
            result = archc.compile(model, tgt, out, trials=trials or 0, minutes=minutes, db=db,
                                   quick=0 if no_tune else None, show_progress=not many, kernels=kernels,
                                   verify=verify, tolerance=tolerance, rpc=remote, detect=detect,
                                   precision=precision, keep_fp32=_names(keep))
            click.echo(f"{path}: wrote {result.output} ({model.name}: {_summary(model)})")
            if tgt.backend == "tvm":
                from archc.deploy import explain
                from archc.deploy.manifest import Manifest
                manifest = Manifest.read(result.output)
                click.echo(explain.kernels_line(manifest), err=True)
                if manifest.verification is not None:
                    click.echo(explain.verification_line(manifest.verification), err=True)
                if explain_layout:
                    click.echo(explain.layout_table(manifest))
            advance()


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_options
def check(models: tuple[str, ...], options: ModelOptions) -> None:
    """Parse spec(s) (or read ONNX files), infer every shape and report errors, without writing anything."""
    from archc.diagnostics import SpecError
    failed = 0
    for path in models:
        try:
            model = _load(path, options, weights=False)
        except SpecError as err:
            _print_diagnostics(err)
            failed += 1
            continue
        click.echo(f"{path}: ok: {model.name}, {_summary(model)}")
    if failed:
        sys.exit(2)


@main.command("ops")
@click.option("--costs", is_flag=True, help="List the analyzer's cost rule for each ONNX op type instead.")
def list_ops(costs: bool) -> None:
    """List the ops of the spec language with their arguments."""
    from archc import ops
    from archc.ops.registry import onnx_rules
    from archc.spec import signature
    if costs:
        for rule in onnx_rules():
            macs = "MACs counted" if rule.counts_macs else "no MACs"
            click.echo(f"{rule.op_type:22s} {macs:13s} FLOPs: {rule.flops_doc}")
        return
    for op in ops.all_ops():
        click.echo(f"{signature(op):60s} {op.doc}")
        if op.aliases:
            click.echo(f"{'':4s}aliases: {', '.join(op.aliases)}")


@main.command("tune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="A CPU TVM target (`archc targets`), e.g. native or x86.")
@click.option("--trials", type=click.IntRange(min=1),
              help="Measurements to add, spread over every kernel of the model. [default: 64 without --minutes]")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), metavar="M",
              help="Tune for M minutes (with --trials: whichever ends first); the batch in flight finishes.")
@click.option("--db", type=click.Path(file_okay=False),
              help="The tuning database folder (default: ~/.cache/archc/tuning/<target>).")
@click.option("--kernels", type=click.Choice(["archc", "tvm"]), default="archc", show_default=True,
              help="Whose kernels to tune: archc's (its convolutions' configurations searched first) or TVM's.")
@precision_option("The kernels of a build at this precision are tuned (a bf16 build's fp32 kernels differ "
                  "from an fp32 build's).")
@keep_fp32_option("--precision bf16: tune the kernels of a build that computes this layer")
@rpc_options
@model_options
def tune_cmd(model: str, target: str, trials: int | None, minutes: float | None, db: str | None, kernels: str,
             precision: str | None, keep: tuple[str, ...], options: ModelOptions, remote: Any) -> None:
    """Tune MODEL's kernels for TARGET: a search of each convolution's configuration for archc's kernels (seconds
    per layer), then MetaSchedule on the other kernels; every later `archc compile --target` applies the results.
    Interrupted, it keeps every finished measurement, and the next run goes on from them."""
    import archc
    trials = 64 if trials is None and minutes is None else trials or 0
    summary = archc.tune(_load(model, options), target, trials, db, minutes=minutes, rpc=remote,
                         show_progress=True, kernels=kernels, precision=precision, keep_fp32=_names(keep))
    failed = f" ({summary.failed} failed to build or run)" if summary.failed else ""
    searched = f"{summary.searched} convolutions searched; " if summary.searched else ""
    click.echo(f"{model}: {searched}{summary.trials} trials over {summary.tasks} kernels{failed}"
               + (f" on {remote}" if remote else "") + f"; the database holds {summary.conv_records} convolution "
               f"configurations and {summary.records} MetaSchedule records")


@main.command("run")
@click.argument("package", type=click.Path(file_okay=False))
@click.option("--input", "input_file", default="random", show_default=True, metavar="FILE.npy|random",
              help="The input: a .npy array (or .npz with one array per input name), or random numbers.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save the outputs (.npy for one, else .npz).")
@click.option("--repeat", default=10, show_default=True, type=click.IntRange(min=1), help="Timed runs.")
@threads_option
@rpc_options
def run_package(package: str, input_file: str, output: str | None, repeat: int, threads: int | None,
                remote: Any) -> None:
    """Run a compiled package on an input: output shapes, the top-5 classes of a classifier, and the time."""
    import statistics

    import numpy as np

    from archc.runtime import load_package
    from archc.runtime.rpc import no_local_threads
    from archc.util.atomic import write_bytes
    no_local_threads(threads, remote)
    pkg = load_package(package, threads)
    inputs = pkg.read_inputs(input_file)
    if remote is not None:
        from archc.runtime import rpc
        outputs, times = rpc.run(pkg, inputs, remote, repeat)
    else:
        outputs, times = pkg.run(inputs), pkg.time(inputs, repeat)
    for spec, y in zip(pkg.outputs, outputs, strict=True):
        line = f"{spec.name}: {'×'.join(map(str, y.shape))} {y.dtype}"
        if y.ndim == 2 and y.shape[0] == 1 and y.shape[1] >= 5:  # a classifier's scores: its top five
            top = np.argsort(y[0])[::-1][:5]
            line += ", top-5 " + ", ".join(f"{i} ({y[0, i]:.4g})" for i in top)
        click.echo(line)
    if pkg.manifest.detection is not None:  # a detector: its boxes, as the loaders decode them
        found = pkg.decode(outputs)
        click.echo(f"detections: {len(found.scores)} above {pkg.manifest.detection.confidence:g}" + "".join(
            f"\n  class {c} {s:.3f} at ({', '.join(f'{v:.1f}' for v in b)})"
            for b, s, c in list(zip(found.boxes, found.scores, found.classes, strict=True))[:10]))
    click.echo(f"time: median {statistics.median(times) * 1e3:.3f} ms, min {min(times) * 1e3:.3f} ms over "
               f"{repeat} runs ({pkg.manifest.target.name}" + (f", on {remote})" if remote else ")"))
    if output:
        import io
        buf = io.BytesIO()
        if len(outputs) == 1:
            np.save(buf, outputs[0])
        else:
            arrays: dict[str, Any] = {s.name: y for s, y in zip(pkg.outputs, outputs, strict=True)}
            np.savez(buf, **arrays)
        write_bytes(output, buf.getvalue())
        click.echo(f"wrote {output}", err=True)


@main.command("profile")
@click.argument("package", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "latex", "html"]), default="table",
              show_default=True, help="Output format.")
@click.option("--repeat", default=20, show_default=True, type=click.IntRange(min=4), help="Timed runs per kernel.")
@threads_option
@rpc_options
def profile_cmd(package: str, fmt: str, repeat: int, threads: int | None, remote: Any) -> None:
    """Time each compiled kernel of a package (slowest first) beside the whole model's time."""
    from archc import api
    from archc.render import render_result
    click.echo(render_result(api.profile(package, repeat, threads=threads, rpc=remote), fmt, width="terminal"),
               nl=False)


def _int_list(text: str | None, option: str) -> list[int] | None:
    from archc.errors import UsageError
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"{option} takes positive integers separated by commas (e.g. 1,8,32), not '{text}'",
                         code="bad-option")
    return values


@main.command("bench")
@click.argument("source", metavar="SPEC|MODEL.onnx|PACKAGE", type=click.Path(exists=True))
@click.option("--target", help="The TVM target to compile for (`archc targets`), e.g. native; a package has its own.")
@click.option("--batch", "batch_sizes", metavar="B[,B…]", help="Batch sizes, each compiled and measured. [default: 1]")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS),
              help="Threads of every engine. [default: TVM_NUM_THREADS, else every CPU]")
@click.option("--repeat", type=click.IntRange(min=1), help="Rounds per batch size (each engine runs once a round).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True),
              help="Rounds until S seconds have passed, per batch size. [default: 10, at least 5 rounds]")
@click.option("--engines", default="onnxruntime,archc,openvino,iree,torch", show_default=True,
              help="Engines to compare (also: openvino-bf16, onnxruntime-int8); onnxruntime is always measured, the "
                   "ones not installed are reported absent.")
@click.option("--variants", default="default", show_default=True,
              help="archc's builds: untuned (no tuning at all), default (archc compile), tuned (archc tune first: "
              "each convolution's configuration searched, --trials MetaSchedule trials for any other kernel).")
@click.option("--trials", type=click.IntRange(min=1), help="The tuned variant's MetaSchedule trials. [default: 64]")
@click.option("--kernels", type=click.Choice(["archc", "tvm"]), default="archc", show_default=True,
              help="archc's builds with its own CPU kernels or TVM's (as archc compile --kernels).")
@click.option("--precision", "precisions", metavar="P[,P…]",
              help="archc's builds at each precision: fp32, bf16, auto (as archc compile --precision); with "
                   "any but fp32, OpenVINO's bf16 run (openvino-bf16) is measured beside its f32 one. [default: the "
                   "target file's `precision`, else fp32]")
@keep_fp32_option("The bf16 builds (--precision bf16 or auto) compute this layer")
@click.option("--db", type=click.Path(file_okay=False),
              help="The tuning database (default: ~/.cache/archc/tuning/<target>, as archc compile).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The results JSON. [default: <model>.<target>.bench.json]")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Also render the results as an HTML report (archc report).")
@click.option("--input", "inputs", multiple=True, metavar="[NAME=]SHAPE",
              help="An input's shape at batch 1, e.g. --input 1x3x320x320 (the batch comes from --batch).")
@click.option("--set", "set_", multiple=True, metavar="NAME=VALUE", help="Set a network parameter.")
@click.option("-I", "--include-path", multiple=True, type=click.Path(file_okay=False),
              help="Extra folder to search for imported .arch files (also: ARCHC_PATH).")
@rpc_options
def bench_cmd(source: str, target: str | None, batch_sizes: str | None, threads: int | None, repeat: int | None,
              seconds: float | None, engines: str, variants: str, trials: int | None, db: str | None,
              kernels: str, precisions: str | None, keep: tuple[str, ...], output: str | None,
              report_file: str | None,
              inputs: tuple[str, ...], set_: tuple[str, ...], include_path: tuple[str, ...], remote: Any) -> None:
    """Measure a model's archc packages against onnxruntime (and OpenVINO, IREE, PyTorch where installed) on the
    same inputs, alternating in rounds: latency, throughput, GFLOP/s against the measured peak, peak memory and
    agreement with onnxruntime; the results as JSON (with the machine's description), a table here."""
    import shlex

    import archc
    from archc.measurement import write
    from archc.measurement.table import table
    from archc.options import ModelOptions
    options = ModelOptions(inputs=_parse_inputs(inputs), params=_parse_set(set_), include_path=tuple(include_path))
    results = archc.bench(source, target, options, batches=_int_list(batch_sizes, "--batch"), threads=threads,
                          repeat=repeat, seconds=seconds, engines=[e for e in engines.split(",") if e],
                          variants=[v for v in variants.split(",") if v], trials=trials, db=db, rpc=remote,
                          show_progress=True, command=shlex.join(["archc", *sys.argv[1:]]), kernels=kernels,
                          precisions=[p for p in precisions.split(",") if p] if precisions else None,
                          keep_fp32=_names(keep))
    out = Path(output or f"{results.model.name}.{results.target.name}.bench.json")
    write(results, out)
    click.echo(table(results), nl=False)
    click.echo(f"wrote {out}", err=True)
    if report_file:
        archc.report([results], report_file)
        click.echo(f"wrote {report_file}", err=True)


@main.command("rpc-server")
@click.option("--tracker", required=True, metavar="HOST:PORT", help="The tracker to register with.")
@click.option("--key", required=True, help="The key clients ask for (e.g. rpi4); devices alike share one.")
@click.option("--port", default=9090, show_default=True, help="The first port to listen on (the next free one "
              "up to +100 is taken).")
@click.option("--host", default=LOOPBACK, show_default=True, help="The address to listen on: loopback serves this "
              "machine only (reach it through an SSH tunnel); any other address lets whoever reaches the port run "
              "code here, and is warned of.")
@click.option("--emulate", is_flag=True, help="Serve an emulated aarch64 board here, under qemu (after "
              "scripts/install-test-deps.sh): a stand-in for a real one.")
def rpc_server(tracker: str, key: str, port: int, host: str, emulate: bool) -> None:
    """Serve this machine (or an emulated aarch64 board) to an RPC tracker: TVM's rpc_server, which a board runs
    with only TVM's Python package installed. Ctrl-C stops it."""
    from archc.runtime.rpc import Remote, exposure_warning, server_command
    command, env = server_command(Remote.parse(tracker, key), port, host, emulate)  # a bad address: one sentence
    exposed = exposure_warning(host)
    if exposed:
        click.echo(f"archc: warning: {exposed}", err=True)
    click.echo(f"archc: serving {'an emulated aarch64 board' if emulate else 'this machine'} as '{key}' to the "
               f"tracker at {tracker} (Ctrl-C stops)", err=True)
    sys.stdout.flush()
    os.execvpe(command[0], command, env if env is not None else dict(os.environ))


@main.command("targets")
def list_targets() -> None:
    """List the named compile targets (targets/*.toml, and folders on ARCHC_TARGETS)."""
    import importlib.util

    from archc import targets
    from archc.errors import INSTALL_TVM
    have_tvm = importlib.util.find_spec("tvm") is not None
    for t in targets.all_targets():
        missing = "" if t.backend != "tvm" or have_tvm else f"  [needs Apache TVM: {INSTALL_TVM}]"
        click.echo(f"{t.name:12s} {t.description}{missing}")


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--by", type=click.Choice(["block", "layer"]), default="block", show_default=True,
              help="One row per block instance (the papers' tables) or per layer.")
@click.option("--stages", is_flag=True, help="Fold repeated blocks (layer1_1, layer1_2, …) into one ×N row.")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "latex", "html"]), default="table",
              show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file instead of the terminal.")
@click.option("--sort", type=click.Choice(["model", "input", "params", "macs", "flops", "activations", "peak",
                                           "depth", "rf", "weights"]), help="Sort a comparison by this column.")
@click.option("--diff", is_flag=True, help="Show per-layer differences between two models.")
@click.option("--explain", "explain_layer", metavar="LAYER", help="Show the arithmetic behind one layer's figures.")
@click.option("--fold-bn", is_flag=True, help="Fold each batch norm into the convolution before it, as inference "
              "engines and PyTorch's export do (compare a spec with its export like for like).")
@click.option("--units", type=click.Choice(["exact", "si"]),
              help="Params, MACs and FLOPs as exact integers (25,557,032: the layer, block and diff tables' default) "
                   "or as papers print them (25.56M: a comparison's default).")
@click.option("--wide", is_flag=True, help="Print every column even when the table is wider than the terminal.")
@click.option("--totals", is_flag=True,
              help="Only the totals (with --format csv: one row per quantity, raw numbers, JSON's names).")
@click.option("--cam", "cam_image", type=click.Path(dir_okay=False), metavar="IMAGE",
              help="With --format html: the class activation map of the network's top class on IMAGE after the "
                   "tables (a GAP + FC network; --weights for trained ones).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Trained weights for a spec (for --cam).")
@model_options
def analyze(models: tuple[str, ...], by: str, stages: bool, fmt: str, output: str | None, sort: str | None,
            diff: bool, explain_layer: str | None, fold_bn: bool, units: str | None, wide: bool, totals: bool,
            cam_image: str | None, weights: str | None, options: ModelOptions) -> None:
    """Analyze specs or ONNX files: paper-style tables of sizes, parameters, MACs, memory and receptive fields.

    \b
    One model: a per-block (or per-layer) table and totals.
    Several models: a side-by-side comparison (--sort COLUMN).
    --diff A B: what changing A into B costs, layer by layer.
    A saved result (--format json) can be given instead of a model, and is rendered again.
    """
    import archc
    from archc.analysis import Analysis
    from archc.analysis.compare import compare
    from archc.analysis.compare import diff as diff_of
    from archc.errors import UsageError
    from archc.render import render_result
    if diff and len(models) != 2:
        raise UsageError("--diff compares exactly two models", code="bad-usage")
    if explain_layer and len(models) != 1:
        raise UsageError("--explain takes one model", code="bad-usage")
    if sort and (len(models) < 2 or diff):
        raise UsageError("--sort orders a comparison of several models; give two or more (without --diff)",
                         code="bad-usage")
    given = click.get_current_context().get_parameter_source
    if diff and (stages or given("by") is click.core.ParameterSource.COMMANDLINE):
        raise UsageError("--diff compares two models layer by layer; --by and --stages do not apply to it",
                         code="bad-usage")
    if cam_image and (fmt != "html" or len(models) != 1 or diff or explain_layer):
        raise UsageError("--cam draws one model's class activation map in its HTML page: give one model and "
                         "--format html", code="bad-usage")
    figures = []
    if cam_image:  # first: a network without GAP + FC is said before anything is rendered
        from archc.render import Figure
        from archc.render.cam import png
        found = archc.cam(models[0], cam_image, options=options.with_(weights=weights))
        assert found.picture is not None
        figures.append(Figure(f"Class activation map: class {found.class_index}", png(found.picture, found.upsampled),
                              f"{Path(cam_image).name}: {found.summary}", max(256, found.upsampled.shape[1])))
    results = [archc.read_result(m) if m.endswith(".json") else archc.analyze(m, options, fold_bn=fold_bn)
               for m in models]
    for a in results:
        for w in getattr(a, "warnings", []):
            click.echo(f"archc: warning: {a.model}: {w}", err=True)
    if len(results) > 1 and not all(isinstance(a, Analysis) for a in results):
        raise UsageError("a saved comparison or diff is rendered alone; compare models or saved analyses",
                         code="bad-usage")
    if explain_layer:
        from archc.render.explain import explain
        if not isinstance(results[0], Analysis):
            raise UsageError("--explain needs a model or a saved analysis", code="bad-usage")
        text = explain(results[0], explain_layer) + "\n"
    else:
        result = diff_of(*results) if diff else compare(results, sort) if len(results) > 1 else results[0]
        text = render_result(result, fmt, by=by, stages=stages, units=units, totals=totals,
                             width=None if wide or output else "terminal", figures=figures)
    if output:
        from archc.util.atomic import write_text
        write_text(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not numbers separated by commas", param_hint=option) from None


@main.command("cam")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--class", "class_index", type=click.IntRange(min=0), help="The class to map (default: the top one).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="The overlay to write (default: IMAGE's name with .cam.png, in the current folder).")
@click.option("--mean", help="Per-channel means subtracted from the image's [0, 1] pixels, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Per-channel deviations the pixels are divided by, e.g. 0.229,0.224,0.225.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Trained weights for a spec (as for compile).")
def cam_cmd(model: str, image: str, class_index: int | None, output: str | None, mean: str | None, std: str | None,
            weights: str | None) -> None:
    """The class activation map (Zhou et al. 2016) of a network ending in global average pooling and a fully
    connected layer: the last feature maps weighted by the class's FC weights, normalised, upsampled to the image
    and drawn over it as a PNG. IMAGE is a picture (resized to the input) or an .npy input tensor."""
    import archc
    out = Path(output) if output else Path(Path(image).stem + ".cam.png")
    result = archc.cam(model, image, class_index, out, mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
                       weights=weights)
    click.echo(f"wrote {out}: {result.summary}")


@main.command("quantize")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--calibrate", "folder", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="A folder of typical inputs: images (resized to the input) or .npy tensors of its shape.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE.onnx",
              help="The QDQ model to write (default: MODEL's name with .int8.onnx, in the current folder).")
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy"]), default="percentile",
              show_default=True, help="How the activations' ranges are set from the calibration inputs.")
@click.option("--samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Calibration inputs read from DIR at most (by name).")
@click.option("--check", type=click.IntRange(min=0), default=50, show_default=True,
              help="Random inputs the int8 model is compared on, besides the calibration ones.")
@click.option("--mean", help="Per-channel means subtracted from the images' [0, 1] pixels, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Per-channel deviations the pixels are divided by, e.g. 0.229,0.224,0.225.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Trained weights for a spec (as for compile).")
@click.option("--keep-fp32", "keep", multiple=True, metavar="NODE",
              help="Leave this layer (its ONNX node's name, e.g. a spec's `stem/conv1`) in fp32: its weights stay "
                   "float32 and an int8 build computes it in fp32 (its input is still rounded to int8 where the "
                   "layer before it is quantized). Repeat for more (or give NODE,NODE).")
@model_options
def quantize_cmd(model: str, folder: str, output: str | None, method: str, samples: int, check: int,
                 mean: str | None, std: str | None, weights: str | None, keep: tuple[str, ...],
                 options: ModelOptions) -> None:
    """Post-training static quantization to int8: onnxruntime's quantizer writes MODEL (a spec or an ONNX file) in
    the QDQ format, weights per-channel symmetric int8, activations uint8 with ranges calibrated on DIR's inputs.
    Prints how far the int8 model's outputs are from the float32 model's on onnxruntime: the largest difference, of
    the output's largest magnitude, and, for a classifier, its top-1 and top-5 agreement."""
    import archc
    out = Path(output) if output else Path(Path(model).stem + ".int8.onnx")
    loaded = _load(model, options.with_(weights=weights))
    result = archc.quantize(loaded, folder, out, method=method, mean=_floats(mean, "--mean"),
                            std=_floats(std, "--std"), samples=samples, check=check,
                            keep_fp32=_names(keep))
    click.echo(f"wrote {out}: {result.summary}")


@main.command("import")
@click.argument("source", type=click.Path(dir_okay=False), metavar="FILE.cfg|FILE.prototxt")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="SPEC.arch",
              help="The spec to write (default: the file's name with .arch, in the current folder).")
@click.option("--weights", type=click.Path(dir_okay=False), metavar="FILE.weights|FILE.caffemodel",
              help="Trained weights (Darknet's .weights for a cfg, Caffe's .caffemodel for a prototxt): written "
                   "beside the spec as SPEC.npz, under archc's names, for `archc compile SPEC.arch --weights "
                   "SPEC.npz`.")
@click.option("--flat", is_flag=True, help="A line per layer even where the file repeats itself (by default a "
              "repeated unit, such as ResNet's bottleneck or GoogLeNet's inception module, is a block).")
def import_cmd(source: str, output: str | None, weights: str | None, flat: bool) -> None:
    """Write a readable archc spec for a Darknet .cfg (YOLO v1-v3, Darknet-19/53, their classifiers) or a Caffe
    .prototxt (AlexNet, GoogLeNet, SqueezeNet): one line per layer, each with a comment giving its source line,
    and a block for each unit the file repeats (a call per unit; --flat writes them out); then check it and print
    the source framework's FLOPs and parameter count beside archc's figures for the spec. Layers archc has no
    equivalent for are listed all at once, each with its line."""
    import archc
    out = Path(output) if output else Path(re.sub(r"\W", "_", Path(source).stem) + ".arch")
    imported = archc.import_spec(source, out, weights, flat=flat)
    totals = archc.analyze(out).totals
    click.echo(f"wrote {out}" + (f" and {out.with_suffix('.npz')} ({len(imported.layout)} tensors)" if weights
                                 else ""))
    source = f"{imported.framework}:".ljust(9)
    if imported.framework == "Darknet":  # as Darknet prints and stores them
        click.echo(f"  {source}{imported.bflops:.3f} BFLOPs, {imported.weights:,} floats of weights")
    else:
        click.echo(f"  {source}{imported.bflops:.3f} GFLOPs (2 × multiply-adds), {imported.weights:,} parameters")
    click.echo(f"  {'archc:'.ljust(9)}{2 * totals.macs / 1e9:.3f} (2 × MACs), {totals.params:,} parameters "
               f"({totals.nontrainable_params:,} of them batch-norm statistics)")
    click.echo(f"  outputs: {', '.join(imported.outputs)}")


@main.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="FILE.html",
              help="The HTML file to write (one self-contained file: it opens from disk, without network).")
@click.option("--title", help="The page's title (default: the model and target, or a count of them).")
def report(results: tuple[str, ...], output: str, title: str | None) -> None:
    """Render `archc bench` results (one or more JSON files) into one self-contained HTML report: per result the
    summary, latency and throughput per engine and batch, the kernels with a roofline, the tuning curve, the
    analyzer's block table, the network drawn and the environment; with several, an index comparing them."""
    import archc
    archc.report(results, output, title)
    click.echo(f"wrote {output}", err=True)


def _print_diagnostics(err: SpecError) -> None:
    from archc.diagnostics import render
    sources: dict[str, str] = {}
    for d in err.diagnostics:
        click.echo(render(d, sources), err=True)
    n = len([d for d in err.diagnostics if d.severity.value == "error"])
    click.echo(f"{n} error{'s' if n != 1 else ''}", err=True)


def run() -> None:
    """Console entry point: map every failure to one clear message and an exit code."""
    from archc.diagnostics import SpecError
    from archc.errors import ArchcError
    from archc.runtime import PackageError
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Abort:
        _fail("interrupted", "interrupted", 130)
    except SpecError as e:
        _print_diagnostics(e)
        sys.exit(2)
    except (ArchcError, PackageError) as e:
        _fail(str(e), e.code, e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", "interrupted", 130)
    except Exception as e:  # a bug: say so plainly; the traceback is for developers
        if os.environ.get("ARCHC_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {e} (set ARCHC_DEBUG=1 for the traceback and please report it)",
              "internal-error", 70)
