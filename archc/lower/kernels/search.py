"""Which configuration each convolution gets, and the small per-layer search that finds it.

A kernel's free parameters are few (conv2d.Config: register tile along the row, channel blocks in the tile, kw
loop order, padding in place or copied), so the search is a grid of a few dozen points, each built and timed on the
convolution alone: seconds per layer. The choice for a convolution is, in order:

1. its record in the tuning database's `archc-kernels.json`, keyed by (target CPU, workload) — written by a search;
2. the shipped tables of the target's vector ISA (`tables/<isa>/<cpu>.json`, made by `benchmarks/kernel_table.py`
   over every convolution shape of the zoo on a CPU LLVM calls <cpu>), so that a plain compile is fast to run
   without any tuning: the target CPU's own table first, then the nearest (same vendor first, `tables_for`);
3. for a shape no table holds, the tables' nearest entries' choice (predict.py); a compile with its short pass
   (`quick`, the default) first measures the likeliest few of those (`QUICK_CANDIDATES`, about a second each)
   and records the fastest in the database, so the next compile for this CPU takes it from there;
4. the rule (`grid.rule`; the grid a search measures is `grid.candidates`), only where the ISA has no table at
   all (NEON).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import tvm
from tvm import s_tir, te

from archc.lower import vector_math
from archc.lower.kernels import predict
from archc.lower.kernels.conv2d import Config, Workload
from archc.lower.kernels.grid import candidates, rule
from archc.util.progress import progress

RECORDS = "archc-kernels.json"
QUICK_CANDIDATES = 4  # measured on first compile for a shape no table holds: the tables' four likeliest
TABLES = Path(__file__).with_name("tables")


def isa(lanes: int, tgt: Any) -> str:
    if "aarch64" in str(tgt.attrs.get("mtriple", "")):
        return "neon"
    return "avx512" if lanes == 16 else "avx2"


def cpu_key(tgt: Any) -> str:
    return str(tgt.attrs.get("mcpu", "") or "generic")


def vendor(cpu: str) -> str:
    """Who makes an LLVM CPU name's design: the nearest table is one of the same vendor."""
    if cpu.startswith(("znver", "bdver", "btver", "amdfam")):
        return "amd"
    if cpu.startswith(("cortex", "neoverse", "apple", "ampere", "a64fx", "thunderx")):
        return "arm"
    return "intel"


def tables_for(isa_name: str, cpu: str) -> list[Path]:
    """The shipped tables of an ISA in the order they are asked: the CPU's own (searched on a CPU LLVM calls by
    that name), then those of the same vendor, then the rest (each group by name). Register tiles carry over
    between CPUs of one ISA; which one is fastest shifts with the caches and the core (the five models' AVX-512
    tables of AMD Zen 5 and an Intel Xeon differ in 255 of their 440 shared entries)."""
    tables = sorted((TABLES / isa_name).glob("*.json"))
    return sorted(tables, key=lambda p: (p.stem != cpu, vendor(p.stem) != vendor(cpu), p.stem))


def out_size(key: str) -> tuple[int, int]:
    return Workload.parse(key).out_size


def build(key: str, config: Config, tgt: Any) -> Any:
    """The convolution of `key` alone, scheduled with `config`, compiled for `tgt` (a runtime module, "k") and
    linked with archc's parallel runtime as a package is: TVM's own pool, which an in-memory build would use, runs
    half the CPUs on x86 (it takes every other one for a hyper-thread), so on this 2-vCPU VM the searches behind
    the first tables timed one thread while the packages run two (VGG-16's conv4_2: 14.7 against 8.1 ms)."""
    return build_all({"k": (key, config)}, tgt)


def build_all(kernels: dict[str, tuple[str, Config]], tgt: Any) -> Any:
    """Several convolutions in one library, each under its name: one compile and link for all (a check of a whole
    table spends its time in the per-library steps otherwise)."""
    import tempfile

    from archc.lower import link
    from archc.lower.kernels import conv2d
    funcs = {}
    for name, (key, config) in kernels.items():
        sch = s_tir.Schedule(te.create_prim_func(list(_tensors(Workload.parse(key), tgt))))
        conv2d.schedule(sch, config)
        funcs[name] = sch.mod["main"].with_attr("global_symbol", name)
    vector_math.install()
    lib = tvm.tirx.build(tvm.IRModule(funcs), target=tgt)
    with tempfile.TemporaryDirectory(prefix="archc-kernel-") as work:
        path = str(Path(work) / "k.so")
        lib.export_library(path, fcompile=link.fcompile(None))
        return tvm.runtime.load_module(path)  # loaded: the file may go


