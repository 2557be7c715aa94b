"""archc's compiled libraries against onnxruntime, measured alternately in one process (batch 1, fp32).

    python benchmarks/backend_speed.py [--models resnet18,mobilenet_v2] [--target native] [--trials N]
                                       [--rounds 10] [--hog] [--out FILE.md] [--db DIR] [--no-tvm] [--no-search]

For each model (default: resnet18, resnet50, mobilenet_v2, googlenet, vgg16 from specs/), these engines are built
first, then timed. A model is a spec of specs/, an ONNX file (a path ending in .onnx), or a torchvision
classification model by name (exported as benchmarks/foreign_onnx.py does: random weights, opset 17; needs torch);
`heldout` stands for the ten held-out networks of issue 22 and `all15` for those and the five.

- onnxruntime (CPUExecutionProvider, its default threads; its threads stop spin-waiting when a run returns, else
  they hold the cores while the next engine runs: `archc.measurement.engines.onnxruntime_session`);
- archc kernels (default compile): `compile(kernels="archc")` with a fresh, empty database, as a user's first
  compile: each convolution's configuration from the shipped tables, a shape they lack from the short pass (its
  four likeliest configurations timed, search.py; in the compile time);
- archc kernels + search: `compile(kernels="archc", trials=1)` on a database shared by the models: the per-layer
  search of the convolutions' configurations the database lacks runs first, and its cost is in the compile time
  (--no-search leaves this engine out);
- TVM + MetaSchedule (N trials): `compile(kernels="tvm", trials=N)` on a database of its own, with --trials N > 0;
  without, TVM kernels, short pass (`kernels="tvm"`, MetaSchedule's default short pass for each kernel; minutes
  per model). --no-tvm leaves this engine out.

The engines are timed in blocks, round after round, the order rotated each round: 2 warm-up runs and 5 timed
ones, back to back (a sleep before each block let the idle cores of this VM be taken away: archc's MobileNet v2
then ran 6% slower, onnxruntime's 1%). Printed, as markdown (also written atomically to --out): a header (date,
CPU, its FMA peak measured by `archc.util.peak`, threads, load average before and after, quiet or hog, versions),
one table (median and p90 latency, the ratio to onnxruntime, the compile time, the largest difference of the
outputs from onnxruntime's relative to their range), and, for each model's "archc kernels + search" package (the
shipped-table one with --no-search), its ten slowest kernels (`archc.lower.profile`) with their GFLOP/s against the
measured peak at the threads used.
--hog starts os.cpu_count() busy-loop processes for the timed part (the blocks and the kernel profiles), and
stops them after it.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "zoo"))  # torchvision_ref: the exports' torchvision, as the tests get it

import archc  # noqa: E402
from archc.deploy.manifest import BuildReport  # noqa: E402
from archc.measurement import environment  # noqa: E402
from archc.measurement.engines import onnxruntime_session  # noqa: E402
from archc.runtime import load_package  # noqa: E402
from archc.util.atomic import write_text  # noqa: E402
from archc.util.difference import relative_diff  # noqa: E402
from archc.util.machine import cpus  # noqa: E402
from archc.util.peak import fma_peak  # noqa: E402

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "googlenet", "vgg16")
HELDOUT = ("efficientnet_b0", "efficientnet_b1", "convnext_tiny", "inception_v3", "mobilenet_v3_large", "mnasnet1_0",
           "densenet121", "regnet_y_400mf", "resnext50_32x4d", "shufflenet_v2_x1_0")  # issue 22's, torchvision's
PRESETS = {"heldout": HELDOUT, "all15": MODELS + HELDOUT}
WARMUP, BLOCK = 2, 5  # per engine per round: warm-up runs, timed runs
TOP = 10  # slowest kernels shown per model
ORT, OWN, SEARCH = "onnxruntime", "archc kernels (default compile)", "archc kernels + search"
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


@dataclass
class Engine:
    label: str
    run: Callable[[], list[Any]]
    compile_seconds: float | None
    folder: Path | None = None
    build: BuildReport | None = None  # the package's, from its manifest
    times: list[float] = field(default_factory=list)
    diff: float | None = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated specs/ names, ONNX files, torchvision names, heldout or all15")
    ap.add_argument("--target", default="native")
    ap.add_argument("--trials", type=int, default=0,
                    help="MetaSchedule trials for the TVM-kernels engine (0: its default short pass)")
    ap.add_argument("--rounds", type=int, default=10, help=f"rounds of blocks ({BLOCK} timed runs each)")
    ap.add_argument("--hog", action="store_true", help="busy-loop processes on every CPU while timing")
    ap.add_argument("--out", type=Path, help="also write the markdown to this file (atomically)")
    ap.add_argument("--db", type=Path, help="tuning databases: DIR/archc for the search, DIR/tvm for MetaSchedule "
                                            "(default: fresh ones, so each build pays its search or tuning)")
    ap.add_argument("--no-tvm", action="store_true", help="leave out the TVM-kernels engine (minutes per model)")
    ap.add_argument("--no-search", action="store_true", help="leave out the archc-kernels-with-search engine")
    args = ap.parse_args()
    models = [m for name in args.models.split(",") if name.strip() for m in PRESETS.get(name.strip(), [name.strip()])]
    named = [m for m in models if not m.endswith(".onnx") and not (ROOT / "specs" / f"{m}.arch").is_file()]
    unknown = sorted(set(named) - _torchvision_names()) if named else []
    if unknown:
        ap.error(f"{', '.join(unknown)}: neither a spec in {ROOT / 'specs'}, an ONNX file nor a torchvision model")

    started = time.perf_counter()
    threads = int(os.environ.get("TVM_NUM_THREADS") or 0) or cpus()
    load_before = environment.loadavg()
    log(f"measuring the FMA peak (1 and {os.cpu_count()} threads)")
    peaks = {1: fma_peak(1), os.cpu_count() or 1: fma_peak(os.cpu_count() or 1)}
    if threads not in peaks:
        peaks[threads] = fma_peak(threads)
    work = Path(tempfile.mkdtemp(prefix="archc-bench-"))
    search_db = args.db / "archc" if args.db else work / "db-archc"
    tvm_db = args.db / "tvm" if args.db else work / "db-tvm"
    tvm_label = f"TVM + MetaSchedule ({args.trials} trials)" if args.trials else "TVM kernels, short pass"

    rows: list[str] = []
    sections: list[str] = []
    try:
        for name in models:
            engines = build(name, args, work, search_db, tvm_db, tvm_label)
            with hogs(args.hog):
                time_blocks(engines, args.rounds)
                kernels = kernel_table(name, engines, peaks[threads])
            rows += result_rows(name, engines)
            log(f"{name} done:\n" + "\n".join(rows[-len(engines):]))  # a later failure keeps these
            sections.append(f"### {name}: the builds\n\n{builds_list(engines)}\n{kernels}")
            del engines
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = environment.loadavg()
    text = "\n".join([header(args, threads, peaks, load_before, load_after, time.perf_counter() - started),
                      "| model | engine | compile s | median ms | p90 ms | × onnxruntime "
                      "| max rel. diff vs onnxruntime |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: |", *rows, "", *sections])
    print(text, flush=True)
    if args.out:
        write_text(args.out, text + "\n")


def source(name: str, work: Path) -> Path:
    """The spec, ONNX file or torchvision export that `name` stands for."""
    spec = ROOT / "specs" / f"{name}.arch"
    if name.endswith(".onnx"):
        return Path(name).resolve()
    if spec.is_file():
        return spec
    from foreign_onnx import export  # benchmarks/, this script's folder
    log(f"{name}: exporting from torchvision")
    return export(name, work)[0]


def _torchvision_names() -> set[str]:
    try:
        from torchvision_ref import torchvision_models
        return set(torchvision_models().list_models(module=torchvision_models()))
    except Exception:  # noqa: BLE001 - no torch here: specs and ONNX files only
        return set()


def build(name: str, args: argparse.Namespace, work: Path, search_db: Path, tvm_db: Path,
          tvm_label: str) -> list[Engine]:
    """The model's engines, each built and run once (its outputs compared with onnxruntime's)."""
    path = source(name, work)
    model = archc.load(path, batch=1)
    onnx_file = work / f"{Path(name).stem}.static.onnx"
    onnx_file.write_bytes(model.proto.SerializeToString())
    x = {i: np.random.default_rng(0).standard_normal(s).astype(np.float32) for i, s in model.inputs}
    start = time.perf_counter()
    sess = onnxruntime_session(onnx_file)  # spinning stops when a run returns: see its docstring
    engines = [Engine(ORT, lambda: sess.run(None, x), time.perf_counter() - start)]
    variants: list[tuple[str, dict[str, Any]]] = [(OWN, {"kernels": "archc", "db": work / f"db-empty-{name}"})]
    if not args.no_search:
        variants.append((SEARCH, {"kernels": "archc", "trials": 1, "db": search_db}))
    if not args.no_tvm:
        variants.append((tvm_label, {"kernels": "tvm", "trials": args.trials, "db": tvm_db}))
    for label, kw in variants:
        log(f"{name}: building {label}")
        start = time.perf_counter()
        folder = work / f"{Path(name).stem}.{len(engines)}"
        # built by `archc compile` in a child process: in a process that had just compiled and searched, archc's
        # libraries ran up to 1.4× slower (MobileNet v2: 3.2 against 2.2 ms) than built elsewhere and loaded here
        command = [sys.executable, "-m", "archc", "compile", str(path), "--target",
                   args.target, "-o", str(folder), "--db", str(kw["db"]), "--kernels", kw["kernels"]]
        if kw.get("trials"):
            command += ["--tune", str(kw["trials"])]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name}: {label} did not build: {done.stderr.strip()[-500:]}")
        seconds = time.perf_counter() - start
        pkg = load_package(folder)
        engines.append(Engine(label, _runner(pkg, x), seconds, folder, pkg.manifest.build))
        log(f"{name}: {label} built in {seconds:.1f} s")
    reference = engines[0].run()
    for e in engines[1:]:
        e.diff = _diff(e.run(), reference)
    return engines


def time_blocks(engines: list[Engine], rounds: int) -> None:
    """`rounds` rounds; in each, every engine in turn (the order rotated by the round): WARMUP runs, then BLOCK
    timed runs."""
    log(f"timing {len(engines)} engines, {rounds} rounds of {BLOCK} runs")
    for r in range(rounds):
        for i in range(len(engines)):
            e = engines[(i + r) % len(engines)]
            for _ in range(WARMUP):
                e.run()
            for _ in range(BLOCK):
                start = time.perf_counter()
                e.run()
                e.times.append(time.perf_counter() - start)


def result_rows(name: str, engines: list[Engine]) -> list[str]:
    base = statistics.median(engines[0].times)
    rows = []
    for e in engines:
        ts = sorted(e.times)
        med, p90 = statistics.median(ts), ts[int(0.9 * (len(ts) - 1))]
        built = "—" if e.compile_seconds is None else f"{e.compile_seconds:.1f}"
        diff = "—" if e.diff is None else f"{e.diff:.1e}"
        rows.append(f"| {name} | {e.label} | {built} | {_num(med * 1e3)} | {_num(p90 * 1e3)} | {med / base:.2f} | "
                    f"{diff} |")
    return rows


def builds_list(engines: list[Engine]) -> str:
    """What each package's manifest says of its build: archc's kernels and where their configurations came from,
    the convolutions searched, the MetaSchedule trials and the kernels left naive."""
    lines = []
    for e in engines:
        if e.folder is None:
            continue
        b = e.build
        if b is None:
            continue
        parts = [f"compile_seconds {round(b.compile_seconds, 3)}"]
        if b.kernels_archc is not None:
            parts.append(f"{b.kernels_archc} archc kernels")
        if b.conv_configs:
            parts.append("configurations: " + ", ".join(f"{n} {k}" for k, n in sorted(b.conv_configs.items())))
        if b.convolutions_searched is not None:
            parts.append(f"{b.convolutions_searched} convolutions searched")
        parts += [f"{b.kernels_tuned or 0} kernels from the database", f"{b.kernels_naive} naive",
                  f"{b.trials_now} MetaSchedule trials"]
        lines.append(f"- {e.label}: {'; '.join(parts)}")
    return "\n".join(lines) + "\n"


def kernel_table(name: str, engines: list[Engine], peak: dict[str, Any]) -> str:
    """The ten slowest kernels of the model's "archc kernels + search" package (else the shipped-table one), with
    GFLOP/s and % of the peak."""
    from archc.lower.profile import profile
    e = next((e for e in engines if e.label == SEARCH), None) or next(e for e in engines if e.label == OWN)
    assert e.folder is not None
    log(f"{name}: profiling the {e.label} package")
    prof = profile(e.folder, repeat=20)
    lines = [f"### {name}: {e.label}, the {TOP} slowest kernels",
             "",
             f"Kernels alone sum to {_num(prof.kernels_seconds * 1e3)} ms of a "
             f"{_num(prof.end_to_end_seconds * 1e3)} ms run; % of peak is against the measured FMA peak of "
             f"{peak['threads']} thread(s), {peak['gflops']:.1f} GFLOP/s.",
             "",
             "| kernel | ONNX nodes | ms per call | calls | total ms | share | GFLOP/s | % of peak |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k in prof.kernels[:TOP]:
        gflops = k.gflops
        share = "—" if gflops is None else f"{gflops / peak['gflops']:.1%}"
        nodes = (k.nodes[0] + (f" +{len(k.nodes) - 1}" if len(k.nodes) > 1 else "")) if k.nodes else "—"
        lines.append(f"| `{_short(k.name)}` | {nodes} | {_num(k.seconds * 1e3)} | {k.calls} | "
                     f"{_num(k.total_seconds * 1e3)} | {k.total_seconds / prof.kernels_seconds:.1%} | "
                     f"{'—' if gflops is None else f'{gflops:.1f}'} | {share} |")
    return "\n".join(lines) + "\n"


def header(args: argparse.Namespace, threads: int, peaks: dict[int, dict[str, Any]], before: tuple[float, ...],
           after: tuple[float, ...], seconds: float) -> str:
    info = environment.cpuinfo()
    flags = [f for f in environment.cpu_flags(info) if f in FLAGS]
    llvm = environment.llvm_cpu()
    n = os.cpu_count() or 1
    peak_text = "; ".join(f"{t} thread{'s' if t > 1 else ''}: {p['gflops']:.1f} GFLOP/s"
                          for t, p in sorted(peaks.items()))
    versions = {"onnxruntime": ort.__version__, "apache-tvm": _version("apache-tvm"), "archc": archc.__version__,
                "archc git": environment.git_revision() or "—", "numpy": np.__version__,
                "python": platform.python_version()}
    hog = f"hog ({n} busy-loop processes while timing)" if args.hog else "quiet (no hog started)"
    return "\n".join([
        f"## backend_speed: {', '.join(args.models.split(','))} on {environment.cpu_model(info)}",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; the whole run took {seconds / 60:.1f} min",
        f"- command: `python benchmarks/backend_speed.py {' '.join(sys.argv[1:])}`",
        f"- CPU: {environment.cpu_model(info)} (LLVM: {llvm or '—'}), {n} logical CPUs, "
        f"{environment.physical_cores(info)} cores; flags: {', '.join(flags) or 'none of ' + '/'.join(FLAGS)}",
        f"- measured fp32 FMA peak ({peaks[1]['isa']}): {peak_text} ({peaks[1]['method'].split(' on ')[0]})",
        f"- threads: {threads} (TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', 'unset')}); onnxruntime at its "
        "default, its spin-waiting stopped when a run returns",
        f"- load average before: {_load(before)}; after: {_load(after)}",
        f"- machine: {hog}",
        f"- timing: {args.rounds} rounds; per engine per round {WARMUP} warm-up runs and "
        f"{BLOCK} timed runs (order rotated each round); batch 1, fp32",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ])


@contextmanager
def hogs(on: bool) -> Iterator[None]:
    """os.cpu_count() busy-loop processes while the block runs (none when off), killed after it."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if on:
            procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
            log(f"started {len(procs)} hog processes")
            time.sleep(0.5)
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _runner(pkg: Any, x: dict[str, np.ndarray]) -> Callable[[], list[Any]]:
    return lambda: pkg.run(x)


def _diff(got: list, want: list) -> float:
    return max(relative_diff(g, w) for g, w in zip(got, want, strict=True))


def _num(x: float) -> str:
    """Three significant digits below 10 (0.0174, 0.933, 2.65), one decimal above (26.3, 1,572.4)."""
    return f"{x:.3g}" if abs(x) < 10 else f"{x:,.1f}"


def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def _load(load: tuple[float, ...]) -> str:
    return " / ".join(f"{x:.2f}" for x in load) + " (1 / 5 / 15 min)"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "—"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
