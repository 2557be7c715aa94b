"""The results file of `archc bench`: one JSON object, `"schema": "archc-bench"`, `"schema_version": 1` (README,
"Benchmarks: archc bench", documents every field), and its typed records, the schema's one home: `BenchResults`
(the file), `Environment` (`Cpu`, `Gpu`, `Load`, `MemoryUse`), `ModelInfo`, `BenchTarget`, `EngineResult` (one engine
and variant) with its `Tuning` and `Measurement`s (one batch size: `Stats`, `Agreement`), `BenchProfile` (`archc
profile`'s record, `archc.deploy.profile.Profile`, with the variant and batch it timed), `TuningPoint`s and
`Settings`. Each record's `to_json()` is the exact JSON written; `from_json` checks each field's type, and a file
that is not one archc writes is refused with one sentence naming the field (`engines[0].results[1].batch`).

`write` saves the results atomically; `read` (and `load`, for data already parsed) checks what the file is, brings an
older version it knows up to date (`UPGRADES`, on the JSON), and returns the records.

Version 0 is the layout of archc's pre-release benchmark script (benchmarks/backend_speed.py's measurements saved
as JSON): no `schema` key; engines named with their variant in one string ("archc untuned"); latencies in
milliseconds (`latency_ms`) without statistics; the agreement as one number (`max_rel_diff`); no environment
beyond the host and CPU model.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from archc.deploy.profile import KernelTime, Profile
from archc.errors import ArchcError, Code

SCHEMA = "archc-bench"
SCHEMA_VERSION = 1


# ---- reading fields ------------------------------------------------------------------------------------------------
class MalformedResults(ArchcError):
    """A field of bench results that is missing or not of its type: `field` is its path (`engines[0].results[1].batch`),
    `problem` what is wrong ("is not an integer")."""

    code: Code = "bad-results"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"the bench results' field '{field}' {problem}; it is cut short or was edited: run archc "
                         "bench again")
        self.field, self.problem = field, problem


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


R = TypeVar("R")


class _Fields:
    """One JSON object of the results, read field by field at its path (`at`): a field of the wrong type, or a
    required one missing or null, raises `MalformedResults` naming it. Numbers are kept as the file has them (an
    int stays an int), so that writing the records back gives the same JSON."""

    def __init__(self, data: Any, at: str) -> None:
        if not isinstance(data, dict):
            raise MalformedResults(at or "(the whole file)", "is not an object")
        self.data, self.at = data, at

    def path(self, key: str) -> str:
        return f"{self.at}.{key}" if self.at else key

    def _value(self, key: str, check: Callable[[Any], bool], what: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise MalformedResults(self.path(key), "is missing" if key not in self.data else "is null")
            return None
        if not check(value):
            raise MalformedResults(self.path(key), f"is not {what}")
        return value

    def text(self, key: str) -> str | None:
        return self._value(key, _is_str, "a string", False)

    def need_text(self, key: str) -> str:
        return self._value(key, _is_str, "a string", True)

    def integer(self, key: str) -> int | None:
        return self._value(key, _is_int, "an integer", False)

    def need_integer(self, key: str) -> int:
        return self._value(key, _is_int, "an integer", True)

    def number(self, key: str) -> float | None:
        return self._value(key, _is_number, "a number", False)

    def need_number(self, key: str) -> float:
        return self._value(key, _is_number, "a number", True)

    def flag(self, key: str) -> bool | None:
        return self._value(key, _is_bool, "true or false", False)

    def need_flag(self, key: str) -> bool:
        return self._value(key, _is_bool, "true or false", True)

    def numbers(self, key: str) -> list[float] | None:
        return self._value(key, lambda v: isinstance(v, list) and all(map(_is_number, v)), "a list of numbers",
                           False)

    def integers(self, key: str) -> list[int] | None:
        return self._value(key, lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of integers", False)

    def texts(self, key: str) -> list[str] | None:
        return self._value(key, lambda v: isinstance(v, list) and all(map(_is_str, v)), "a list of strings", False)

    def mapping(self, key: str) -> dict[str, Any] | None:
        return self._value(key, lambda v: isinstance(v, dict), "an object", False)

    def record(self, key: str, parse: Callable[[Any, str], R]) -> R | None:
        value = self.data.get(key)
        return None if value is None else parse(value, self.path(key))

    def need_record(self, key: str, parse: Callable[[Any, str], R]) -> R:
        if self.data.get(key) is None:
            raise MalformedResults(self.path(key), "is missing" if key not in self.data else "is null")
        return parse(self.data[key], self.path(key))

    def records(self, key: str, parse: Callable[[Any, str], R]) -> list[R] | None:
        value = self._value(key, lambda v: isinstance(v, list), "a list", False)
        return None if value is None else [parse(v, f"{self.path(key)}[{i}]") for i, v in enumerate(value)]


# ---- the machine ---------------------------------------------------------------------------------------------------
@dataclass
class Cpu:
    """The CPU: its model, LLVM's name for it, the SIMD and matrix flags that matter, cores, and its measured fp32
    peak and memory bandwidth with how each was measured (`archc.measurement.environment`)."""
    model: str | None = None
    llvm_cpu: str | None = None
    flags: list[str] = field(default_factory=list)
    physical_cores: int | None = None
    logical_cpus: int | None = None
    peak_gflops: float | None = None
    peak_method: str | None = None
    bandwidth_gbs: float | None = None
    bandwidth_method: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "llvm_cpu": self.llvm_cpu, "flags": list(self.flags),
                "physical_cores": self.physical_cores, "logical_cpus": self.logical_cpus,
                "peak_gflops": self.peak_gflops, "peak_method": self.peak_method, "bandwidth_gbs": self.bandwidth_gbs,
                "bandwidth_method": self.bandwidth_method}

    @classmethod
    def from_json(cls, data: Any, at: str = "environment.cpu") -> Cpu:
        f = _Fields(data, at)
        return cls(f.text("model"), f.text("llvm_cpu"), f.texts("flags") or [], f.integer("physical_cores"),
                   f.integer("logical_cpus"), f.number("peak_gflops"), f.text("peak_method"),
                   f.number("bandwidth_gbs"), f.text("bandwidth_method"))


@dataclass
class Gpu:
    """The first NVIDIA GPU, and how many there are."""
    name: str
    driver: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "driver": self.driver, "count": self.count}

    @classmethod
    def from_json(cls, data: Any, at: str = "environment.gpu") -> Gpu:
        f = _Fields(data, at)
        return cls(f.need_text("name"), f.need_text("driver"), f.need_integer("count"))


@dataclass
class Load:
    """The 1-, 5- and 15-minute load averages before and after the run, the cores, and whether the machine was
    busy (`archc.measurement.environment.load_state`), with the warning that says so."""
    before: list[float]
    after: list[float] | None
    cores: int | None
    loaded: bool
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"before": list(self.before), "after": None if self.after is None else list(self.after),
                "cores": self.cores, "loaded": self.loaded, "warning": self.warning}

    @classmethod
    def from_json(cls, data: Any, at: str = "environment.load") -> Load:
        f = _Fields(data, at)
        return cls(f.numbers("before") or [], f.numbers("after"), f.integer("cores"), f.need_flag("loaded"),
                   f.text("warning"))


@dataclass
class MemoryUse:
    """How each engine's peak memory was measured, and what a child process holds without any engine."""
    method: str | None
    baseline_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "baseline_bytes": self.baseline_bytes}

    @classmethod
    def from_json(cls, data: Any, at: str = "environment.memory") -> MemoryUse:
        f = _Fields(data, at)
        return cls(f.text("method"), f.integer("baseline_bytes"))


