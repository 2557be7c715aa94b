"""MetaSchedule tuning: a database of tuned kernels per target, grown by `archc tune`, applied by every compile.

The module is prepared once the same way for tuning and for applying (inference decompositions, legalization,
operator fusion: `prepare`), because a database only applies to the fused kernels it was tuned on; otherwise every
record misses in silence and the build is untuned (../shared/NOTES.md). The budget is spread so that every task gets
trials in each round (never the pitfall of 64 trials per task per round, which leaves later tasks with none), and
the builder skips the stock one's re-import of the tensor intrinsics (10–17 s per batch) for CPU targets, which
use none. Records are appended as they are measured: an interrupted run keeps every finished one, and the next run
resumes from them.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import tvm
import tvm.s_tir
from tvm import relax, tirx
from tvm.driver import build as tvm_build
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.measure_callback.measure_callback import _PyMeasureCallback
from tvm.s_tir.meta_schedule.utils import fork_seed
from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

from archc.errors import ArchcError, UsageError
from archc.lower import vector_math
from archc.runtime import last_line
from archc.runtime.rpc import Remote, check
from archc.targets import Target
from archc.util.machine import archc_cache
from archc.util.progress import progress

STAMP = "archc-database.json"  # which TVM wrote the records: another TVM's records would not apply


def default_db(target: Target) -> Path:
    """The database of a target: one folder per target under archc's private cache folder (util.machine.archc_cache:
    its records shape the code compiled from them, and name the layers of the models tuned)."""
    return archc_cache() / "tuning" / target.name


def prepare(mod: Any, tgt: Any, kernels: str = "tvm", plans: list[Any] | None = None,
            precision: str = "fp32", half_cost: float | None = None, keep_fp32: Sequence[Any] = ()) -> Any:
    """The fused module that tuning and applying both see; with `kernels="archc"` on a CPU target, archc's layout
    plan first (lower/kernels: its convolutions then fuse with their epilogues like TVM's own; in bf16 on AMX
    where `precision` says so), appended to `plans` when given; `half_cost`, `keep_fp32`: kernels.plan's."""
    if kernels == "archc" and str(tgt.kind) == "llvm":
        from archc.lower.kernels import plan
        mod, made = plan(mod, tgt, precision, half_cost, keep_fp32)
        if plans is not None:
            plans.append(made)
    with tgt:
        return tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            relax.get_pipeline("zero"),
        ])(mod)


@dataclass
class TuneSummary:
    tasks: int
    trials: int  # measured in this run
    records: int  # MetaSchedule's, in the database after the run
    conv_records: int = 0  # convolution configurations (archc's kernels) in the database after the run
    failed: int = 0  # trials that did not build or run (a bad board, a broken candidate)
    searched: int = 0  # convolutions whose configuration archc's own search measured in this run


def tasks_of(mod: Any, tgt: Any) -> list[Any]:
    """MetaSchedule's tasks: the kernels not already scheduled (by archc's own kernels)."""
    scheduled = {gv.name_hint for gv, f in mod.functions.items()
                 if isinstance(f, tirx.PrimFunc) and f.attrs is not None and "tirx.is_scheduled" in f.attrs}
    return [t for t in ms.relax_integration.extract_tasks(mod, tgt, params={}) if t.task_name not in scheduled]


def _build(mod: Any, target: Any, _params: Any) -> Any:
    """The stock builder less its import of every tensor intrinsic, which CPU fp32 kernels never use; with the
    vector math the package's build uses (run in MetaSchedule's builder processes)."""
    vector_math.install()
    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


@dataclass(frozen=True)
class Budget:
    """How much tuning: `trials` measurements, `seconds` of wall time, or whichever ends first."""
    trials: int = 0
    seconds: float | None = None

    @classmethod
    def of(cls, trials: int = 0, minutes: float | None = None) -> Budget:
        if trials < 0 or (minutes is not None and minutes <= 0) or not (trials or minutes):
            raise UsageError("tuning needs a budget: --trials N (at least 1) and/or --minutes M (more than 0)",
                             code="bad-option")
        return cls(trials, minutes * 60 if minutes else None)


# MetaSchedule's messages go to one logger of archc's, silent unless the user's logging shows WARNING or finer
_LOG = logging.getLogger("archc.tune")
_LOG.addHandler(logging.NullHandler())


