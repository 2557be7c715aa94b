"""`archc bench`: a model's compiled packages against onnxruntime (and every other engine installed), measured in
one run, on the same inputs, alternating in rounds, with a correctness check; the results in the versioned JSON
of `archc.measurement.results` (README: "Benchmarks: archc bench").

For each batch size: the model is loaded at that batch and written as ONNX (what onnxruntime, OpenVINO, IREE and
PyTorch run), and compiled by archc once per variant (`untuned`: no tuning at all, an empty database; `default`:
what `archc compile` builds, the target's database applied and a short pass for kernels it lacks; `tuned`: `archc
tune` for `trials` more measurements first). Every engine runs `warmup` times, then the engines take turns:
round r runs each once, the order rotated by r, so that the machine's drift (other work, clocks, heat) hits all
alike. Engines on another machine (an RPC board) or under qemu share nothing with the rest and are measured on
their own, after the rounds.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from archc import frontends
from archc.deploy.manifest import Manifest, TensorSpec
from archc.errors import ArchcError, UsageError
from archc.measurement import engines as engine_mod
from archc.measurement import memory as memory_mod
from archc.measurement import stats, tuning
from archc.measurement.environment import environment, load_state, loadavg
from archc.measurement.results import (
    Agreement,
    BenchProfile,
    BenchResults,
    BenchTarget,
    EngineResult,
    Measurement,
    MemoryUse,
    ModelInfo,
    Settings,
    Tuning,
    TuningPoint,
)
from archc.options import ModelOptions
from archc.util.machine import cpus
from archc.util.onnx_skeleton import write_model

VARIANTS = ("untuned", "default", "tuned")
WARMUP = 2  # runs of each engine before any is timed (the first one's outputs are compared)
DEFAULT_SECONDS = 10.0  # per batch size, when neither repeat nor seconds is given
MIN_ROUNDS = 5  # with a time budget: at least this many rounds
MAX_ROUNDS = 10_000  # a time budget on a tiny model: enough samples, a file of reasonable size
DEFAULT_TRIALS = 64  # the tuned variant's trials, as `archc tune`'s default
PROFILE_REPEAT = 8  # `archc profile --repeat` for the per-kernel profile


@dataclass(frozen=True)
class _Build:
    """An engine made ready at one batch size: its build time, and an archc package's tuning (CPU targets)."""
    compile_seconds: float
    tuning: Tuning | None = None


def _fail(entry: EngineResult, batch: int, err: BaseException) -> None:
    entry.status = "error"
    entry.note = _join(entry.note, f"at batch {batch}: {_sentence(err)}")