@dataclass
class Environment:
    """The machine the benchmark ran on. `memory` is None (and left out of the JSON) where peak memory was not
    measured; `load` is None only in a file upgraded from version 0."""
    host: str | None
    os: str | None
    python: str | None
    cpu: Cpu
    gpu: Gpu | None = None
    load: Load | None = None
    packages: dict[str, str | None] = field(default_factory=dict)  # installed versions, None: not installed
    memory: MemoryUse | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "os": self.os, "python": self.python, "cpu": self.cpu.to_json(),
                               "gpu": self.gpu.to_json() if self.gpu else None,
                               "load": self.load.to_json() if self.load else None, "packages": dict(self.packages)}
        if self.memory is not None:
            out["memory"] = self.memory.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any, at: str = "environment") -> Environment:
        f = _Fields(data, at)
        packages = f.mapping("packages") or {}
        bad = next((k for k, v in packages.items() if v is not None and not isinstance(v, str)), None)
        if bad is not None:
            raise MalformedResults(f"{f.path('packages')}.{bad}", "is not a version string or null")
        return cls(f.text("host"), f.text("os"), f.text("python"), f.need_record("cpu", Cpu.from_json),
                   f.record("gpu", Gpu.from_json), f.record("load", Load.from_json), packages,
                   f.record("memory", MemoryUse.from_json))