def _cpu_tensor_intrinsics() -> None:
    """A TuneContext imports `tvm.s_tir.tensor_intrin`, whose `__init__` registers the tensor intrinsics of every
    target (CUDA's, ROCm's, Hexagon's, ...), parsing each with TVMScript: 12-25 s of every `archc tune` and of every
    build's short pass, measured here. CPU tuning needs the CPU ones only (x86's and Arm's, which the default x86
    and Arm schedule rules name), so the package is entered without its `__init__` and those two are registered;
    the other submodules still import as usual where something asks for them (dlight asks for CUDA's by name)."""
    import importlib
    import importlib.util
    import sys
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    tvm.s_tir.tensor_intrin = package
    for submodule in ("x86", "arm_cpu"):
        importlib.import_module(f"{name}.{submodule}")


def population(per_round: int) -> int:
    """The evolutionary search's population for `per_round` trials a kernel a round: 8 candidates a trial (at least
    32), MetaSchedule's own 512 from 64 a round. Evolving 512 candidates to measure the best two cost 15 s of a
    1-trial tuning run here, against 3 s with 32 (a build's short pass measures two); a time budget's rounds of 8
    evolve 64."""
    return min(512, max(32, 8 * per_round))


def _contexts(tasks: list[Any], per_round: int) -> tuple[list[Any], list[float]]:
    """One TuneContext per task, as `ms.relax_integration.extracted_tasks_to_tune_contexts` makes them but with
    archc's logger and a population sized to the budget. Its own loggers come from `logging.config.dictConfig`,
    which resets the whole process's logging on every call (closing every handler, pytest's included) and leaves a
    console and a file handler per task open; under pytest's log capture the second tuning run in a process then
    failed inside TVM (issue 20)."""
    size = population(per_round)
    contexts = [ms.TuneContext(mod=t.dispatched[0], target=t.target, space_generator="post-order-apply",
                               search_strategy=ms.search_strategy.EvolutionarySearch(
                                   population_size=size, init_min_unmeasured=min(50, size)),
                               task_name=t.task_name, logger=_LOG,
                               rand_state=seed, num_threads="physical").clone()
                for t, seed in zip(tasks, fork_seed(None, n=len(tasks)), strict=True)]
    return contexts, [float(t.weight) for t in tasks]


class _OutOfTime(Exception):
    """Raised from the measure callback once the time budget is spent: MetaSchedule stops after that batch."""


MINUTES_ROUND = 8  # trials per kernel per round when only a time budget is given


def tune(mod: Any, tgt: Any, target: Target, db: Path, budget: Budget, show: bool = False,
         only: set[str] | None = None, remote: Remote | None = None) -> TuneSummary:
    """Spend the budget over the prepared module's tasks (or the kernels named in `only`), every task getting its
    share each round; a time budget stops after the batch in flight when it runs out. `remote`: measure on the
    devices of an RPC tracker (kernels built here, with the target's cross compiler if it has one).
    `show`: a progress bar on stderr (trials, kernels covered, time left)."""
    check_db(db)
    db.mkdir(parents=True, exist_ok=True)
    _stamp(db, target)
    tasks = [t for t in tasks_of(mod, tgt) if only is None or t.task_name in only]
    if not tasks:
        return TuneSummary(0, 0, records(db), conv_records=conv_records(db))
    with locked(db):
        summary = _tune(tasks, tgt, target, db, budget, show, remote)
    return replace(summary, records=records(db), conv_records=conv_records(db))