def measure(source: str | Path, target: str | Any | None = None, options: ModelOptions | None = None, *,
            batches: Sequence[int] | None = None, threads: int | None = None, repeat: int | None = None,
            seconds: float | None = None, engines: Sequence[str] = engine_mod.NAMES,
            variants: Sequence[str] = ("default",), trials: int | None = None, db: str | Path | None = None,
            rpc: Any = None, warmup: int = WARMUP, memory: bool = True, profile: bool = True,
            show_progress: bool = False, command: str | None = None, kernels: str = "archc",
            precisions: Sequence[str] | None = None, keep_fp32: Sequence[str] = ()) -> BenchResults:
    """Measure a spec, ONNX file or package folder on every engine asked for (onnxruntime always); see the module
    doc. `repeat`: rounds per batch size; `seconds`: rounds until that much time has passed (at least
    MIN_ROUNDS); neither: DEFAULT_SECONDS. `rpc`: an `archc.runtime.rpc.Remote` to run archc's packages on.
    `memory`: each engine's peak memory in a child process; `profile`: the per-kernel profile of archc's best
    variant at the first batch size. `kernels`: archc's builds with its own CPU kernels ("archc") or TVM's ("tvm",
    tuned by MetaSchedule only), as `archc compile --kernels`. `precisions`: each archc variant is built at each
    (default: the target file's precision); with any but fp32, OpenVINO's bf16 run (openvino-bf16) is measured
    beside its f32 one, the peer at the same precision. `keep_fp32`: ONNX node names of layers the bf16 builds
    compute in fp32 (as `archc compile --keep-fp32`). Returns the results (`BenchResults`)."""
    from archc import targets
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = loadavg()
    options = options or ModelOptions()
    src = Path(source)
    manifest = _manifest(src)
    names = _engines(engines)
    variants = _variants(variants, names, manifest is not None)
    if "tuned" in variants:
        trials = trials or DEFAULT_TRIALS
    elif trials:
        raise UsageError("--trials sets the tuned variant's budget; add tuned to --variants", code="bad-usage")
    if repeat is not None and seconds is not None:
        raise UsageError("give --repeat (rounds) or --seconds (a time budget), not both", code="bad-usage")
    if (repeat is not None and repeat < 1) or (seconds is not None and seconds <= 0) or warmup < 1:
        raise UsageError("--repeat must be at least 1, --seconds more than 0 and warmup at least 1", code="bad-option")
    if repeat is None and seconds is None:
        seconds = DEFAULT_SECONDS
    threads = _threads(threads)
    if manifest is not None:
        bench_target = BenchTarget(manifest.target.name, manifest.target.description)
        tgt = None
        name = str(target if isinstance(target, str) else getattr(target, "name", ""))
        if target is not None and name != bench_target.name:
            raise UsageError(f"'{src}' is a package built for '{bench_target.name}'; leave --target out or give that",
                             code="bad-usage")
        package_batch = manifest.inputs[0].shape[0]
        if batches is not None and list(batches) != [package_batch]:
            raise UsageError(f"'{src}' is a package built for batch {package_batch}; compile the model for other "
                             "batch sizes (give the spec or ONNX file to archc bench)", code="bad-usage")
        batches = [package_batch]
        built = manifest.build.precision
        if precisions and list(precisions) != [built]:
            raise UsageError(f"'{src}' is a package built at {built}; leave --precision out or compile the model "
                             "at other precisions (give the spec or ONNX file to archc bench)", code="bad-usage")
        precisions = [built]
        if keep_fp32:
            raise UsageError(f"'{src}' is a package: it computes in fp32 the layers it was built with "
                             f"({', '.join(manifest.build.fp32_layers or []) or 'none'}); leave --keep-fp32 out, or "
                             "give the spec or ONNX file to archc bench", code="bad-usage")
    else:
        if target is None:
            raise UsageError("archc bench needs --target for a model (e.g. --target native); a package folder knows "
                             "its own", code="bad-usage")
        tgt = targets.get(target) if isinstance(target, str) else target
        if tgt.backend != "tvm":
            raise UsageError(f"archc bench compares packages compiled for a TVM target, not '{tgt.name}'; give one "
                             "(archc targets), e.g. --target native", code="needs-tvm-target")
        bench_target = BenchTarget(tgt.name, tgt.description)
        batches = list(batches or [1])
        precisions = _precisions(precisions or [tgt.precision])
        if keep_fp32 and not {"bf16", "auto"} & set(precisions):
            raise UsageError(f"--keep-fp32 keeps layers of the bf16 builds in fp32, and this bench builds "
                             f"{', '.join(precisions)} only: add --precision bf16", code="bad-option")
    if "openvino" in names and "openvino-bf16" not in names and set(precisions) - {"fp32"}:
        names.insert(names.index("openvino") + 1, "openvino-bf16")  # the peer at the same precision
    if not batches or any(int(b) < 1 for b in batches):
        raise UsageError("--batch takes batch sizes of at least 1, e.g. --batch 1,8,32", code="bad-option")
    env = environment(threads)
    model = _model(src, manifest, options)
    entries = _entries(names, variants, precisions, rpc, bench_target.name or "",
                       src if manifest is not None else None)
    work = Path(tempfile.mkdtemp(prefix="archc-bench-"))
    run = _Run(src, manifest, tgt, options, threads, repeat, seconds, warmup, trials, Path(db) if db else None, rpc,
               memory, show_progress, work, model, kernels, tuple(keep_fp32))
    try:
        for k, batch in enumerate(batches):
            run.batch(int(batch), entries, first=k == 0, profile=profile)
        if memory and run.inputs_file is not None:
            env.memory = MemoryUse(memory_mod.METHOD, memory_mod.baseline(run.inputs_file))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    env.load = load_state(before, loadavg(), os.cpu_count() or cpus())
    return BenchResults(
        created=created,
        command=command or _command(source, bench_target.name or "", batches, threads, repeat, seconds, names,
                                    variants, trials, rpc, precisions, keep_fp32),
        environment=env, model=model, target=bench_target, engines=entries, profile=run.profile,
        tuning_curve=run.curve,
        settings=Settings(batches=list(batches), threads=threads, repeat=repeat, seconds=seconds, warmup=warmup,
                          rounds=run.rounds, engines=names, variants=list(variants), trials=trials,
                          rpc=str(rpc) if rpc else None, precisions=list(precisions),
                          keep_fp32=list(keep_fp32) or None))