# ---- the model and the target --------------------------------------------------------------------------------------
@dataclass
class ModelInfo:
    """The model's facts at batch 1 (per item): parameters, MACs, FLOPs, whether it is a classifier, and its whole
    analysis."""
    name: str | None
    source: str | None = None
    params: int | None = None
    macs: int | None = None
    flops: int | None = None
    classifier: bool | None = None
    # `archc analyze --format json`: its schema's home is archc.analysis (Analysis.to_json / from_json), which the
    # report reads it with; kept as that JSON here, so this stage does not re-declare (or re-write) it
    analysis: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "params": self.params, "macs": self.macs,
                "flops": self.flops, "classifier": self.classifier, "analysis": self.analysis}

    @classmethod
    def from_json(cls, data: Any, at: str = "model") -> ModelInfo:
        f = _Fields(data, at)
        return cls(f.text("name"), f.text("source"), f.integer("params"), f.integer("macs"), f.integer("flops"),
                   f.flag("classifier"), f.mapping("analysis"))


@dataclass
class BenchTarget:
    """The target the packages were compiled for: its name and description."""
    name: str | None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description}

    @classmethod
    def from_json(cls, data: Any, at: str = "target") -> BenchTarget:
        f = _Fields(data, at)
        return cls(f.text("name"), f.text("description"))


# ---- one engine ----------------------------------------------------------------------------------------------------
@dataclass
class Stats:
    """Latency statistics in seconds (`archc.measurement.stats.summary`)."""
    min: float
    median: float
    mean: float
    p90: float
    p99: float
    std: float

    def to_json(self) -> dict[str, float]:
        return {"min": self.min, "median": self.median, "mean": self.mean, "p90": self.p90, "p99": self.p99,
                "std": self.std}

    @classmethod
    def from_json(cls, data: Any, at: str = "stats") -> Stats:
        f = _Fields(data, at)
        return cls(*(f.need_number(k) for k in ("min", "median", "mean", "p90", "p99", "std")))


@dataclass
class Agreement:
    """How far an engine's outputs are from onnxruntime's (`archc.measurement.stats.agreement`): the largest
    relative difference, and for a classifier the share of items whose top-1 class agrees. Both None for
    onnxruntime itself, and for outputs of another count or shape."""
    max_rel_diff: float | None = None
    top1: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"max_rel_diff": self.max_rel_diff, "top1": self.top1}

    @classmethod
    def from_json(cls, data: Any, at: str = "agreement") -> Agreement:
        f = _Fields(data, at)
        return cls(f.number("max_rel_diff"), f.number("top1"))


