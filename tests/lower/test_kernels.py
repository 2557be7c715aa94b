"""archc's own CPU kernels (archc/lower/kernels) against onnxruntime: every convolution shape of the zoo with its
shipped configuration, the configuration grid on a few shapes, and the layout plan on whole models.

Each kernel is built alone from its workload key (blocked data and packed weights, as a package holds them) and
compared with onnxruntime's Conv on the same numbers in NCHW/OIHW: rtol 1e-4 of the output's range (fp32 sums of
up to 4,608 products in another order)."""
from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, compile_verified, cover, native_isa, onnxruntime_outputs, raises, skip_unless_runs

import archc
from archc.runtime import load_package

pytestmark = [pytest.mark.tvm]
SPECS = Path(__file__).resolve().parents[2] / "specs"


def _tables() -> dict[str, dict[str, dict]]:
    """Every shipped table, by "isa/cpu"."""
    from archc.lower.kernels.search import TABLES
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text()) for p in sorted(TABLES.glob("*/*.json"))}


def _tgt(isa: str):
    from archc import targets
    from archc.lower.tvm_target import tvm_target
    return tvm_target(targets.get({"avx512": "x86-avx512", "avx2": "x86"}[isa]))


def _onnx_conv(key: str):
    """The workload as a one-Conv ONNX model in NCHW/OIHW, and unblock/block helpers."""
    import onnx
    from onnx import helper

    from archc.lower.kernels.conv2d import Workload
    wl = Workload.parse(key)
    n, _, h, w, _ = wl.data
    channels, out, groups = wl.channels, wl.out_channels, wl.groups  # grouped: fewer channels in the weight
    oh, ow = wl.out_size
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=list(wl.strides), dilations=list(wl.dilation),
                            pads=list(wl.padding), group=groups, kernel_shape=list(wl.kernel))
    graph = helper.make_graph([node], "conv", [
        helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [n, channels, h, w]),
        helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [out, channels // groups, *wl.kernel])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [n, out, oh, ow])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), groups


@functools.lru_cache(maxsize=1)  # the tables' entries come sorted by workload: one workload's configurations in a row
def _case(key: str, tmp_path: Path) -> tuple[list, np.ndarray]:
    """The blocked arguments of `key`'s kernel (random data and weights, a zero output) and onnxruntime's Conv of
    the same numbers."""
    import tvm

    from archc.lower.kernels.conv2d import Workload
    wl = Workload.parse(key)
    n, icc, h, w, ib = wl.data
    occ, wic, kh, kw, wib, ob = wl.weight
    model, groups = _onnx_conv(key)
    rng = np.random.default_rng(len(key))
    x = rng.standard_normal((n, icc * ib, h, w), dtype=np.float32)
    wt = rng.standard_normal((occ * ob, icc * ib // groups, kh, kw), dtype=np.float32)
    path = tmp_path / "conv.onnx"
    path.write_bytes(model.SerializeToString())
    (want,) = onnxruntime_outputs(path, {"x": x, "w": wt})
    # as the package holds them: data NCHW[ib]c, weights OIHW[ib]i[ob]o (depthwise: C/ob, 1, kh, kw, 1, ob)
    xb = x.reshape(n, icc, ib, h, w).transpose(0, 1, 3, 4, 2)
    if wl.depthwise:
        wb = wt.reshape(occ, ob, kh, kw).transpose(0, 2, 3, 1)[:, None, :, :, None, :]
    else:
        wb = wt.reshape(occ, ob, wic, wib, kh, kw).transpose(0, 2, 4, 5, 3, 1)
    oh, ow = wl.out_size
    return [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in (xb, wb, np.zeros((n, occ, oh, ow, ob), "f4"))], want


def _check(key: str, config, tgt, tmp_path: Path, lib=None, name: str = "k") -> None:
    """The kernel `name` of `lib` (or `config` built alone) against onnxruntime's Conv."""
    from archc.lower.kernels.search import build
    args, want = _case(key, tmp_path)
    args[2].copyfrom(np.full(args[2].shape, np.nan, "f4"))  # what an earlier configuration wrote is not kept
    lib = lib or build(key, config, tgt)
    lib[name](*args)
    n, occ, oh, ow, ob = args[2].shape
    got = args[2].numpy().transpose(0, 1, 4, 2, 3).reshape(n, occ * ob, oh, ow)
    assert_close([got], [want])


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_every_zoo_convolution_with_its_shipped_configuration(isa, tmp_path):
    """The ISA's shipped tables (one per CPU they were searched on, each the convolution shapes of the zoo) equal
    onnxruntime's Conv: one entry of each kind the generated code can differ by, over all the ISA's tables
    (`helpers.cover`: 184 of the 1,446 AVX-512 entries of the three tables), every one with ARCHC_FULL_TABLES=1. (The
    bf16 and int8 kernels' entries, `bf16:d…`, `int8:d…`: the next test, on a CPU that runs them.)"""
    if isa == "avx512" and native_isa() != "avx512":
        pytest.skip("this CPU has no AVX-512: run on an x86 CPU with AVX-512 to check its tables (AVX2's run here)")
    if not native_isa():
        pytest.skip("not an x86 CPU with AVX2: run on one to check the x86 tables against onnxruntime")
    from archc.lower.kernels.conv2d import Config
    tables = {name: t for name, t in _tables().items() if name.startswith(f"{isa}/")}
    assert tables and all(len(t) >= 100 for t in tables.values()), \
        f"an {isa} table is missing or small: python benchmarks/kernel_table.py --isa {isa}"
    from archc.lower.kernels.search import build_all
    tgt = _tgt(isa)
    chosen = cover([(k, c) for t in tables.values() for k, c in t.items() if ":" not in k])  # float32 ones
    for start in range(0, len(chosen), 50):  # compiled 50 to a library: one link each, not one per entry
        part = {f"k{i}": (key, Config.from_record(cfg)) for i, (key, cfg) in enumerate(chosen[start:start + 50])}
        lib = build_all(part, tgt)
        for name, (key, config) in part.items():
            _check(key, config, tgt, tmp_path, lib, name)
    _case.cache_clear()  # FCN's 7×7 fc6: 400 MB


@pytest.mark.torch
@pytest.mark.parametrize("step", ["bf16", "int8"])
def test_the_tables_bf16_and_int8_entries_compute_their_convolutions(step):
    """The shipped tables' entries searched for the bf16 or int8 kernel (`bf16:d…`, `int8:d…`: `kernel_table.py
    --precision bf16|int8`), one of each kind the generated code can differ by (helpers.cover), built with their
    configurations as a search builds them (search.build_all), each equal to float64's convolution of the same
    numbers: bf16's to 1e-5 of its largest value (float32 sums), int8's exactly (int32 sums)."""
    import ml_dtypes
    import torch
    import tvm

    from archc import targets
    from archc.lower.build import tvm_target_at
    from archc.lower.kernels import dpbf16, search, vnni
    from archc.lower.kernels.conv2d import Config, Workload
    from archc.util.machine import all_cpu_flags
    unit = {"bf16": "avx512_bf16", "int8": "avx512_vnni"}[step]
    if unit not in all_cpu_flags():
        pytest.skip(f"this CPU has no {unit.upper()}: its {step} kernels cannot run here (run on an AMD Zen 4 or "
                    "later, or an Intel Xeon from Cooper Lake (bf16) or Cascade Lake (int8) on)")
    entries = [(k, c) for p in sorted((search.TABLES / "avx512").glob("*.json"))
               for k, c in json.loads(p.read_text()).items() if k.startswith(f"{step}:")]
    assert entries, f"no {step} entries: python benchmarks/kernel_table.py --isa avx512 --merge --precision {step}"
    chosen = cover(entries)
    tgt = tvm_target_at(targets.get("native"), step)
    lib = search.build_all({f"k{i}": (k, Config.from_record(c)) for i, (k, c) in enumerate(chosen)}, tgt)
    for i, (key, _) in enumerate(chosen):
        w = Workload.parse(key)
        n, icc, h, width, ib = w.data
        occ, wicc, kh, kw, _, ob = w.weight  # grouped: Winograd's products (a group per tile position)
        top, left, _, _ = w.padding
        (oh, ow), rng = w.out_size, np.random.default_rng(i)
        if step == "bf16":
            xs = rng.standard_normal(w.data).astype(ml_dtypes.bfloat16)
            ws = (rng.standard_normal(w.weight) / np.sqrt(wicc * ib * kh * kw)).astype(ml_dtypes.bfloat16)
            bits, packed, out = xs.view(np.uint16), dpbf16.pack_weights(ws.astype(np.float32)), np.float32
        else:
            xs = rng.integers(0, 256, w.data, dtype=np.uint8)
            ws = rng.integers(-128, 128, w.weight, dtype=np.int8)
            bits, packed, out = xs, vnni.pack_weights(ws), np.int32
        data = search._tensors(w, tgt)[0]
        padded = np.zeros([int(d) for d in data.shape], bits.dtype)  # its padding's zeros (and widened columns)
        padded[:, :, top:top + h, left:left + width] = bits
        got = tvm.runtime.tensor(np.zeros((n, occ, oh, ow, ob), out))
        lib[f"k{i}"](tvm.runtime.tensor(padded), tvm.runtime.tensor(packed), got)
        x64 = np.zeros((n, icc * ib, padded.shape[2], padded.shape[3]))
        x64[:, :, top:top + h, left:left + width] = xs.astype(np.float64).transpose(0, 1, 4, 2, 3).reshape(
            n, icc * ib, h, width)
        w64 = ws.astype(np.float64).transpose(0, 5, 1, 4, 2, 3).reshape(occ * ob, wicc * ib, kh, kw)
        want = torch.nn.functional.conv2d(torch.from_numpy(x64), torch.from_numpy(w64), stride=w.strides,
                                          dilation=w.dilation, groups=w.groups).numpy()[:, :, :oh, :ow]
        result = got.numpy().transpose(0, 1, 4, 2, 3).reshape(want.shape)
        if step == "int8":
            assert (result == want).all(), key
        else:
            assert np.abs(result - want).max() <= 1e-5 * np.abs(want).max(), key


def test_a_bf16_kernel_takes_its_own_configuration_first_then_its_shapes_float32_one(tmp_path, monkeypatch):
    """The bf16 kernel's workload is its shape's with step "bf16" (`bf16:d…`; the int8 kernel's "int8"). A
    configuration searched for that kernel (a table entry, a database record) comes first: its tiles differ from
    the float32 kernel's (half the bytes per product). Where it has none, its shape's float32 configuration;
    where neither, the prediction from the nearest entries of either kernel; a compile's short pass measures only
    shapes that have neither."""
    from archc.lower.kernels import search
    from archc.lower.kernels.conv2d import Config, Workload
    shape = "d1x4x28x28x16_w4x4x1x1x16x16_s1x1_p0x0x0x0_l1x1"
    w = Workload.parse(f"bf16:{shape}")
    assert (w.step, w.key, w.float32.key, w.out_size) == ("bf16", f"bf16:{shape}", shape, (28, 28))
    with pytest.raises(ValueError, match="int4:"):
        Workload.parse(f"int4:{shape}")
    other = "d1x4x14x14x16_w4x4x1x1x16x16_s1x1_p0x0x0x0_l1x1"
    (tmp_path / "avx512").mkdir()
    (tmp_path / "avx512" / "znver4.json").write_text(json.dumps(
        {shape: Config(7, 1).record(), f"bf16:{shape}": Config(4, 4).record(), other: Config(14, 1).record()}))
    monkeypatch.setattr(search, "TABLES", tmp_path)
    choices = search.Choices(_tgt("avx512"), 16, None)
    assert choices.config(f"bf16:{shape}") == Config(4, 4) and choices.config(shape) == Config(7, 1)
    assert choices.config(f"bf16:{other}") == Config(14, 1)  # none of its own: its shape's float32 one
    assert choices.config(f"int8:{shape}") == Config(7, 1)  # the int8 kernel's likewise
    assert choices.sources == {f"bf16:{shape}": "shipped", shape: "shipped", f"bf16:{other}": "shipped",
                               f"int8:{shape}": "shipped"}
    new = "d1x4x56x56x16_w4x4x1x1x16x16_s1x1_p0x0x0x0_l1x1"
    assert choices.unknown([f"bf16:{other}", f"bf16:{new}", new]) == [f"bf16:{new}", new]
    assert choices.config(f"bf16:{new}") in search.candidates(new, 16)
    assert choices.sources[f"bf16:{new}"] == "predicted"


def test_the_target_cpus_table_first_then_the_nearest_and_the_build_says_which(tmp_path, monkeypatch):
    """Tables are per CPU (LLVM's name for the one they were searched on): the target CPU's own is asked first,
    then those of its vendor, then the rest; a workload missing from one is looked up in the next, and the note
    (the manifest's conv_tables) says which tables gave configurations and that the CPU had none of its own."""
    from archc.lower.kernels import search
    from archc.lower.kernels.conv2d import Config
    for cpu, table in {"znver5": {"a": Config(4, 1), "c": Config(7, 2)},
                       "rocketlake": {"a": Config(8, 3), "b": Config(14, 1)},
                       "sapphirerapids": {"b": Config(2, 2),
                                          "d1x4x28x28x16_w4x4x1x1x16x16_s1x1_p0x0x0x0_l1x1": Config(14, 1)}}.items():
        (tmp_path / "avx512").mkdir(exist_ok=True)
        (tmp_path / "avx512" / f"{cpu}.json").write_text(json.dumps({k: c.record() for k, c in table.items()}))
    monkeypatch.setattr(search, "TABLES", tmp_path)
    order = {cpu: [p.stem for p in search.tables_for("avx512", cpu)] for cpu in ("znver4", "sapphirerapids")}
    assert order == {"znver4": ["znver5", "rocketlake", "sapphirerapids"],
                     "sapphirerapids": ["sapphirerapids", "rocketlake", "znver5"]}
    assert search.tables_for("avx2", "znver5") == []
    tgt = _tgt("avx512")  # x86-avx512: LLVM's skylake-avx512, an Intel CPU without a table here
    choices = search.Choices(tgt, 16, None)
    key = "d1x2x14x14x16_w3x2x1x1x16x16_s1x1_p0x0x0x0_l1x1"  # a real workload: its rule is computed
    choices.tables["rocketlake"][key] = Config(7, 3).record()
    assert [choices.config(k) for k in ("a", "b", "c", key)] == [Config(8, 3), Config(14, 1), Config(7, 2),
                                                                  Config(7, 3)]
    assert choices.table_note() == ("no avx512 table for skylake-avx512: avx512/rocketlake, avx512/znver5 "
                                    "(nearest first)")
    assert set(choices.sources.values()) == {"shipped"}
    other = search.Choices(tgt, 16, None)  # a shape no table holds: the tables' prediction, which the note names
    unknown = "d1x2x28x28x16_w3x2x1x1x16x16_s1x1_p0x0x0x0_l1x1"
    assert other.config(unknown) in search.candidates(unknown, 16) and other.sources == {unknown: "predicted"}
    assert other.table_note() == ("no avx512 table for skylake-avx512: avx512/rocketlake, avx512/sapphirerapids, "
                                  "avx512/znver5 (nearest first)")
    monkeypatch.setattr(search, "TABLES", tmp_path / "none")  # an ISA without tables (NEON's): the rule
    bare = search.Choices(tgt, 16, None)
    assert bare.config(unknown) == search.rule(unknown, 16) and bare.sources == {unknown: "rule"}


def test_an_unknown_shape_is_configured_like_its_nearest_table_entries():
    """Leave-one-out over each shipped table (every other table's entry of the same workload left out too): the
    prediction's first configuration is the one the whole grid chose more often than the rule's is, and its first
    four (what a compile measures on its short pass) hold it for most workloads. Measured when written (rocketlake,
    znver5 AVX-512, znver5 AVX2): first 48/50/63%, first four 81/83/85%, the rule 38/44/19%; znver4 AVX-512, whose
    search found more near-ties (Zen 4 runs a 512-bit FMA as two 256-bit halves: tile shapes matter less), 33%,
    73% and 20%; znver1 AVX2 (Zen 1), whose nearest table is znver5's AVX2 one, 75%, 92% and 28%. The times these
    choices give are benchmarks/unseen_shapes.py's."""
    from archc.lower.kernels import predict, search
    from archc.lower.kernels.conv2d import Config
    for name in _tables():
        isa, cpu = name.split("/")
        lanes = 16 if isa == "avx512" else 8
        tables = [json.loads(p.read_text()) for p in search.tables_for(isa, cpu)]
        first = four = by_rule = 0
        # every third float32 workload: the rates are the same, in a third the time (the bf16 and int8 kernels'
        # few entries are their shapes' neighbours, not a sample of the zoo)
        sample = sorted((k, r) for k, r in tables[0].items() if ":" not in k)[::3]
        for key, record in sample:
            likely = predict.ranked(key, lanes, [{k: v for k, v in t.items() if k != key} for t in tables])
            assert likely and set(likely) <= set(search.candidates(key, lanes))
            truth = Config.from_record(record)
            first += likely[0] == truth
            four += truth in likely[:search.QUICK_CANDIDATES]
            by_rule += search.rule(key, lanes) == truth
        n = len(sample)
        assert first > by_rule and first >= 0.3 * n and four >= 0.7 * n, (name, first, four, by_rule, n)


def test_the_configuration_grid_on_a_few_shapes(tmp_path):
    """Every point of the search grid computes the same convolution: a 3×3 layer, a strided 1×1, the 7×7 stem on
    NCHW[1]c, a depthwise stride-2 one, a grouped strided one, and a dilated one; and a 1×1 whose three channel
    blocks make a tile of three."""
    from archc.lower.kernels.conv2d import Workload
    from archc.lower.kernels.search import candidates
    isa = native_isa() or pytest.skip("not an x86 CPU with AVX2: run on one to check the search grid's code")
    tgt = _tgt(isa)
    lanes = 16 if isa == "avx512" else 8
    shapes = [Workload.of(*w).key for w in [
        ((1, 2, 14, 14, lanes), (2, 2, 3, 3, lanes, lanes), (1, 1), (1, 1, 1, 1), (1, 1)),
        ((1, 2, 14, 14, lanes), (4, 2, 1, 1, lanes, lanes), (2, 2), (0, 0, 0, 0), (1, 1)),
        # a tile of 3 blocks: 3 pixels × 3 blocks, a row tile on both widths
        ((1, 2, 6, 3, lanes), (3, 2, 1, 1, lanes, lanes), (1, 1), (0, 0, 0, 0), (1, 1)),
        ((1, 3, 32, 32, 1), (2, 3, 7, 7, 1, lanes), (2, 2), (3, 3, 3, 3), (1, 1)),
        ((1, 3, 15, 15, lanes), (3, 1, 3, 3, 1, lanes), (2, 2), (1, 1, 1, 1), (1, 1)),  # depthwise
        ((1, 4, 14, 14, lanes), (4, 2, 3, 3, lanes, lanes), (2, 2), (1, 1, 1, 1), (1, 1)),  # 2 groups
        ((1, 1, 16, 16, 8), (1, 1, 3, 3, 8, 8), (1, 1), (2, 2, 2, 2), (2, 2))]]
    assert shapes[4].startswith("dw") and sum(k.startswith("dw") for k in shapes) == 1
    assert any(c.oc_tile == 3 for c in candidates(shapes[2], lanes))
    for key in shapes:
        grid = candidates(key, lanes)
        assert grid
        for config in grid:
            _check(key, config, tgt, tmp_path)


def test_search_records_and_the_next_build_uses_them(tmp_path):
    """The per-layer search measures a convolution's grid, records the best under (CPU, workload) in the tuning
    database, and a build with that database takes it from there (the rest from the shipped table or the rule)."""
    from archc.lower.kernels.search import RECORDS, Choices
    spec = tmp_path / "two.arch"
    spec.write_text("network two {\n input x: 16x20x20\n c: conv(32, 3) relu\n d: conv(32, 1)\n}\n")
    db = tmp_path / "db"
    # first a plain compile: its short pass measures the likeliest few configurations of shapes no table holds
    first = Path(archc.compile(spec, target="native", output=tmp_path / "first", db=db).output)
    assert json.loads((first / "manifest.json").read_text())["build"]["conv_configs"] == {"short search": 2}
    quick = json.loads((db / RECORDS).read_text())
    (cpu,) = quick
    assert [r["grid"] for r in quick[cpu].values()] == ["quick", "quick"]
    summary = archc.tune(spec, "native", trials=1, db=db)  # the whole grid replaces the short search's records
    assert summary.searched == 2
    records = json.loads((db / RECORDS).read_text())
    assert len(records[cpu]) == 2 and all(r["seconds"] > 0 and r["grid"] == "whole" for r in records[cpu].values())
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", db=db).output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    assert build["kernels"] == "archc" and build["conv_configs"] == {"searched": 2}
    assert build["kernels_naive"] == 0 and build["trials_now"] == 0
    x = {"x": np.random.default_rng(1).standard_normal((1, 16, 20, 20)).astype(np.float32)}
    assert_close(load_package(folder).run(x), onnxruntime_outputs(folder / "model.onnx", x))
    assert archc.tune(spec, "native", trials=1, db=db).searched == 0  # nothing left to search
    other = Choices(_tgt("avx2"), 8, db)  # the x86 target's CPU (haswell): its records only if it is this one
    assert other.records == (records[cpu] if other.cpu == cpu else {})


def test_layout_plan_of_resnet18(tmp_path):
    """ResNet-18 in the blocked layout end to end: every convolution is archc's, each with its batch norm folded
    (4 ops), the layout changes once (before the classifier's flatten), the residual add and ReLU run in the
    convolution's epilogue, nothing is left naive, and the outputs equal onnxruntime's."""
    from click.testing import CliRunner

    from archc.cli import main  # in this process: a subprocess would spend 4 s importing archc and TVM again
    out = CliRunner().invoke(main, ["compile", str(SPECS / "resnet18.arch"), "--target", "native", "-o",
                                    str(tmp_path / "pkg"), "--db", str(tmp_path / "db"), "--explain-layout"])
    assert out.exit_code == 0, out.stderr
    assert "layout plan: 20 convolutions in NCHW[x]c" in out.stdout
    assert "layout changes between ops: 1\n  NCHW16c → NCHW (1×512×1×1) for reshape" in out.stdout \
        or "layout changes between ops: 1\n  NCHW8c → NCHW (1×512×1×1) for reshape" in out.stdout
    assert "archc kernels" in out.stderr and "0 untuned (naive)" in out.stderr
    build = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["build"]
    convs = build["layout"]["convolutions"]
    assert len(convs) == 20 and all(c["folded"] == 4 for c in convs)
    # the 3×3 stride-1 convolutions of stages 1-3 as Winograd tiles (test_winograd.py), the 7×7 ones of stage 4
    # and the strided ones direct
    assert sum("Winograd F(4×4, 3×3)" in c["conv"] for c in convs) == 10
    # its configurations come from the shipped tables, which the build names (this CPU's, or the nearest ones)
    assert build["conv_configs"].get("shipped", 0) >= 8 and "avx" in build["conv_tables"]
    assert build["conv_tables"] in out.stderr
    assert convs[0]["in"] == "NCHW1c" and convs[0]["conv"] == "3×224×224 → 64, 7×7/2"
    from archc import targets
    from archc.lower import tune
    from archc.lower.build import import_onnx
    from archc.lower.tvm_target import tvm_target
    tgt = tvm_target(targets.get("native"))
    names = [gv.name_hint for gv in tune.prepare(import_onnx(archc.load(SPECS / "resnet18.arch")), tgt,
                                                 "archc").functions]
    # one kernel per stage's residual shape: a convolution's, or a Winograd output transform's
    assert sum(1 for n in names if ("conv2d_nchwc" in n or "winograd_output" in n) and "_add" in n
               and "_relu" in n) == 4, names
    pkg = load_package(tmp_path / "pkg")
    x = {"image": np.random.default_rng(3).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    want = onnxruntime_outputs(tmp_path / "pkg" / "model.onnx", x)
    assert_close(pkg.run(x), want)
    assert all(np.isfinite(w).all() and float(np.ptp(w)) > 0 for w in want)  # outputs that say something


def test_tvm_kernels_remain_available(tmp_path):
    """`--kernels tvm`: TVM's own kernels (MetaSchedule's path), no layout plan."""
    folder = Path(archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "pkg", quick=0,
                                kernels="tvm").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    assert build["kernels"] == "tvm" and "layout" not in build and build["kernels_naive"] == 9
    with raises("bad-option", naming="'mkl'"):
        archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "x", kernels="mkl")


def test_one_d_convolutions_run_as_two_d_ones_of_height_one(tmp_path):
    """A 1-D net (conv1d, max_pool1d, global pooling over L) runs on archc's kernels as N×C/bn×1×L×bn tensors,
    with one layout change (before the classifier), and equals onnxruntime."""
    folder = Path(archc.compile(SPECS / "fcn1d.arch", target="native", output=tmp_path / "pkg", quick=0,
                                db=tmp_path / "db").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    convs = build["layout"]["convolutions"]
    n_conv = sum(1 for lay in archc.analyze(SPECS / "fcn1d.arch").layers if lay.op == "Conv")
    assert len(convs) == n_conv > 0 and all("×" not in c["conv"].split(", ")[1] for c in convs)  # K/s, not KH×KW
    assert len(build["layout"]["transforms"]) == 1 and build["kernels_naive"] == 0
    pkg = load_package(folder)
    x = pkg.random_inputs(seed=4)
    assert_close(pkg.run(x), onnxruntime_outputs(folder / "model.onnx", x))


GROUPED = """
network grouped {
  input image: 3x20x20
  c1: conv(64, 3) bn relu
  g4: conv(64, 3, groups=16) bn relu       # 4-channel groups: merged to whole blocks
  g16: conv(64, 3, stride=2, groups=4) relu  # 16-channel groups: as they are
  g2: conv(48, 1, groups=2)                # 32 → 24 channels per group
  gap: global_avgpool
  flatten
  fc: dense(10)
}
"""


def test_grouped_convolutions_run_on_archc_kernels(tmp_path):
    """Grouped convolutions (ResNeXt's) are archc's kernels: groups of whole channel blocks as they are, narrower
    ones merged into block-diagonal groups of whole blocks; the model equals onnxruntime."""
    spec = tmp_path / "grouped.arch"
    spec.write_text(GROUPED)
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", quick=0, db=tmp_path / "db").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    convs = {c["conv"]: c for c in build["layout"]["convolutions"]}
    assert len(convs) == 4 and build["kernels_naive"] == 0
    merged = build["layout"]["lanes"] // 4  # 4-channel groups on blocks of the vector width
    narrow = convs[f"64×20×20 → 64, 3×3/1 groups 16 (as {16 // merged} of {merged} merged)"]
    assert narrow["folded"] == 5  # its bias and batch norm's four ops
    assert "64×20×20 → 64, 3×3/2 groups 4" in convs
    pkg = load_package(folder)
    x = {"image": np.random.default_rng(5).standard_normal((1, 3, 20, 20)).astype(np.float32)}
    assert_close(pkg.run(x), onnxruntime_outputs(folder / "model.onnx", x))


PADDED = """
import "lib/mobilenet.arch"
network padded {
  input image: 3x24x24
  c1: conv(32, 3, stride=2) bn relu6
  b1: inverted_residual(6, 24)           # 24 channels: written and read, then added back
  b2: inverted_residual(6, 24)
  c6: conv(6, 3) tanh                    # LeNet's 6
  g1: conv(12, 1) relu                   # read by a grouped convolution: never padded, blocks of 4
  g2: conv(12, 3, groups=2) relu         #   (8 does not divide 12)
  cat: concat {
    a: conv(24, 1)                       # read by the concat: padded where that models cheaper (the concat
    b: conv(40, 1)                       #   then runs in NCHW)
    c: conv(12, 1)
    d: conv(6, 1)
  }
  gap: global_avgpool
  flatten
  fc: dense(10)
}
"""


def test_channels_padded_to_whole_blocks_where_the_cost_model_says(tmp_path):
    """Channels that do not divide the block are zero-padded to whole blocks where that models cheaper: on 16-lane
    vectors MobileNet v2's 24 become 32 (a 24-channel block of 8 fills half of each register: written at ×2, read
    at ×1; padded, both at ×4/3), LeNet's 6 become 8. Tensors read by a concatenation are padded too (the
    concatenation then runs in NCHW, its inputs relaid out: ShuffleNet v2 1.20× → 0.87× onnxruntime); a tensor
    read by a grouped convolution keeps its true channels, in blocks of 4 where 8 does not divide them (not TVM's
    untuned NCHW kernel). The residual add runs on the padded blocks; the model equals onnxruntime. Where this
    CPU's 256-bit FMA peak is its 512-bit one (Zen 4), a block of 8 costs what a block of 16 does and padding to
    16 is chosen only where it costs no more."""
    spec = tmp_path / "padded.arch"
    spec.write_text(PADDED)
    shutil.copytree(SPECS / "lib", tmp_path / "lib")
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", quick=0, db=tmp_path / "db").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    plan = build["layout"]
    outs = {c["conv"]: c["out"] for c in plan["convolutions"]}
    assert build["kernels_naive"] == 0 and len(outs) >= 8
    concat = {k: v for k, v in outs.items() if k.startswith("12×12×12 → ") and k.endswith("1×1/1")}  # the concat's
    if plan["lanes"] == 16 and plan["half_width_cost"] < 2:  # Zen 4: 8-channel blocks cost about what 16 cost
        assert outs["144×12×12 → 24, 1×1/1"] == "NCHW8c"
        assert outs["24×12×12 → 6, 3×3/1"] == "NCHW8c (6 padded to 8)"
        assert concat == {"12×12×12 → 24, 1×1/1": "NCHW8c", "12×12×12 → 40, 1×1/1": "NCHW8c",
                          "12×12×12 → 12, 1×1/1": "NCHW16c (12 padded to 16)",
                          "12×12×12 → 6, 1×1/1": "NCHW8c (6 padded to 8)"}
    elif plan["lanes"] == 16:
        assert outs["144×12×12 → 24, 1×1/1"] == "NCHW16c (24 padded to 32)"
        assert outs["24×12×12 → 6, 3×3/1"] == "NCHW8c (6 padded to 8)"
        assert concat == {"12×12×12 → 24, 1×1/1": "NCHW16c (24 padded to 32)",
                          "12×12×12 → 40, 1×1/1": "NCHW16c (40 padded to 48)",
                          "12×12×12 → 12, 1×1/1": "NCHW16c (12 padded to 16)",
                          "12×12×12 → 6, 1×1/1": "NCHW16c (6 padded to 16)"}
    else:
        assert outs["144×12×12 → 24, 1×1/1"] == "NCHW8c"
        assert concat == {"12×12×12 → 24, 1×1/1": "NCHW8c", "12×12×12 → 40, 1×1/1": "NCHW8c",
                          "12×12×12 → 12, 1×1/1": "NCHW8c (12 padded to 16)",
                          "12×12×12 → 6, 1×1/1": "NCHW8c (6 padded to 8)"}
    assert sum("for concat" in t for t in plan["transforms"]) == 4
    grouped = "12×12×12 → 12, 3×3/1 groups 2 (as 1 of 2 merged)"
    assert outs["6×12×12 → 12, 1×1/1"] == outs[grouped] == "NCHW4c"
    pkg = load_package(folder)
    x = {"image": np.random.default_rng(6).standard_normal((1, 3, 24, 24)).astype(np.float32)}
    assert_close(pkg.run(x), onnxruntime_outputs(folder / "model.onnx", x))


def test_matmuls_of_many_rows_run_as_blocked_convolutions(tmp_path):
    """A transformer MLP as exporters write it (MatMul of a 3-D activation by constant weights, bias, erf):
    each product of 50 rows is a 1×1 convolution over 50 pixels (padded to 64: 4 rows of 16) on archc's kernels,
    where TVM's untuned kernel ran before (ViT-B/16 7.3× → 1.9× onnxruntime); 4 rows stay a matrix product; the
    model equals onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)

    def mlp(rows: int) -> Path:
        w1 = numpy_helper.from_array(rng.standard_normal((64, 128)).astype(np.float32) * 0.1, "w1")
        b1 = numpy_helper.from_array(rng.standard_normal(128).astype(np.float32), "b1")
        w2 = numpy_helper.from_array(rng.standard_normal((128, 64)).astype(np.float32) * 0.1, "w2")
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
                 helper.make_node("Erf", ["a1"], ["g"]), helper.make_node("MatMul", ["g", "w2"], ["y"])]
        graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows, 64])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows, 64])], [w1, b1, w2])
        path = tmp_path / f"mlp{rows}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path
    for rows, convs in ((50, {"64×4×16 → 128, 1×1/1", "128×4×16 → 64, 1×1/1"}), (4, set())):
        result = archc.compile(mlp(rows), target="native", output=tmp_path / f"pkg{rows}", quick=0,
                               db=tmp_path / "db")
        assert result.verification.status == "passed" and result.verification.max_rel_diff <= 1e-4
        build = json.loads((Path(result.output) / "manifest.json").read_text())["build"]
        assert {c["conv"] for c in build["layout"]["convolutions"]} == convs
    # archc profile gives those convolutions their MatMul nodes, and the nodes' MACs (not the padded rows')
    from archc import targets
    from archc.lower.build import import_onnx
    from archc.lower.profile import kernels_of
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    model = archc.load(tmp_path / "mlp50.onnx")
    kernels = kernels_of(prepare(import_onnx(model), tvm_target(targets.get("native")), "archc"), model)
    ops = {lay.name: lay.op for lay in archc.analyze(model).layers}
    convs = [k for k in kernels if "conv2d_nchwc" in k.name]
    assert len(convs) == 2 and all(len(k.nodes) == 1 and ops[k.nodes[0]] == "MatMul" for k in convs)
    assert sorted(k.macs for k in convs) == [50 * 64 * 128] * 2


def _se_block(gate: str):
    """An EfficientNet / MobileNet v3 block as PyTorch exports it: conv + SiLU (Sigmoid, Mul) or HardSwish, a
    squeeze-excite gate (GlobalAveragePool → 1×1 conv → SiLU → 1×1 conv → `gate` (Sigmoid or HardSigmoid, which
    imports as a clip) → Mul of the feature map), a 1×1 projection."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype("f4"), name)
    inits = [weight("w1", 32, 3, 3, 3), weight("b1", 32), weight("ws", 8, 32, 1, 1), weight("bs", 8),
             weight("we", 32, 8, 1, 1), weight("be", 32), weight("w2", 24, 32, 1, 1)]
    node = helper.make_node
    first = [node("Sigmoid", ["c1"], ["s1"]), node("Mul", ["c1", "s1"], ["f"])] if gate == "Sigmoid" else \
        [node("HardSwish", ["c1"], ["f"])]
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), *first,
             node("GlobalAveragePool", ["f"], ["g"]),
             node("Conv", ["g", "ws", "bs"], ["q"]), node("Sigmoid", ["q"], ["qs"]), node("Mul", ["q", "qs"], ["qa"]),
             node("Conv", ["qa", "we", "be"], ["e"]), node(gate, ["e"], ["gate"]),
             node("Mul", ["f", "gate"], ["fg"]), node("Conv", ["fg", "w2"], ["y"])]
    return helper.make_graph(nodes, gate, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 20, 20])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24, 20, 20])], inits)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_silu_and_squeeze_excite_run_inside_the_blocked_kernels(isa, tmp_path):
    """SiLU after a convolution (x·σ(x) reads the conv twice) is computed on the register tile, not after the
    whole convolution in one thread (EfficientNet-B0: 3.4× → 1.2× onnxruntime); the gate's multiply runs on the
    blocked feature map (no layout change in the block), once per pixel with the gate once per channel; so do
    hardswish and hardsigmoid, whose clip had no blocked rule (MobileNet v3-L: 2.4× → 1.2×); every loop nest of
    every convolution kernel runs in parallel; the models equal onnxruntime on both vector widths."""
    skip_unless_runs(isa)
    from tvm import s_tir, tirx

    from archc import targets
    from archc.lower import kernels
    from archc.lower.build import import_onnx
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    name = {"avx512": "x86-avx512", "avx2": "x86"}[isa]
    for gate in ("HardSigmoid", "Sigmoid"):
        path, result = compile_verified(_se_block(gate), tmp_path, name)
        layout = json.loads((Path(result.output) / "manifest.json").read_text())["build"]["layout"]
        assert [t.split(" for ")[1] for t in layout["transforms"]] == ["the model's output"]  # the input: 1 block
    tgt = tvm_target(targets.get(name))
    mod, done = kernels.apply(prepare(import_onnx(archc.load(path)), tgt, "archc"), tgt,
                              kernels.Choices(tgt, kernels.lanes(tgt), None))
    convs = [n for n in done if "conv2d_nchwc" in n]
    assert any("sigmoid" in n and "multiply" in n for n in convs)
    for gv, func in mod.functions.items():
        if gv.name_hint in convs:
            sch = s_tir.Schedule(func)
            for block in sch.get_child_blocks(sch.get_sblock("root")):
                kinds = [sch.get(loop).kind for loop in sch.get_loops(block)]
                assert tirx.ForKind.PARALLEL in kinds, (gv.name_hint, sch.get(block).name_hint)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_rows_of_a_prime_width_are_widened_into_whole_register_tiles(isa, tmp_path):
    """Inception v3's 17×17 1×7 and 7×1 convolutions: a row of 17 pixels splits only into tiles of 1 (2.2× → 1.3×
    onnxruntime on Inception v3 once widened); archc computes 18 columns (the input padded on the right) and crops
    the 18th, in a kernel with a ReLU epilogue and in one without; outputs equal onnxruntime's."""
    skip_unless_runs(isa)
    from onnx import TensorProto, helper, numpy_helper

    from archc import targets
    from archc.lower import kernels
    from archc.lower.build import import_onnx
    from archc.lower.kernels.conv2d import Workload
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype("f4"), n)
             for n, s in (("w1", (32, 32, 1, 7)), ("w2", (16, 32, 7, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[0, 3, 0, 3]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[3, 0, 3, 0])]
    graph = helper.make_graph(nodes, "prime", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 17, 17])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 17, 17])], inits)
    name = {"avx512": "x86-avx512", "avx2": "x86"}[isa]
    path, _ = compile_verified(graph, tmp_path, name)
    tgt = tvm_target(targets.get(name))
    keys = list(kernels.workloads(prepare(import_onnx(archc.load(path)), tgt, "archc")).values())
    assert len(keys) == 2 and {Workload.parse(k).out_size for k in keys} == {(17, 18)}
    choices = kernels.Choices(tgt, kernels.lanes(tgt), None)
    configs = [choices.config(k) for k in keys]  # tiles of whole pixels of the widened row, 6 accumulators or more
    assert all(18 % c.reg_n == 0 and c.reg_n * c.oc_tile >= 6 for c in configs), configs


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_attention_products_run_on_archc_batched_kernel(isa, tmp_path):
    """Q·Kᵀ and softmax(·)·V as exporters write them (MatMul of two activations, 4-D, 13 tokens: neither rows nor
    columns whole tiles) run on archc's batched product (ViT-B/16: 2.6× → 2.0× onnxruntime), scheduled and in
    parallel, with the scale after Q·Kᵀ as its epilogue; softmax computes each exponential once; the model equals
    onnxruntime on both vector widths."""
    skip_unless_runs(isa)
    from onnx import TensorProto, helper, numpy_helper
    from tvm import s_tir, tirx

    from archc import targets
    from archc.lower import kernels
    from archc.lower.build import import_onnx
    from archc.lower.kernels import bmm
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    node = helper.make_node
    nodes = [node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), node("MatMul", ["q", "kt"], ["s"]),
             node("Mul", ["s", "scale"], ["ss"]), node("Softmax", ["ss"], ["p"], axis=-1),
             node("MatMul", ["p", "v"], ["y"])]
    x = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 13, 24]) for n in "qkv"]
    graph = helper.make_graph(nodes, "attention", x, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                    [1, 3, 13, 24])],
                              [numpy_helper.from_array(np.array(24 ** -0.5, "f4"), "scale")])
    name = {"avx512": "x86-avx512", "avx2": "x86"}[isa]
    path, _ = compile_verified(graph, tmp_path, name)
    tgt = tvm_target(targets.get(name))
    mod, done = kernels.apply(prepare(import_onnx(archc.load(path)), tgt, "archc"), tgt,
                              kernels.Choices(tgt, kernels.lanes(tgt), None))
    products = [gv for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc) and bmm.BLOCK in f.script()]
    assert len(products) == 2 and all(gv.name_hint in done for gv in products)
    assert any("multiply" in gv.name_hint for gv in products)  # the scale, fused as the epilogue
    for gv in products:
        sch = s_tir.Schedule(mod[gv])
        loops = sch.get_loops(sch.get_sblock(bmm.BLOCK + "_update"))
        assert sch.get(loops[0]).kind == tirx.ForKind.PARALLEL and sch.get(loops[-1]).kind == tirx.ForKind.VECTORIZED
    # softmax's exponentials are computed once, stored, then summed and divided (inlined, each was computed twice,
    # once inside the sum's scalar chain: ViT-B/16's softmax 21 → 7 ms)
    (softmax,) = [f for gv, f in mod.functions.items() if gv.name_hint in done and "softmax" in gv.name_hint]
    sch = s_tir.Schedule(softmax)
    assert "T_softmax_exp" in [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    # archc profile gives each its MatMul node (the first also the Mul of its epilogue) and the node's MACs
    from archc.lower.profile import kernels_of
    model = archc.load(path)
    found = [k for k in kernels_of(prepare(import_onnx(model), tgt, "archc"), model) if "bmm" in k.name]
    ops = {lay.name: lay.op for lay in archc.analyze(model).layers}
    assert sorted([ops[n] for n in k.nodes] for k in found) == [["MatMul"], ["MatMul", "Mul"]]
    assert [k.macs for k in found] == [3 * 13 * 13 * 24] * 2


def test_a_dense_layer_is_tiled_into_register_accumulators():
    """Each task of a dense layer computes up to 8 vectors of outputs, at least four tasks where the row allows:
    the 1280 → 1000 classifier of MobileNet v2 and MNASNet in 25 tiles of 5 half-width vectors (1000 is no
    multiple of 16), VGG's 4096 in 32 tiles of 8 full ones; rows of two vectors or fewer, or that no vector
    divides, are the generic schedule's."""
    from archc.lower.kernels.dense import tile
    assert tile(1000, 16) == 40 and tile(4096, 16) == 128 and tile(4096, 8) == 64 and tile(1000, 8) == 40
    assert tile(96, 16) == 16  # 6 vectors: 6 tasks of one, not one task of six
    assert tile(32, 16) == 0 and tile(1001, 16) == 0


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_a_channel_shuffle_is_copied_half_by_half(isa, tmp_path):
    """A concatenation followed by a channel shuffle (reshape, transpose, reshape), as ShuffleNet v2 (two groups)
    and v1 (three) write it: output channel g·i + k is channel i of source k, so the kernel's channel loop is split
    by the number of groups and unrolled, each copy reading one source, and the rows of 7×7 after it are one
    vectorized loop (they ran scalar: a select per element, rows of 7). A plain concatenation, whose source no
    period decides, keeps the generic rule. The models equal onnxruntime on both vector widths."""
    skip_unless_runs(isa)
    from onnx import TensorProto, helper, numpy_helper
    from tvm import s_tir, tirx

    from archc import targets
    from archc.lower import kernels
    from archc.lower.build import import_onnx
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    node, c = helper.make_node, 16
    inits = [numpy_helper.from_array(np.array(v, "i8"), n) for n, v in
             (("s2", [1, 2, c, 7, 7]), ("f2", [1, 2 * c, 7, 7]), ("s3", [1, 3, c, 7, 7]), ("f3", [1, 3 * c, 7, 7]))]
    nodes = [node("Concat", ["a", "b"], ["k2"], axis=1), node("Reshape", ["k2", "s2"], ["r2"]),
             node("Transpose", ["r2"], ["t2"], perm=[0, 2, 1, 3, 4]), node("Reshape", ["t2", "f2"], ["y2"]),
             node("Concat", ["a", "b", "c"], ["k3"], axis=1), node("Reshape", ["k3", "s3"], ["r3"]),
             node("Transpose", ["r3"], ["t3"], perm=[0, 2, 1, 3, 4]), node("Reshape", ["t3", "f3"], ["y3"]),
             node("Concat", ["a", "c"], ["y"], axis=1)]
    io = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "shuffle", [io(n, TensorProto.FLOAT, [1, c, 7, 7]) for n in "abc"],
                              [io("y2", TensorProto.FLOAT, [1, 2 * c, 7, 7]),
                               io("y3", TensorProto.FLOAT, [1, 3 * c, 7, 7]),
                               io("y", TensorProto.FLOAT, [1, 2 * c, 7, 7])], inits)
    name = {"avx512": "x86-avx512", "avx2": "x86"}[isa]
    path, _ = compile_verified(graph, tmp_path, name)
    tgt = tvm_target(targets.get(name))
    mod, done = kernels.apply(prepare(import_onnx(archc.load(path)), tgt, "archc"), tgt,
                              kernels.Choices(tgt, kernels.lanes(tgt), None))
    unrolled = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc) and "concatenate" in gv.name_hint:
            assert gv.name_hint in done
            s_tir.Schedule(func)  # well-formed: its loop partition's two blocks do not share variables
            text = func.script()  # the rows of 49 are a loop of 3 vectors and one of the last value: two blocks
            assert "T.vectorized(T.int64(" in text, gv.name_hint
            unrolled[gv.name_hint] = [int(n) for n in re.findall(r"T\.unroll\(T\.int64\((\d+)\)\)", text)]
    assert sorted(unrolled.values()) == [[], [2], [3]], unrolled


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_dense_layers_run_on_archc_register_tiled_kernel(isa, tmp_path):
    """A classifier (Gemm 1280 → 1000 with its bias and a ReLU) and a 2-row MatMul against constant weights
    (96 → 200): each is archc's dense kernel, its accumulators a register tile the epilogue reads, its
    tasks in parallel; the models equal onnxruntime on both vector widths."""
    skip_unless_runs(isa)
    from onnx import TensorProto, helper, numpy_helper
    from tvm import s_tir, tirx

    from archc import targets
    from archc.lower import kernels
    from archc.lower.build import import_onnx
    from archc.lower.kernels import dense, generic
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.05).astype("f4"), n)
             for n, s in (("w", (1000, 1280)), ("b", (1000,)), ("m", (96, 200)))]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["y"]),
             helper.make_node("MatMul", ["r", "m"], ["z"])]
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1280]),
                                               helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 96])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 200])], inits)
    name = {"avx512": "x86-avx512", "avx2": "x86"}[isa]
    path, _ = compile_verified(graph, tmp_path, name)
    tgt = tvm_target(targets.get(name))
    mod, done = kernels.apply(prepare(import_onnx(archc.load(path)), tgt, "archc"), tgt,
                              kernels.Choices(tgt, kernels.lanes(tgt), None))
    found = []
    for gv, func in mod.functions.items():
        sch = s_tir.Schedule(func) if isinstance(func, tirx.PrimFunc) else None
        if sch is None or not any(sch.get(b).name_hint.startswith(dense.BLOCK)
                                  for b in sch.get_child_blocks(sch.get_sblock("root"))):
            continue
        assert gv.name_hint in done
        update = sch.get_sblock(f"{dense.BLOCK}_update")
        tile = sch.get(update).writes[0].source  # the accumulators: a buffer of their own, not the output
        assert tile.scope() == generic.TILE
        assert any(b.same_as(tile) for b in sch.get(sch.get_sblock("root")).alloc_buffers)
        assert tirx.ForKind.PARALLEL in [sch.get(loop).kind for loop in sch.get_loops(update)]
        found.append(gv.name_hint)
    assert len(found) == 2, found