def spread(trials: int, tasks: int) -> tuple[int, int]:
    """(trials per round per task, trials per task at most) for a budget of `trials` over `tasks` kernels: every
    kernel gets its share each round, and the shares add up to the budget (the remainder is spread, not dropped:
    16 trials over 9 kernels are 16, not 9)."""
    return max(1, min(64, trials // tasks)), max(1, -(-trials // tasks))


def _tune(tasks: list[Any], tgt: Any, target: Target, db: Path, budget: Budget, show: bool,
          remote: Remote | None) -> TuneSummary:
    trials, seconds = budget.trials, budget.seconds
    limit = trials or 1_000_000  # a time budget alone: trials without end, stopped by the clock
    per_round, per_task = spread(trials, len(tasks)) if trials else (MINUTES_ROUND, limit)
    if target.runner != "local" and remote is None:
        raise UsageError(f"tuning for '{target.name}' measures kernels on the device itself: give --rpc HOST:PORT "
                         "--rpc-key KEY of a tracker it is registered with (README: remote boards)", code="needs-rpc")
    runner: Any = _local_runner()
    if remote is not None:
        runner = ms.runner.RPCRunner(
            rpc_config=ms.runner.RPCConfig(remote.host, remote.port, remote.key, session_timeout_sec=120),
            evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, enable_cpu_cache_flush=False))
        check(remote)  # one sentence now if there is no tracker or no device, not a failure per trial
    covered: set[int] = set()
    done = [0]
    errors: list[str] = []
    best: dict[int, float] = {}  # task → its fastest measured candidate, seconds
    deadline = time.monotonic() + seconds if seconds else None
    with progress(trials or None, "tuning", enabled=show) as advance:
        def measured(_scheduler: Any, task_id: int, candidates: Any, built: Any, results: Any) -> None:
            covered.add(int(task_id))
            for b, r in zip(built, results, strict=False):
                done[0] += 1
                error = b.error_msg or r.error_msg
                if error:
                    errors.append(str(error))
                elif r.run_secs:
                    seconds_now = sum(float(t) for t in r.run_secs) / len(r.run_secs)
                    best[int(task_id)] = min(best.get(int(task_id), seconds_now), seconds_now)
                left = f", {max(0, deadline - time.monotonic()) / 60:.1f} min left" if deadline else ""
                # the best kernels found so far, each as often as the model calls it: an estimate of the model's time
                estimate = sum(best[i] * tasks[i].weight for i in best)
                advance(f"tuning: {len(covered)}/{len(tasks)} kernels, best {estimate * 1e3:.2f} ms "
                        f"(measured kernels){left}")
            if deadline and time.monotonic() >= deadline:
                raise _OutOfTime
        callbacks = [*ms.measure_callback.MeasureCallback.create("default"), _PyMeasureCallback(measured)]
        if str(tgt.kind) == "llvm":
            _cpu_tensor_intrinsics()
        contexts, weights = _contexts(tasks, per_round)
        candidates = tempfile.mkdtemp(prefix="archc-candidates-")
        builder = _Builder(f_build=_build, f_export=partial(_export, target.cross_compiler, candidates)
                           ) if target.tvm.get("kind") != "cuda" else "local"
        try:
            ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(db), max_trials_global=limit,
                               max_trials_per_task=per_task,
                               num_trials_per_iter=per_round, builder=builder, runner=runner,
                               measure_callbacks=callbacks)
        except Exception:  # the callback's _OutOfTime arrives re-raised through TVM's FFI as another type
            if not (deadline and time.monotonic() >= deadline):
                raise
        finally:
            if isinstance(builder, _Builder):
                builder.close()
            shutil.rmtree(candidates, ignore_errors=True)
    if done[0] and len(errors) == done[0]:  # every measurement failed: the records hold no times, say why
        raise ArchcError(f"every tuning trial failed ({last_line(errors[0], 'no message', 300)}); check the device"
                         + (f" {remote}" if remote else "") + " and the target", code="tuning-failed")
    return TuneSummary(len(tasks), done[0], 0, len(errors))



@derived_object
class _Builder(ms.builder.LocalBuilder._cls):
    """MetaSchedule's local builder with its worker processes kept for a run's batches: the stock one starts new
    workers for every batch (MetaSchedule measures a batch per kernel per round) and once more to check the build
    functions, each worker importing TVM first (3 s, twice the time of a 6-trial run of 4 kernels). It still
    starts them anew after `RESTART` batches, against the leak the stock builder's comment names. No start-up
    check: archc hands it its functions, not names to look up."""

    RESTART = 16

    def _sanity_check(self) -> None:
        self._workers: Any = None
        self._batches = 0

    def build(self, build_inputs: list[Any]) -> list[Any]:
        from tvm.s_tir.meta_schedule.builder import local_builder
        from tvm.support.popen_pool import PopenPoolExecutor, StatusKind
        if self._workers is None or self._batches >= self.RESTART:
            self.close()
            self._workers = PopenPoolExecutor(max_workers=self.max_workers, timeout=self.timeout_sec,
                                              initializer=self.initializer)
        self._batches += 1
        jobs = [(self.f_build, self.f_export, b.mod, b.target, local_builder._serialize_params(b.params))
                for b in build_inputs]
        results = []
        for done in self._workers.map_with_error_catching(lambda job: local_builder._worker_func(*job), jobs):
            if done.status == StatusKind.COMPLETE:
                results.append(ms.builder.BuilderResult(done.value, None))
            elif done.status == StatusKind.TIMEOUT:
                results.append(ms.builder.BuilderResult(None, f"LocalBuilder: Timeout, killed after "
                                                              f"{self.timeout_sec} seconds"))
            else:
                results.append(ms.builder.BuilderResult(None, f"LocalBuilder: An exception occurred\n{done.value}"))
        return results

    def close(self) -> None:
        if self._workers is not None:
            self._workers.shutdown()
        self._workers, self._batches = None, 0