@dataclass
class Tuning:
    """An archc package's kernels and tuning (CPU targets): the trials measured (the build's short pass and the
    tuned variant's `archc tune`), kernels from the database and naive ones, the database, `archc tune`'s seconds.
    `kernels`, `kernels_archc` and `convolutions_searched` are None, and left out of the JSON, in files written
    before archc had its own kernels."""
    trials: int
    kernels_tuned: int
    kernels_naive: int
    database: str | None = None
    seconds: float | None = None
    kernels: str | None = None  # whose kernels: archc | tvm
    kernels_archc: int | None = None
    convolutions_searched: int | None = None

    _LATER = ("kernels", "kernels_archc", "convolutions_searched")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"trials": self.trials, "kernels_tuned": self.kernels_tuned,
                               "kernels_naive": self.kernels_naive, "database": self.database,
                               "seconds": self.seconds}
        out |= {k: getattr(self, k) for k in self._LATER if getattr(self, k) is not None}
        return out

    @classmethod
    def from_json(cls, data: Any, at: str = "tuning") -> Tuning:
        f = _Fields(data, at)
        return cls(f.need_integer("trials"), f.need_integer("kernels_tuned"), f.need_integer("kernels_naive"),
                   f.text("database"), f.number("seconds"), f.text("kernels"), f.integer("kernels_archc"),
                   f.integer("convolutions_searched"))


