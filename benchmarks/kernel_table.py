"""Search the configuration of every convolution shape in the zoo and write this CPU's shipped table for an ISA.

    python benchmarks/kernel_table.py --isa avx512 [--models resnet18,resnet50] [--merge [--again | --flat]]
                                      [--precision bf16|int8]

For each model (default: every spec in specs/), archc's layout plan is made for the ISA's target (`x86-avx512`:
16 lanes, `x86`: AVX2, 8 lanes) and each convolution workload gets the small per-layer search
(archc/lower/kernels/search.py), measured on this machine. The best configuration per workload is written to
archc/lower/kernels/tables/<isa>/<cpu>.json, <cpu> being LLVM's name for this CPU (with --merge, added to what is
there). Every compile for that ISA uses it for a workload its tuning database has not searched when it compiles for
that CPU, and the nearest table otherwise (search.tables_for). Prints one line per workload: its time and GFLOP/s.
With `--precision bf16` (on a CPU with AVX512-BF16, with --merge), the models are planned in bf16 and the bf16
kernel's workloads (`bf16:d…`) are searched with that kernel, into the same table: a bf16 build takes them before
its shapes' float32 configurations. `--precision int8` (VNNI) likewise for the int8 kernel's (`int8:d…`), each
model quantized to QDQ first as `archc bench`'s onnxruntime-int8 engine does (min-max ranges of random inputs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"avx512": "x86-avx512", "avx2": "x86"}


def main() -> None:
    import archc
    from archc import targets
    from archc.errors import ArchcError
    from archc.lower import kernels, tune
    from archc.lower.build import choose_precision, import_onnx, tvm_target_at
    from archc.lower.kernels.conv2d import parse
    from archc.lower.kernels.grid import flat_tiles
    from archc.lower.kernels.search import TABLES, out_size, search
    from archc.measurement.environment import llvm_cpu
    from archc.util.peak import detect_isa

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", choices=sorted(TARGETS), required=True)
    ap.add_argument("--models", help="comma-separated spec names (default: the whole zoo)")
    ap.add_argument("--merge", action="store_true", help="keep the table's other workloads")
    ap.add_argument("--again", action="store_true",
                    help="with --merge: search the given models' workloads again even where the table has them")
    ap.add_argument("--flat", action="store_true",
                    help="with --merge: search again only the workloads a flat 1×1 tile applies to (grid.flat_tiles), "
                         "the entries a table searched before those tiles existed can gain from")
    ap.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                    help="bf16, int8: the workloads of that kernel in the models' builds at that precision "
                         "(needs --merge)")
    args = ap.parse_args()
    if (args.again or args.flat or args.precision != "fp32") and not args.merge:
        ap.error("--again, --flat and --precision bf16|int8 work on a table's entries: they need --merge")
    # code for this CPU where it has the ISA (what `--target native` builds), else the ISA's generic target
    target = targets.get("native" if detect_isa() == args.isa else TARGETS[args.isa])
    try:
        tgt = tvm_target_at(target, choose_precision(target, "archc", args.precision)[0])
    except ArchcError as err:  # bf16 or int8 on a CPU that cannot run it: the sentence that says so
        ap.error(str(err))
    lanes = kernels.lanes(tgt)
    names = args.models.split(",") if args.models else sorted(p.stem for p in (ROOT / "specs").glob("*.arch"))
    path = TABLES / args.isa / f"{llvm_cpu()}.json"  # named after the CPU it is measured on
    table = json.loads(path.read_text()) if args.merge and path.is_file() else {}
    searched: set[str] = set()  # this run's, once each
    for name in names:
        try:
            model = archc.load(ROOT / "specs" / f"{name}.arch")
            if args.precision == "int8":
                model = _quantized(model)
            prepared = tune.prepare(import_onnx(model), tgt, "archc", precision=args.precision)
        except Exception as err:  # noqa: BLE001 - a model TVM cannot import: say so, go on
            print(f"{name}: skipped ({str(err).splitlines()[0][:100]})", flush=True)
            continue
        for key in sorted(set(kernels.workloads(prepared).values())):
            again = args.again or (args.flat and bool(flat_tiles(parse(key))))
            if key in searched or (key in table and not again):
                continue
            searched.add(key)
            start = time.perf_counter()
            config, seconds = search(key, lanes, tgt)
            data, weight = parse(key)[:2]
            oh, ow = out_size(key)
            flops = 2 * data[0] * weight[0] * weight[5] * oh * ow * weight[1] * weight[4] * weight[2] * weight[3]
            table[key] = config.record()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
            print(f"{name}: {key}: {config} {seconds * 1e6:.1f} µs, {flops / seconds / 1e9:.0f} GFLOP/s "
                  f"(searched in {time.perf_counter() - start:.1f} s)", flush=True)
    print(f"{len(table)} workloads in {path}")


def _quantized(model):  # noqa: ANN001, ANN202 - archc.Model in, out
    """The model's int8 QDQ form, as `archc bench`'s onnxruntime-int8 engine makes it (min-max ranges of random
    inputs: the workloads' shapes, not their numbers, are what the search needs)."""
    import tempfile

    import archc
    from archc.measurement.engines import OnnxRuntimeInt8
    qdq = OnnxRuntimeInt8.qdq(model.proto)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "model.int8.onnx"
        path.write_bytes(qdq.SerializeToString())
        return archc.load(path, batch=1)


if __name__ == "__main__":
    main()