_RUNNERS: dict[frozenset[tuple[str, str]], Any] = {}


def _local_runner() -> Any:
    """MetaSchedule's local runner, one a process while the environment its worker started in holds (its worker
    imports TVM: 3 s of every tuning run otherwise, each build's short pass and each model a bench tunes)."""
    key = frozenset(os.environ.items())
    if key not in _RUNNERS:
        _RUNNERS.clear()
        _RUNNERS[key] = ms.runner.LocalRunner()
    return _RUNNERS[key]


def _export(compiler: str | None, folder: str, mod: Any) -> str:
    """A measured candidate as a shared library (the target's cross compiler for a board), ready to upload: the
    stock export writes a tar that the device would have to link itself. Linked with archc's parallel runtime, as
    the package will be, so that what is measured is what ships. Each in its own folder of the run's `folder`:
    MetaSchedule removes a candidate's folder once measured, the run removes the rest (an interrupted or timed-out
    run's last batch)."""
    from archc.lower import link
    path = str(Path(tempfile.mkdtemp(dir=folder)) / "candidate.so")
    mod.export_library(path, fcompile=link.fcompile(compiler))
    return path


LOCK = "archc-tuning.lock"


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """One writer per tuning database: a second `archc tune` (or a build's short pass, or a search of convolution
    configurations) on the same database waits for the first and says so once; two at once would measure under each
    other's load, repeat each other's searches, and the last writer of a file would win."""
    import fcntl
    import sys
    db.mkdir(parents=True, exist_ok=True)
    fd = os.open(db / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            print(f"archc: waiting for the tuning database '{db}', in use by {holder}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({' '.join(os.path.basename(a) for a in sys.argv[:2])})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def conv_records(db: Path) -> int:
    """The convolution configurations archc's search recorded in the database (every CPU's)."""
    from archc.lower.kernels.search import RECORDS, _read
    return sum(len(v) for v in _read(db / RECORDS).values() if isinstance(v, dict))


def records(db: Path) -> int:
    """MetaSchedule's tuning records in the database."""
    path = db / "database_tuning_record.json"
    return sum(1 for _ in path.open()) if path.is_file() else 0


def apply(mod: Any, tgt: Any, db: Path) -> tuple[Any, int, set[str]]:
    """The prepared module with every kernel the database has a record for; (module, applied, names untuned)."""
    before = {gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}
    if records(db):
        check_db(db)
        try:
            with tgt:
                mod = relax.transform.MetaScheduleApplyDatabase(str(db))(mod)
        except Exception as err:  # a record file cut short or edited by hand
            why = last_line(str(err), type(err).__name__)
            raise ArchcError(f"the tuning database '{db}' cannot be read ({why}); delete it or give another --db",
                             code="bad-database") from None
    scheduled = {gv.name_hint for gv, f in mod.functions.items()
                 if isinstance(f, tirx.PrimFunc) and f.attrs is not None and "tirx.is_scheduled" in f.attrs}
    return mod, len(scheduled & before), before - scheduled


def check_db(db: Path) -> None:
    """Refuse a database another TVM wrote: its workloads would not match this TVM's kernels, or not parse."""
    stamp = db / STAMP
    if not stamp.is_file():
        return  # new, or written before archc stamped databases
    try:
        wrote = json.loads(stamp.read_text(encoding="utf-8"))["tvm_version"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ArchcError(f"the tuning database '{db}' has a corrupt {STAMP}; delete the folder or give another "
                         "--db", code="bad-database") from None
    if wrote != tvm.__version__:
        raise ArchcError(f"the tuning database '{db}' was written by TVM {wrote} and this is TVM {tvm.__version__}, "
                         "whose kernels its records would not match; give a new --db (or delete the folder) and "
                         "tune again", code="database-other-tvm")


def _stamp(db: Path, target: Target) -> None:

    from archc.util.atomic import write_text
    from archc.version import __version__
    if not (db / STAMP).is_file():
        write_text(db / STAMP, json.dumps({"tvm_version": tvm.__version__, "archc_version": __version__,
                                                  "target": target.name}, indent=2) + "\n")