@dataclass
class Measurement:
    """One engine at one batch size: every sample (seconds, and when each started within the rounds), their
    statistics, throughput (items/s), achieved GFLOP/s, peak memory, the agreement with onnxruntime, and the
    build of this batch size's package (`compile_seconds`, `tuning`)."""
    batch: int
    threads: int | None  # None: timed on an RPC device, with its server's threads
    latency_s: list[float]
    stats: Stats | None
    throughput: float | None = None
    peak_memory_bytes: int | None = None
    gflops: float | None = None
    agreement: Agreement = field(default_factory=Agreement)
    sample_start_s: list[float] | None = None  # None: not timed in the alternating rounds (an RPC device, qemu)
    compile_seconds: float | None = None
    tuning: Tuning | None = None

    @property
    def median(self) -> float | None:
        """The median latency: the statistics', else the middle sample's, None without samples."""
        if self.stats is not None:
            return self.stats.median
        return sorted(self.latency_s)[len(self.latency_s) // 2] if self.latency_s else None

    def to_json(self) -> dict[str, Any]:
        return {"batch": self.batch, "threads": self.threads, "latency_s": list(self.latency_s),
                "stats": self.stats.to_json() if self.stats else None, "throughput": self.throughput,
                "peak_memory_bytes": self.peak_memory_bytes, "gflops": self.gflops,
                "agreement": self.agreement.to_json(),
                "sample_start_s": None if self.sample_start_s is None else list(self.sample_start_s),
                "compile_seconds": self.compile_seconds, "tuning": self.tuning.to_json() if self.tuning else None}

    @classmethod
    def from_json(cls, data: Any, at: str = "results[0]") -> Measurement:
        f = _Fields(data, at)
        return cls(f.need_integer("batch"), f.integer("threads"), f.numbers("latency_s") or [],
                   f.record("stats", Stats.from_json), f.number("throughput"), f.integer("peak_memory_bytes"),
                   f.number("gflops"), f.record("agreement", Agreement.from_json) or Agreement(),
                   f.numbers("sample_start_s"), f.number("compile_seconds"), f.record("tuning", Tuning.from_json))


STATUSES = ("ok", "absent", "error")


@dataclass
class EngineResult:
    """One engine (and archc variant) over every batch size: whether it ran (`status`: ok, absent or error; `note`:
    why it is absent, how it ran, why it failed), its version, its first batch size's build (`compile_seconds`,
    `tuning`), and a `Measurement` per batch size it was timed at."""
    engine: str
    variant: str | None = None  # archc's: untuned | default | tuned | package
    status: str = "ok"
    note: str | None = None
    version: str | None = None
    compile_seconds: float | None = None
    tuning: Tuning | None = None
    results: list[Measurement] = field(default_factory=list)
    precision: str | None = None  # archc's: the precision its package computes in (None in older files: fp32)

    @property
    def build(self) -> str:
        """The variant, with the precision where it is not fp32: "default", "default, bf16"."""
        return ", ".join(x for x in (self.variant, self.precision if self.precision != "fp32" else None) if x)

    @property
    def label(self) -> str:
        """"archc (untuned)", "archc (default, bf16)", "onnxruntime"."""
        return f"{self.engine} ({self.build})" if self.build else self.engine

    @property
    def ok(self) -> bool:
        """It ran, and was timed at a batch size at least."""
        return self.status == "ok" and bool(self.results)

    def at_batch(self, batch: int) -> Measurement | None:
        return next((m for m in self.results if m.batch == batch), None)

    def median_at(self, batch: int) -> float | None:
        m = self.at_batch(batch)
        return m.median if m is not None else None

    def to_json(self) -> dict[str, Any]:
        return {"engine": self.engine, "variant": self.variant, "status": self.status, "note": self.note,
                "version": self.version, "compile_seconds": self.compile_seconds,
                "tuning": self.tuning.to_json() if self.tuning else None,
                "results": [m.to_json() for m in self.results],
                **({"precision": self.precision} if self.precision else {})}

    @classmethod
    def from_json(cls, data: Any, at: str = "engines[0]") -> EngineResult:
        f = _Fields(data, at)
        status = f.need_text("status")
        if status not in STATUSES:
            raise MalformedResults(f.path("status"), f"is '{status}', not one of {', '.join(STATUSES)}")
        return cls(f.need_text("engine"), f.text("variant"), status, f.text("note"), f.text("version"),
                   f.number("compile_seconds"), f.record("tuning", Tuning.from_json),
                   f.records("results", Measurement.from_json) or [], f.text("precision"))


# ---- the per-kernel profile, the tuning curve, the settings ----------------------------------------------------
def _kernel_time(data: Any, at: str) -> KernelTime:
    f = _Fields(data, at)
    return KernelTime(f.need_text("name"), f.need_number("seconds"), f.integer("calls") or 1, f.texts("args") or [],
                      f.texts("nodes") or [], f.integer("macs"), f.text("vector"))


@dataclass
class BenchProfile:
    """`archc profile` of the best archc variant at the first batch size: its record (`archc.deploy.profile.Profile`,
    whose JSON is `archc profile --format json`'s, derived totals included), with the variant and batch."""
    profile: Profile
    variant: str | None
    batch: int

    def to_json(self) -> dict[str, Any]:
        return {**self.profile.to_json(), "variant": self.variant, "batch": self.batch}

    @classmethod
    def from_json(cls, data: Any, at: str = "profile") -> BenchProfile:
        f = _Fields(data, at)
        profile = Profile(f.need_text("package"), f.need_text("target"), f.records("kernels", _kernel_time) or [],
                          f.need_number("end_to_end_seconds"))
        return cls(profile, f.text("variant"), f.need_integer("batch"))


@dataclass
class TuningPoint:
    """A point of the tuning curve: after `trials` trials, the sum over the tuned kernels of their best times."""
    trials: int
    best_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"trials": self.trials, "best_seconds": self.best_seconds}

    @classmethod
    def from_json(cls, data: Any, at: str = "tuning_curve[0]") -> TuningPoint:
        f = _Fields(data, at)
        return cls(f.need_integer("trials"), f.need_number("best_seconds"))