def _tensors(w: Workload, tgt: Any) -> tuple[Any, Any, Any]:
    """The kernel's input, weights and output, as a model's kernel has them: float32; for the bf16 (int8) kernel
    its input already padded, as bf16 bits (uint8), and its weights packed in pairs of bf16 bits (quadruples of
    int8): conv2d.compute_bf16, compute_int8."""
    from archc.lower.kernels import conv2d, dpbf16, steps, vnni
    if w.step in (conv2d.BF16, conv2d.INT8):
        bf16 = w.step == conv2d.BF16
        step, dtypes = (dpbf16.PAIR, (dpbf16.BITS,) * 2) if bf16 else (vnni.QUAD, ("uint8", "int8"))
        # the padded input's shape (pad_int8's is pad_bf16's)
        padded = conv2d.pad_bf16(te.placeholder(w.data, name="x"), w.kernel, w.strides, w.padding, w.dilation)
        data = te.placeholder(tuple(int(d) for d in padded.shape), dtypes[0], name="data")
        occ, icc, kh, kw, ic_bn, oc_bn = w.weight
        weight = te.placeholder((occ, icc, kh, kw, ic_bn // step, oc_bn, step), dtypes[1], name="weight")
        if bf16:  # the steps of this target (an AMX CPU's blocked bf16 kernel takes its AVX512-BF16 ones)
            unit = steps.bf16_unit(tgt)
            return data, weight, conv2d.compute_bf16(data, weight, w.strides, w.padding, w.dilation, w.data,
                                                     "avx512bf16" if unit == "amx" else unit)
        return data, weight, conv2d.compute_int8(data, weight, w.strides, w.padding, w.dilation, w.data,
                                                 steps.int8_unit(tgt))
    data = te.placeholder(w.data, name="data")
    weight = te.placeholder(w.weight, name="weight")
    make = conv2d.compute_depthwise if w.depthwise else conv2d.compute
    return data, weight, make(data, weight, w.strides, w.padding, w.dilation, "float32")


def measure(key: str, config: Config, tgt: Any, budget: float = 0.05) -> float:
    """Seconds per run of the convolution with `config`, its weights and output flushed from the caches before
    each run and its input left in them, as in a model (the previous layer just wrote the input; the weights come
    from memory): on ResNet-18's 7×7 layers the fastest configuration with cached weights was 7% slower than
    another one with the weights cold. The best of a few repeats: the least disturbed by a shared machine."""
    import ml_dtypes
    import numpy as np
    lib = build(key, config, tgt)
    rng = np.random.default_rng(0)

    def values(t: Any) -> Any:
        shape, dtype = [int(d) for d in t.shape], str(t.dtype)
        if dtype in ("uint8", "int8"):  # the int8 kernel's: any value of the type
            return rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
        x = rng.standard_normal(shape).astype("float32")
        return x.astype(ml_dtypes.bfloat16).view(np.uint16) if dtype == "uint16" else x.astype(dtype)

    args = [tvm.runtime.tensor(values(t)) for t in _tensors(Workload.parse(key), tgt)]
    once = lib.time_evaluator("k", tvm.cpu(), number=1, repeat=1)(*args).mean
    repeat = int(min(10, max(2, budget / max(once, 1e-6))))  # a long layer (tens of ms) is steady in two runs
    timer = lib.time_evaluator("k", tvm.cpu(), number=1, repeat=repeat, f_preproc="cache_flush_cpu_non_first_arg")
    return float(min(timer(*args).results))


def search(key: str, lanes: int, tgt: Any, configs: list[Config] | None = None) -> tuple[Config, float]:
    """The fastest of `configs` (default: the whole grid) for this convolution, and its seconds."""
    best: tuple[Config, float] | None = None
    for config in configs or candidates(key, lanes):
        seconds = measure(key, config, tgt)
        if best is None or seconds < best[1]:
            best = (config, seconds)
    assert best is not None
    return best


class Choices:
    """The configurations for one build: database records, then the shipped tables, then the tables' prediction
    (the rule where the ISA has none); `search` fills in (and records) the workloads it is given."""

    def __init__(self, tgt: Any, lanes: int, db: Path | None) -> None:
        self.tgt, self.lanes, self.db = tgt, lanes, db
        self.cpu = cpu_key(tgt)
        self.records = _read(db / RECORDS).get(self.cpu, {}) if db else {}
        self.tables = {p.stem: _read(p) for p in tables_for(isa(lanes, tgt), self.cpu)}
        self.sources: dict[str, str] = {}  # workload → where its configuration came from
        self.tables_used: set[str] = set()

    def _recorded(self, key: str) -> tuple[Config, str, str | None] | None:
        """The workload's configuration from the database or a table, where it came from, and which table."""
        if key in self.records:
            return (Config.from_record(self.records[key]),
                    "short search" if self.records[key].get("grid") == "quick" else "searched", None)
        return next(((Config.from_record(table[key]), "shipped", cpu) for cpu, table in self.tables.items()
                     if key in table), None)

    def _known(self, key: str) -> tuple[Config, str, str | None] | None:
        """`_recorded`, for a bf16 or int8 kernel's workload with none of its own its shape's float32 one."""
        found = self._recorded(key)
        if found is None and ":" in key:
            found = self._recorded(Workload.parse(key).float32.key)
        return found

    def config(self, key: str) -> Config:
        known = self._known(key)
        if known is not None:
            config, self.sources[key], cpu = known
            self.tables_used.update([cpu] if cpu else [])
            return config
        likely = predict.ranked(key, self.lanes, self.tables.values())
        self.sources[key] = "predicted" if likely else "rule"
        self.tables_used.update(self.tables if likely else ())  # predicted from their entries
        return likely[0] if likely else rule(key, self.lanes)

    def unknown(self, keys: list[str]) -> list[str]:
        """The workloads of `keys` that neither the database nor a table holds (each once)."""
        return [k for k in dict.fromkeys(keys) if self._known(k) is None]

    def table_note(self) -> str | None:
        """Which shipped tables gave configurations ("table avx512/rocketlake"), said where the target CPU has
        none of its own ("no avx512 table for sapphirerapids: avx512/rocketlake (nearest first)"); None where none
        did."""
        if not self.tables_used:
            return None
        name = isa(self.lanes, self.tgt)
        used = ", ".join(f"{name}/{t}" for t in sorted(self.tables_used, key=list(self.tables).index))
        if self.cpu not in self.tables:
            return f"no {name} table for {self.cpu}: {used} (nearest first)"
        return f"table {used}" if self.tables_used == {self.cpu} else f"tables {used} (nearest first)"

    def search(self, keys: list[str], show: bool = False, quick: bool = False) -> int:
        """Search every workload without a database record over the whole grid (a record of a quick search is
        searched again); with `quick`, only the workloads no table holds, over their likeliest few
        configurations. Returns how many were searched."""
        def todo() -> list[str]:
            if quick:
                return self.unknown(keys)
            return [k for k in dict.fromkeys(keys) if self.records.get(k, {"grid": "quick"}).get("grid") == "quick"]
        if not todo():
            return 0
        if self.db is not None:  # one searcher per database: wait for another, then skip what it found
            from archc.lower.tune import locked
            with locked(self.db):
                self.records = {**_read(self.db / RECORDS).get(self.cpu, {}), **self.records}
                return self._search(todo(), show, quick)
        return self._search(todo(), show, quick)

    def _search(self, todo: list[str], show: bool, quick: bool) -> int:
        what = "measuring the likeliest configurations of new convolution shapes" if quick else \
            "searching kernel configurations"
        done = 0
        with progress(len(todo), what, enabled=show and bool(todo)) as advance:
            for key in todo:
                start = time.perf_counter()
                likely = predict.ranked(key, self.lanes, self.tables.values())[:QUICK_CANDIDATES] if quick else None
                if quick and not likely:  # no table to predict from (NEON): the rule, unmeasured
                    advance()
                    continue
                config, seconds = search(key, self.lanes, self.tgt, likely)
                self.records[key] = {**config.record(), "seconds": seconds, "grid": "quick" if quick else "whole",
                                     "search_seconds": round(time.perf_counter() - start, 2)}
                done += 1
                if self.db:
                    self._save()
                advance()
        return done

    def _save(self) -> None:
        from archc.util.atomic import write_text
        assert self.db is not None
        path = self.db / RECORDS
        everything = _read(path)
        everything[self.cpu] = {**everything.get(self.cpu, {}), **self.records}
        write_text(path, json.dumps(everything, indent=1, sort_keys=True) + "\n")


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        from archc.errors import ArchcError
        raise ArchcError(f"'{path}' is not valid JSON; delete it (archc searches again)",
                         code="bad-database") from None
    return data if isinstance(data, dict) else {}