class _Run:
    """The state of one benchmark run across its batch sizes."""

    def __init__(self, src: Path, manifest: Manifest | None, tgt: Any, options: ModelOptions, threads: int,
                 repeat: int | None, seconds: float | None, warmup: int, trials: int | None, db: Path | None,
                 rpc: Any, memory: bool, show: bool, work: Path, model: ModelInfo, kernels: str = "archc",
                 keep: tuple[str, ...] = ()) -> None:
        self.src, self.manifest, self.tgt, self.options = src, manifest, tgt, options
        self.threads, self.repeat, self.seconds, self.warmup, self.trials = threads, repeat, seconds, warmup, trials
        self.db, self.rpc, self.memory, self.show, self.work, self.model = db, rpc, memory, show, work, model
        self.kernels, self.keep = kernels, keep
        self.searched = 0  # convolutions whose configuration the tuned variant's `archc tune` searched
        self.profile: BenchProfile | None = None
        self.curve: list[TuningPoint] | None = None
        self.rounds: dict[str, int] = {}
        self.inputs_file: Path | None = None

    def batch(self, batch: int, entries: list[EngineResult], first: bool, profile: bool) -> None:
        onnx_path, model = self._model_at(batch)
        if self.keep and model is not None:  # a name the model lacks: one sentence, before any engine is built
            from archc.lower.build import kept_weights
            kept_weights(model, self.keep, "bf16")
        inputs = _random_inputs(onnx_path)
        self.inputs_file = self.work / f"inputs.b{batch}.npz"
        np.savez(self.inputs_file, **inputs)  # type: ignore[arg-type]  # names are the model's inputs
        live: list[tuple[EngineResult, engine_mod.Engine, _Build]] = []
        for entry in entries:
            if entry.status != "ok":
                continue
            try:
                engine, built = self._build(entry, batch, onnx_path, model, first)
            except Exception as err:  # one engine failing to build does not stop the others
                _fail(entry, batch, err)
                continue
            if entry.compile_seconds is None:
                entry.compile_seconds, entry.tuning = built.compile_seconds, built.tuning
            live.append((entry, engine, built))
        outputs: dict[int, list[np.ndarray]] = {}
        for entry, engine, _ in live:  # warm-up; the first run's outputs are compared with onnxruntime's
            try:
                outputs[id(entry)] = engine.run(inputs)
                if engine.alternates:
                    for _ in range(self.warmup - 1):
                        engine.run(inputs)
            except Exception as err:
                _fail(entry, batch, err)
        live = [item for item in live if item[0].status == "ok"]
        samples, starts = self._rounds(batch, [item for item in live if item[1].alternates], inputs)
        rounds = self.rounds[str(batch)]
        for entry, engine, _ in live:
            if not engine.alternates:
                try:
                    outputs[id(entry)], samples[id(entry)] = engine.timed(inputs, rounds)
                except Exception as err:
                    _fail(entry, batch, err)
        reference = next((outputs.get(id(e)) for e, _, _ in live if e.engine == "onnxruntime"), None)
        for entry, engine, built in live:
            if entry.status != "ok" or not samples.get(id(entry)):
                continue
            entry.results.append(self._result(entry, engine, built, batch, samples[id(entry)],
                                              starts.get(id(entry)), outputs[id(entry)], reference))
        if first and profile:
            self._profile(live, batch)

    def _model_at(self, batch: int) -> tuple[Path, Any]:
        """The model's ONNX at this batch size, written into the work folder (and the loaded model to compile)."""
        path = self.work / f"{self.model.name}.b{batch}.onnx"
        if self.manifest is not None:
            shutil.copyfile(self.src / "model.onnx", path)
            if (self.src / "model.onnx.data").is_file():  # its weights, by that name beside it (over 2 GiB)
                shutil.copyfile(self.src / "model.onnx.data", self.work / "model.onnx.data")
            return path, None
        model = frontends.load(self.src, at_batch(self.options, batch))
        if model.inputs and model.inputs[0][1] and model.inputs[0][1][0] != batch:
            raise UsageError(f"--input fixes the batch at {model.inputs[0][1][0]}; give the batch sizes with --batch "
                             "instead (and --input without them, or the full shapes at batch 1)", code="bad-usage")
        write_model(model.proto, path)
        return path, model

    def _build(self, entry: EngineResult, batch: int, onnx_path: Path, model: Any, first: bool
               ) -> tuple[engine_mod.Engine, _Build]:
        entry.version = entry.version or (engine_mod.version_of(engine_mod.CLASSES[entry.engine].distribution)
                                          if entry.engine != "archc" else _archc_version())
        if entry.engine != "archc":
            engine = engine_mod.CLASSES[entry.engine](onnx_path, self.threads)
            start = time.perf_counter()
            engine.prepare()
            return engine, _Build(round(time.perf_counter() - start, 3))
        folder, tune_seconds, tune_trials = self._compile(entry.variant or "default", batch, model, first,
                                                          entry.precision or "fp32")
        archc_engine = engine_mod.Archc(folder, self.threads, self.rpc)
        archc_engine.prepare()
        if archc_engine.package.emulated and not entry.note:
            entry.note = ("runs under qemu on this machine (an aarch64 package), measured in one call per batch size "
                          "inside the emulated process: its times say nothing about a real board; no peak memory")
        build = archc_engine.package.manifest.build
        entry.precision = build.precision  # `auto` resolved
        if first and build.fp32_layers:
            entry.note = _join(entry.note, f"computes {', '.join(build.fp32_layers)} in fp32 (--keep-fp32)")
        checked = archc_engine.package.manifest.verification
        if first and checked is not None and checked.agreement:  # a low-precision build's accuracy, once
            a = checked.agreement
            # onnxruntime runs the model as it is: an int8 build's model is QDQ, which onnxruntime runs in int8
            peer = "onnxruntime's on the same QDQ model" if build.precision == "int8" else "onnxruntime fp32's"
            entry.note = _join(entry.note, f"its {build.precision} build's top-1 class agrees with {peer} "
                                           f"on {a['top1']} and its top five on {a['top5']} of {a['inputs']} random "
                                           "inputs (its verification)")
        tuning = None
        if build.cpu_schedules:  # a CPU target (GPU kernels get dlight's schedules, not tuned)
            tuning = Tuning(trials=build.trials_now + tune_trials, kernels_tuned=build.kernels_tuned or 0,
                            kernels_naive=build.kernels_naive,
                            database=None if entry.variant == "untuned" else build.database,
                            seconds=tune_seconds, kernels=build.kernels or "tvm",
                            kernels_archc=build.kernels_archc or 0,
                            convolutions_searched=self.searched if entry.variant == "tuned" else 0)
        return archc_engine, _Build(round(build.compile_seconds, 3), tuning)

    def _compile(self, variant: str, batch: int, model: Any, first: bool, precision: str = "fp32"
                 ) -> tuple[Path, float | None, int]:
        """The package of a variant at this batch and precision: (folder, seconds of its `archc tune` run, trials
        it ran)."""
        from archc.lower import QUICK_TRIALS, tune_model
        from archc.lower.tune import Budget, default_db
        if self.manifest is not None:
            return self.src, None, 0
        folder = self.work / f"{self.model.name}.b{batch}.{variant}.{precision}"
        if variant == "untuned":  # an empty database: nothing applied, and no short pass
            self._write(model, folder, self.work / "empty-db", 0, precision)
            return folder, None, 0
        db = self.db or default_db(self.tgt)
        tune_seconds, tune_trials = None, 0
        with _measuring_threads(self.threads):
            if variant == "tuned":
                start_records = tuning.record_count(db)
                start = time.perf_counter()
                summary = tune_model(model, self.tgt, db, Budget(self.trials or DEFAULT_TRIALS), self.show, self.rpc,
                                     self.kernels, precision, self._kept(precision))
                self.searched = int(summary.searched)
                tune_seconds, tune_trials = round(time.perf_counter() - start, 3), int(summary.trials)
                if first:
                    self.curve = tuning.curve(db, start_records)
            self._write(model, folder, db, QUICK_TRIALS, precision)
        return folder, tune_seconds, tune_trials

    def _write(self, model: Any, folder: Path, db: Path, quick: int, precision: str) -> None:
        """Build the package into `folder`; a low-precision build is verified as `archc compile` verifies it, so
        that its accuracy is shown beside its speed (an fp32 build's outputs are compared in the rounds)."""
        from archc.lower import lower, write_package
        from archc.lower.verify import checker_at
        kept = self._kept(precision)
        lowered = lower(model, self.tgt, db, None, self.show, quick, self.kernels, precision, kept)
        built = lowered.report.precision  # `auto` resolved
        check = None if built == "fp32" else checker_at(model, lambda m, out: write_package(
            m, lower(m, self.tgt, db, None, False, 0, self.kernels, built, kept), out), built)
        write_package(model, lowered, folder, check)

    def _kept(self, precision: str) -> tuple[str, ...]:
        """--keep-fp32's layers for a build at `precision`: a bf16 one's (auto's where it chooses bf16), none for
        the fp32 and int8 builds beside it."""
        from archc.lower.build import choose_precision
        if not self.keep or precision not in ("bf16", "auto"):
            return ()
        return self.keep if choose_precision(self.tgt, self.kernels, precision)[0] == "bf16" else ()

    def _rounds(self, batch: int, alternating: list[tuple[EngineResult, engine_mod.Engine, _Build]],
                inputs: dict[str, np.ndarray]) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
        """Round r runs every engine once, in the order rotated by r; (latencies, start times) by entry."""
        from archc.util.progress import progress
        samples: dict[int, list[float]] = {id(e): [] for e, _, _ in alternating}
        starts: dict[int, list[float]] = {id(e): [] for e, _, _ in alternating}
        r = 0
        begin = time.perf_counter()
        with progress(self.repeat, f"{self.model.name} batch {batch}", enabled=self.show) as advance:
            while alternating and r < MAX_ROUNDS:
                if self.repeat is not None and r >= self.repeat:
                    break
                if self.repeat is None and r >= MIN_ROUNDS and time.perf_counter() - begin >= (self.seconds or 0):
                    break
                k = r % len(alternating)
                for entry, engine, _ in alternating[k:] + alternating[:k]:
                    if entry.status != "ok":
                        continue
                    start = time.perf_counter()
                    try:
                        engine.run(inputs)
                    except Exception as err:
                        _fail(entry, batch, err)
                        continue
                    samples[id(entry)].append(time.perf_counter() - start)
                    starts[id(entry)].append(start - begin)
                r += 1
                advance(f"{self.model.name} batch {batch}: round {r}")
        self.rounds[str(batch)] = r if alternating else (self.repeat or MIN_ROUNDS)
        return samples, starts

    def _result(self, entry: EngineResult, engine: engine_mod.Engine, built: _Build, batch: int,
                latencies: list[float], starts: list[float] | None, outputs: list[np.ndarray],
                reference: list[np.ndarray] | None) -> Measurement:
        summary = stats.summary(latencies)
        median = summary.median
        flops = self.model.flops
        agreement = Agreement()
        if reference is not None and entry.engine != "onnxruntime":
            agreement = stats.agreement(outputs, reference, bool(self.model.classifier))
        peak = None
        spec = engine.spec()
        if self.memory and spec is not None and self.inputs_file is not None:
            peak = memory_mod.peak_bytes(spec, self.inputs_file)
        remote = isinstance(engine, engine_mod.Archc) and engine.remote is not None
        return Measurement(batch=batch, threads=None if remote else self.threads, latency_s=latencies, stats=summary,
                           throughput=batch / median if median > 0 else None, peak_memory_bytes=peak,
                           gflops=flops * batch / median / 1e9 if flops and median > 0 else None,
                           agreement=agreement, sample_start_s=starts, compile_seconds=built.compile_seconds,
                           tuning=built.tuning)

    def _profile(self, live: list[tuple[EngineResult, engine_mod.Engine, _Build]], batch: int) -> None:
        """`archc profile` of the best archc variant measured (tuned, else default, else untuned)."""
        from archc.lower.profile import profile
        rank = {"tuned": 0, "default": 1, "package": 2, "untuned": 3}
        archc_live = sorted((item for item in live if item[0].engine == "archc" and item[0].status == "ok"),
                            key=lambda item: rank.get(item[0].variant or "", 9))
        if not archc_live:
            return
        entry, engine, _ = archc_live[0]
        if isinstance(engine, engine_mod.Archc) and engine.remote is None and engine.package.emulated:
            entry.note = _join(entry.note, "no per-kernel profile: archc profile times kernels here or on an RPC "
                                           "device, not under qemu (an emulated board: archc rpc-server --emulate)")
            return
        try:
            self.profile = BenchProfile(profile(engine.path, PROFILE_REPEAT, self.rpc,
                                                threads=None if self.rpc else self.threads), entry.variant, batch)
        except Exception as err:
            entry.note = _join(entry.note, f"its per-kernel profile failed: {_sentence(err)}")