@dataclass
class Settings:
    """What was asked for: batch sizes, threads, rounds (`repeat`) or a time budget (`seconds`), warm-up runs, the
    rounds each batch size got, engines, variants, the tuned variant's trials, the RPC device."""
    batches: list[int]
    threads: int | None
    repeat: int | None
    seconds: float | None
    warmup: int | None
    rounds: dict[str, int]  # batch size (as a JSON key) → rounds run
    engines: list[str]
    variants: list[str]
    trials: int | None = None
    rpc: str | None = None
    precisions: list[str] | None = None  # archc's packages' precisions (None in older files: fp32)
    keep_fp32: list[str] | None = None  # layers its bf16 builds computed in fp32 (--keep-fp32)

    def to_json(self) -> dict[str, Any]:
        return {"batches": list(self.batches), "threads": self.threads, "repeat": self.repeat,
                "seconds": self.seconds, "warmup": self.warmup, "rounds": dict(self.rounds),
                "engines": list(self.engines), "variants": list(self.variants), "trials": self.trials,
                "rpc": self.rpc} | ({"precisions": list(self.precisions)} if self.precisions else {}) | (
                    {"keep_fp32": list(self.keep_fp32)} if self.keep_fp32 else {})

    @classmethod
    def from_json(cls, data: Any, at: str = "settings") -> Settings:
        f = _Fields(data, at)
        rounds = f.mapping("rounds") or {}
        bad = next((k for k, v in rounds.items() if not _is_int(v)), None)
        if bad is not None:
            raise MalformedResults(f"{f.path('rounds')}.{bad}", "is not an integer")
        return cls(f.integers("batches") or [], f.integer("threads"), f.integer("repeat"), f.number("seconds"),
                   f.integer("warmup"), rounds, f.texts("engines") or [], f.texts("variants") or [],
                   f.integer("trials"), f.text("rpc"), f.texts("precisions"), f.texts("keep_fp32"))


# ---- the file --------------------------------------------------------------------------------------------------
@dataclass
class BenchResults:
    """Everything one `archc bench` run measured (schema_version 1). `settings` is None only in a file upgraded from
    version 0; `profile` None without an archc package profiled; `tuning_curve` None unless a variant was tuned."""
    created: str | None
    command: str | None
    environment: Environment
    model: ModelInfo
    target: BenchTarget
    engines: list[EngineResult]
    profile: BenchProfile | None = None
    tuning_curve: list[TuningPoint] | None = None
    settings: Settings | None = None

    @property
    def ok_engines(self) -> list[EngineResult]:
        """The engines that ran and were timed."""
        return [e for e in self.engines if e.ok]

    @property
    def reference(self) -> EngineResult | None:
        """onnxruntime's result: the reference every other engine is compared with."""
        return next((e for e in self.engines if e.engine == "onnxruntime"), None)

    @property
    def batches(self) -> list[int]:
        """The batch sizes some engine was timed at, smallest first."""
        return sorted({m.batch for e in self.ok_engines for m in e.results})

    @property
    def peak_gflops(self) -> float | None:
        """This machine's measured fp32 peak (the threads the benchmark used)."""
        return self.environment.cpu.peak_gflops

    def entry(self, engine: str, variant: str | None = None, precision: str | None = None) -> EngineResult | None:
        """The result of one engine (and archc variant, and precision where not fp32)."""
        return next((e for e in self.engines if e.engine == engine and e.variant == variant
                     and (e.precision or "fp32") == (precision or "fp32")), None)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": self.created, "command": self.command,
                "environment": self.environment.to_json(), "model": self.model.to_json(),
                "target": self.target.to_json(), "engines": [e.to_json() for e in self.engines],
                "profile": self.profile.to_json() if self.profile else None,
                "tuning_curve": None if self.tuning_curve is None else [p.to_json() for p in self.tuning_curve],
                "settings": self.settings.to_json() if self.settings else None}

    @classmethod
    def from_json(cls, data: Any, where: str = "the results") -> BenchResults:
        """Results of this schema version (`load` checks the schema and upgrades older versions first); a field
        that is missing or not of its type is one sentence naming it."""
        try:
            f = _Fields(data, "")
            return cls(f.text("created"), f.text("command"), f.need_record("environment", Environment.from_json),
                       f.need_record("model", ModelInfo.from_json), f.need_record("target", BenchTarget.from_json),
                       f.records("engines", EngineResult.from_json) or [], f.record("profile", BenchProfile.from_json),
                       f.records("tuning_curve", TuningPoint.from_json), f.record("settings", Settings.from_json))
        except MalformedResults as err:
            raise ArchcError(f"{where} is an archc bench results file whose field '{err.field}' {err.problem}; it is "
                             "cut short or was edited: run archc bench again", code="bad-results") from None