def _c72_graph():
    """24 → 72 → 24 channels (1×1 convolutions, a ReLU between): MNASNet's 72-channel group."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(8)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype("f4"), n)
             for n, s in (("w1", (72, 24, 1, 1)), ("w2", (24, 72, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]
    return helper.make_graph(nodes, "c72", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 24, 14, 14])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24, 14, 14])], inits)


def test_blocks_of_8_where_a_half_width_fma_does_the_work_of_a_full_one(tmp_path):
    """MNASNet's 72 channels, written by a 1×1 convolution and read by the next: on 16-lane vectors padded to 80
    where a block of 8 fills half of each FMA (written at ×2, read at ×1; padded, both at ×80/72), in blocks of 8
    where a 256-bit FMA does the work of a 512-bit one per lane (AMD Zen 4: MNASNet 1.06-1.12× → 1.02-1.07×
    onnxruntime at 1 thread). The cost is 2 for a target other than this machine's CPU; for this one it is
    measured, 1.1 or 2, and the plan records it."""
    from tvm import relax

    from archc import targets
    from archc.lower.build import import_onnx
    from archc.lower.kernels import pipeline
    from archc.lower.kernels.blocks import choose
    from archc.lower.kernels.optable import shape_of
    from archc.lower.tvm_target import tvm_target
    graph = _c72_graph()
    path, result = compile_verified(graph, tmp_path, "native")
    mod = relax.transform.DecomposeOpsForInference()(import_onnx(archc.load(path)))
    bindings = list(mod["main"].body.blocks[0].bindings)
    wide = {int(shape_of(v)[1]): bn for v, bn in choose(bindings, 16, shape_of, 2.0).items()}
    half = {int(shape_of(v)[1]): bn for v, bn in choose(bindings, 16, shape_of, 1.1).items()}
    assert wide[72] == 16 and half[72] == 8
    assert pipeline.half_width_cost(tvm_target(targets.get("x86-avx512"))) == 2.0  # skylake-avx512: not this CPU
    plan = json.loads((Path(result.output) / "manifest.json").read_text())["build"]["layout"]
    assert plan["half_width_cost"] in (1.1, 2.0)
    if plan["lanes"] == 16:
        assert plan["convolutions"][0]["out"] == ("NCHW8c" if plan["half_width_cost"] < 2
                                                  else "NCHW16c (72 padded to 80)")


def test_a_profile_lowers_with_the_plan_the_package_recorded(tmp_path, monkeypatch):
    """A package built where blocks of 8 cost otherwise (another CPU: here the cost is forced to the other of its
    two values while compiling) is profiled with the half_width_cost its manifest records, not this machine's:
    lowered again with this machine's, its 72-channel kernels would not be the package's (the profile's "compile
    it again" error)."""
    from archc import targets
    from archc.lower.kernels import pipeline
    from archc.lower.tvm_target import tvm_target
    if native_isa() != "avx512":
        pytest.skip("blocks of 8 against 16 are an AVX-512 choice: run on an x86 CPU with AVX-512")
    here = pipeline.half_width_cost(tvm_target(targets.get("native")))
    other = 2.0 if here < 2 else 1.1
    graph = _c72_graph()
    with monkeypatch.context() as m:
        m.setattr(pipeline, "half_width_cost", lambda tgt: other)
        _, result = compile_verified(graph, tmp_path, "native")
    manifest = json.loads((Path(result.output) / "manifest.json").read_text())
    assert manifest["build"]["layout"]["half_width_cost"] == other
    prof = archc.profile(result.output, repeat=4)
    assert {k.name for k in prof.kernels} and all(k.seconds > 0 for k in prof.kernels)


def _pointwise_block(channels: int, wide: int, size: int):
    """An inverted residual's two 1×1 layers at size × size: expand (BN, ReLU6), project (BN), the residual add."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(2)
    inits, nodes, x = [], [], "x"
    for i, (cin, cout) in enumerate([(channels, wide), (wide, channels)]):
        w = numpy_helper.from_array((rng.standard_normal((cout, cin, 1, 1)) / cin ** 0.5).astype(np.float32),
                                    f"w{i}")
        bn = [numpy_helper.from_array(a.astype(np.float32), f"{n}{i}") for n, a in
              [("g", rng.uniform(0.5, 1.5, cout)), ("b", rng.standard_normal(cout)),
               ("m", rng.standard_normal(cout) * 0.1), ("v", rng.uniform(0.5, 1.5, cout))]]
        inits += [w, *bn]
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"]),
                  helper.make_node("BatchNormalization", [f"c{i}", *(t.name for t in bn)], [f"n{i}"])]
        x = f"n{i}"
        if i == 0:
            nodes.append(helper.make_node("Clip", [x, "lo", "hi"], ["r0"]))
            x = "r0"
    inits += [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
    nodes.append(helper.make_node("Add", [x, "x"], ["y"]))
    shape = [1, channels, size, size]
    return helper.make_graph(nodes, "pointwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_a_1x1_layers_tile_runs_along_its_pixels(isa, tmp_path):
    """A 1×1, stride-1 layer may take a register tile that does not divide its row (4 pixels of a 14-pixel row)
    when its tile runs along the image's H·W pixels (conv2d._flatten): the grid offers such tiles, and a build
    whose database holds them (here written over a short search's records) equals onnxruntime, the batch norm,
    ReLU6 and the residual add fused into the epilogue on the same flat tile."""
    import onnx

    from archc.lower.kernels.conv2d import Workload
    from archc.lower.kernels.grid import candidates
    from archc.lower.kernels.search import RECORDS
    skip_unless_runs(isa)
    target, lanes = ("x86-avx512", 16) if isa == "avx512" else ("x86", 8)
    path = tmp_path / "pointwise.onnx"
    onnx.save(onnx.helper.make_model(_pointwise_block(48, 144, 14),
                                     opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    db = tmp_path / "db"
    archc.compile(path, target=target, output=tmp_path / "first", db=db)  # records the short search's choices
    records = json.loads((db / RECORDS).read_text())
    (cpu,) = records
    assert len(records[cpu]) == 2
    for key, record in records[cpu].items():
        flat = [c for c in candidates(key, lanes) if Workload.parse(key).flat(c.reg_n)]
        assert flat, key
        record.update(flat[-1].record())
    (db / RECORDS).write_text(json.dumps(records))
    result = archc.compile(path, target=target, output=tmp_path / "pkg", db=db)
    assert result.verification.status == "passed" and result.verification.max_rel_diff <= 1e-4
    build = json.loads((Path(result.output) / "manifest.json").read_text())["build"]
    assert build["conv_configs"] == {"short search": 2} and build["kernels_naive"] == 0
    x = {"x": np.random.default_rng(3).standard_normal((1, 48, 14, 14)).astype(np.float32)}
    assert_close(load_package(result.output).run(x), onnxruntime_outputs(path, x))