def _threads(threads: int | None) -> int:
    """The benchmark's threads: --threads, else TVM_NUM_THREADS (one sentence when it is not a count), else every
    CPU this process may use."""
    from archc.runtime import MAX_THREADS, PackageError, environment_threads
    if threads is None:
        try:
            return environment_threads() or cpus()
        except PackageError as err:
            raise UsageError(str(err), code="bad-threads") from None
    if not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be a number of threads from 1 to {MAX_THREADS}, not {threads}",
                         code="bad-threads")
    return threads


@contextlib.contextmanager
def _measuring_threads(threads: int) -> Iterator[None]:
    """TVM_NUM_THREADS set to the benchmark's threads while a variant is tuned and built: the kernels that `archc
    tune` and the default build's short pass measure run in pools that read it (the search's libraries in this
    process, MetaSchedule's runner processes), so they are timed on the threads the package will run on. The
    packages themselves get their threads from load_package, not from this."""
    saved = os.environ.get("TVM_NUM_THREADS")
    os.environ["TVM_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TVM_NUM_THREADS", None)
        else:
            os.environ["TVM_NUM_THREADS"] = saved


def at_batch(options: ModelOptions, batch: int) -> ModelOptions:
    """The options at one batch size: `--input` shapes (full shapes, batch first) get this batch too."""
    return options.with_(batch=batch, inputs={k: (batch, *shape[1:]) for k, shape in options.inputs.items()})