def write(results: BenchResults | dict[str, Any], path: str | Path) -> Path:
    """Save the results as JSON, atomically (a failed write leaves the old file, or none). Results as a dict (the
    JSON form `archc.api.bench` returns) are checked by `load` first."""
    from archc.util.atomic import write_text
    if not isinstance(results, BenchResults):
        results = load(results)
    path = Path(path)
    write_text(path, json.dumps(results.to_json(), indent=1, allow_nan=False) + "\n")
    return path


def read(path: str | Path) -> BenchResults:
    """A results file of this or an older known schema version, as schema_version 1; else one sentence."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ArchcError(f"cannot read benchmark results from '{path}': {err}", code="bad-results") from None
    return load(data, str(path))


def load(data: Any, where: str = "the results") -> BenchResults:
    """`read` for data already parsed."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ArchcError(f"{where} is not an archc bench results file (no schema_version); `archc bench -o` "
                         "writes one", code="bad-results")
    schema = data.get("schema", SCHEMA if data["schema_version"] == 0 else None)
    if schema != SCHEMA:
        raise ArchcError(f"{where} is not an archc bench results file (its schema is {schema!r}, not '{SCHEMA}')",
                         code="bad-results")
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ArchcError(f"{where} has an invalid schema_version {version!r}", code="bad-results")
    if version > SCHEMA_VERSION:
        raise ArchcError(f"{where} is an archc bench results file of schema_version {version}, and this archc "
                         f"reads versions up to {SCHEMA_VERSION}: upgrade archc to read it", code="results-too-new")
    while version < SCHEMA_VERSION:
        data = UPGRADES[version](data)
        version = data["schema_version"]
    missing = [k for k in ("environment", "model", "target", "engines") if k not in data]
    if missing:
        raise ArchcError(f"{where} is an archc bench results file without '{missing[0]}'; it is cut short or was "
                         "edited: run archc bench again", code="bad-results")
    return BenchResults.from_json(data, where)


def _upgrade_0(old: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (the pre-release layout, see the module doc) → version 1: what version 0 lacks is null."""
    from archc.measurement.stats import summary
    model = dict(old.get("model") or {})
    flops = model.get("flops")
    engines = []
    for e in old.get("engines", []):
        engine, _, variant = str(e.get("name", "")).partition(" ")
        results = []
        for r in e.get("results", []):
            latencies = [float(ms) / 1e3 for ms in r.get("latency_ms", [])]
            stats = summary(latencies) if latencies else None
            batch = int(r.get("batch", 1))
            median = stats.median if stats else None
            results.append({
                "batch": batch, "threads": r.get("threads"), "latency_s": latencies,
                "stats": stats.to_json() if stats else None,
                "throughput": batch / median if median else None, "peak_memory_bytes": None,
                "gflops": flops * batch / median / 1e9 if flops and median else None,
                "agreement": {"max_rel_diff": r.get("max_rel_diff"), "top1": None},
                "sample_start_s": None, "compile_seconds": None, "tuning": None})
        engines.append({"engine": engine, "variant": variant or None, "status": "ok" if results else "absent",
                        "note": e.get("note"), "version": e.get("version"), "compile_seconds": e.get("build_seconds"),
                        "tuning": None, "results": results})
    env = old.get("environment") or {}
    return {
        "schema": SCHEMA, "schema_version": 1, "created": old.get("created"), "command": old.get("command"),
        "environment": {"host": env.get("host"), "os": None, "python": None,
                        "cpu": {"model": env.get("cpu"), "llvm_cpu": None, "flags": [], "physical_cores": None,
                                "logical_cpus": None, "peak_gflops": None, "peak_method": None,
                                "bandwidth_gbs": None, "bandwidth_method": None},
                        "gpu": None, "load": None, "packages": {}},
        "model": {"name": model.get("name"), "source": model.get("source"), "params": model.get("params"),
                  "macs": model.get("macs"), "flops": flops, "classifier": None, "analysis": None},
        "target": {"name": old.get("target"), "description": None},
        "engines": engines, "profile": None, "tuning_curve": None, "settings": None,
    }


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _upgrade_0}