def _manifest(src: Path) -> Manifest | None:
    """A package folder's manifest; None for a model file."""
    if not src.is_dir():
        if not src.exists():
            raise UsageError(f"'{src}' does not exist; give a spec (.arch), an ONNX file or a package folder",
                             code="no-file")
        return None
    from archc.runtime import load_package
    return load_package(src).manifest


def _engines(engines: Sequence[str]) -> list[str]:
    unknown = [e for e in engines if e not in engine_mod.NAMES]
    if unknown:
        raise UsageError(f"unknown engine '{unknown[0]}'; engines: {', '.join(engine_mod.NAMES)}", code="bad-option")
    return list(dict.fromkeys(["onnxruntime", *engines]))  # the reference is always measured


def _variants(variants: Sequence[str], names: list[str], package: bool) -> list[str]:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UsageError(f"unknown variant '{unknown[0]}'; variants: {', '.join(VARIANTS)}", code="bad-option")
    if not variants and "archc" in names and not package:
        raise UsageError("--variants needs at least one of " + ", ".join(VARIANTS), code="bad-option")
    return ["package"] if package else [v for v in VARIANTS if v in variants]


def _precisions(precisions: Sequence[str]) -> list[str]:
    from archc.targets import PRECISIONS
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise UsageError(f"unknown precision '{unknown[0] if unknown else ''}'; precisions: {', '.join(PRECISIONS)}",
                         code="bad-option")
    return list(dict.fromkeys(precisions))


def _entries(names: list[str], variants: list[str], precisions: list[str], rpc: Any, target: str,
             package: Path | None) -> list[EngineResult]:
    entries = []
    for name in names:
        why = engine_mod.absent(name)
        builds = [(v, p) for v in variants for p in precisions] if name == "archc" else [(None, None)]
        for variant, precision in builds:
            entry = EngineResult(name, variant, "absent" if why else "ok", why,  # the note: why it is absent
                                 precision=precision)
            if not why:
                entry.note = _how_it_runs(name, rpc, target)
                if name == "archc" and package is not None:  # which build this is: the folder's name says
                    entry.note = "; ".join(filter(None, [f"the package {package.name}, as built", entry.note]))
            entries.append(entry)
    return entries


def _how_it_runs(name: str, rpc: Any, target: str) -> str | None:
    """The note of an engine that does not simply run here like the others."""
    if name == "archc" and rpc is not None:
        return (f"runs on the RPC device {rpc}, timed there by TVM's time_evaluator in one call per batch size after "
                "the other engines' rounds (it shares nothing with them); no peak memory")
    if rpc is not None:
        return f"runs on this machine, while archc's package runs on the RPC device {rpc}" + (
            f"; {engine_mod.OnnxRuntime.NOTE}" if name == "onnxruntime" else "")
    if name == "archc" and target.startswith("cuda"):
        return "runs on the GPU: its GFLOP/s are compared with this CPU's peak"
    return engine_mod.CLASSES[name].NOTE if name in engine_mod.CLASSES else None


def _model(src: Path, manifest: Manifest | None, options: ModelOptions) -> ModelInfo:
    """The model's facts at batch 1 (FLOPs, MACs per item) and its whole analysis."""
    from archc.analysis import analyze
    if manifest is not None:
        analysis = analyze(frontends.load(src / "model.onnx", ModelOptions(), weights=False))
        per = max(1, manifest.inputs[0].shape[0])
    else:
        analysis = analyze(frontends.load(src, at_batch(options, 1), weights=False))
        per = 1
    totals = analysis.totals
    shapes = [tuple(o["shape"][1:]) for o in analysis.outputs if o.get("shape")]
    name = manifest.model if manifest is not None else analysis.model  # a package's ONNX is just model.onnx
    return ModelInfo(name=name, source=str(src), params=totals.trainable_params, macs=totals.macs // per,
                     flops=totals.flops // per, classifier=stats.is_classifier([(1, *s) for s in shapes]),
                     analysis=analysis.to_json())


def _random_inputs(onnx_path: Path) -> dict[str, np.ndarray]:
    """The inputs every engine gets: `archc.runtime.random_inputs` (seed 0) of the ONNX graph's inputs."""
    import onnx
    from onnx import helper

    from archc.runtime import random_inputs
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return random_inputs([TensorSpec(vi.name, tuple(d.dim_value for d in vi.type.tensor_type.shape.dim),
                                     np.dtype(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).name)
                          for vi in graph.input if vi.name not in initializers])


def _archc_version() -> str:
    from archc.version import __version__
    return __version__


def _sentence(err: BaseException) -> str:
    from archc.runtime import PackageError
    if isinstance(err, (ArchcError, PackageError)):
        return str(err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1][:300] if lines else 'no message'}"


def _join(note: str | None, sentence: str) -> str:
    return f"{note}; {sentence}" if note else sentence


def _command(source: str | Path, target: str, batches: Sequence[int], threads: int, repeat: int | None,
             seconds: float | None, names: list[str], variants: list[str], trials: int | None, rpc: Any,
             precisions: Sequence[str] = ("fp32",), keep_fp32: Sequence[str] = ()) -> str:
    """The `archc bench` command line that asks for the same measurements (for results made through the API)."""
    parts = ["archc", "bench", str(source), "--target", target, "--batch", ",".join(map(str, batches)),
             "--threads", str(threads), *(["--repeat", str(repeat)] if repeat else ["--seconds", f"{seconds:g}"]),
             "--engines", ",".join(names)]
    if variants and variants != ["package"]:
        parts += ["--variants", ",".join(variants)]
    if trials:
        parts += ["--trials", str(trials)]
    if list(precisions) != ["fp32"]:
        parts += ["--precision", ",".join(precisions)]
    if keep_fp32:
        parts += ["--keep-fp32", ",".join(keep_fp32)]
    if rpc is not None:
        parts += ["--rpc", f"{rpc.host}:{rpc.port}", "--rpc-key", rpc.key]
    return shlex.join(parts)
