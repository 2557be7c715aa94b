"""The vector width `archc profile` reports per kernel, read from the library's machine code
(archc/lower/vector_width.py): packed float32 or integer instructions on zmm/ymm (x86) or v.4s (aarch64), else
"scalar"."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import compile_verified

pytestmark = [pytest.mark.tvm]


def _library(tmp_path, target_name: str):
    """A library of three kernels: an elementwise one the schedule vectorizes, the same on integers (a float's top
    16 bits, as bf16's packing computes: no float instruction in it), and a float sum whose order LLVM must keep (no
    reassociation: scalar)."""
    import tvm
    from tvm import s_tir, te

    from archc import targets
    from archc.lower import link
    from archc.lower.tvm_target import tvm_target
    target = targets.get(target_name)
    tgt = tvm_target(target)
    x = te.placeholder((64, 256), name="x")
    funcs = {}
    y = te.compute((64, 256), lambda i, j: x[i, j] * 2.0 + 1.0, name="y")
    sch = s_tir.Schedule(te.create_prim_func([x, y]))
    i, j = sch.get_loops(sch.get_sblock("y"))
    sch.vectorize(sch.split(j, [None, 16 if target_name == "x86-avx512" else 4 if "arm" in target_name else 8])[1])
    funcs["wide"] = sch.mod["main"]
    b = te.compute((64, 256), lambda i, j: (tvm.tirx.reinterpret("uint32", x[i, j]) >> 16).astype("uint16"),
                   name="b")
    sch = s_tir.Schedule(te.create_prim_func([x, b]))
    i, j = sch.get_loops(sch.get_sblock("b"))
    sch.vectorize(sch.split(j, [None, 16 if target_name == "x86-avx512" else 4 if "arm" in target_name else 8])[1])
    funcs["bits"] = sch.mod["main"]
    k = te.reduce_axis((0, 256), name="k")
    s = te.compute((64,), lambda i: te.sum(x[i, k], axis=k), name="s")
    funcs["chain"] = te.create_prim_func([x, s])
    mod = tvm.IRModule({tvm.ir.GlobalVar(n): f.with_attr("global_symbol", n) for n, f in funcs.items()})
    path = tmp_path / "k.so"
    tvm.tirx.build(mod, target=tgt).export_library(str(path), fcompile=link.fcompile(target.cross_compiler))
    return path, target


@pytest.mark.parametrize("name,wide", [("x86-avx512", "512-bit"), ("x86", "256-bit"), ("arm64", "128-bit")])
def test_each_kernel_gets_the_width_of_its_machine_code(name, wide, tmp_path):
    from archc.lower.vector_width import objdump_for, widths
    if name == "arm64" and shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("no aarch64 cross compiler (scripts/install-test-deps.sh installs it)")
    path, target = _library(tmp_path, name)
    objdump = objdump_for(target.cross_compiler)
    assert objdump is not None
    assert widths(path, ["wide", "bits", "chain", "absent"], objdump) == {"wide": wide, "bits": wide,
                                                                          "chain": "scalar"}
    assert widths(path, ["wide"], None) == {}  # no disassembler: no width, not a guess
    assert widths(tmp_path / "missing.so", ["wide"], objdump) == {}


def test_the_profile_has_a_vector_column(tmp_path):
    """archc profile of a package: every kernel's width known, the convolutions' the target's vector register."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from archc.lower.profile import profile
    from archc.render.views import profile_table
    from archc.util.peak import detect_isa
    if shutil.which("objdump") is None or detect_isa() not in ("avx512", "avx2"):
        pytest.skip("needs objdump (apt-get install binutils) and an x86 CPU with AVX2 or AVX-512")
    w = numpy_helper.from_array(np.ones((16, 8, 3, 3), "f4"), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["c"], ["y"])], "c",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 14, 14])], [w])
    _, result = compile_verified(graph, tmp_path, "native")
    prof = profile(result.output, repeat=4)
    assert all(k.vector for k in prof.kernels)
    conv = [k for k in prof.kernels if "conv2d_nchwc" in k.name]
    assert conv and conv[0].vector == {"avx512": "512-bit", "avx2": "256-bit"}[detect_isa()]
    table = profile_table(prof)
    assert "Vector" in [c.header for c in table.columns]


@pytest.mark.parametrize("name,wide", [("x86-avx512", "512-bit"), ("x86", "256-bit")])
def test_concatenations_run_at_vector_width(name, wide, tmp_path):
    """DenseNet's concat + BN + ReLU and a plain channel concatenation on blocked tensors: the concatenation picks
    its source by the channel block, so only the block's own axis is vectorized (fused with the outer loops, the
    pick was per lane and TVM's vectorizer gave up: DenseNet-121 1.20× → 0.95× onnxruntime). Every kernel of the
    library but the input's relayout has packed instructions, the concatenations of the target's width, and the
    model equals onnxruntime."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from archc.lower.vector_width import objdump_for, widths
    from archc.util.peak import detect_isa
    if objdump_for(None) is None or detect_isa() not in ("avx512", "avx2") or \
            name == "x86-avx512" and detect_isa() != "avx512":
        pytest.skip(f"needs objdump (apt-get install binutils) and a CPU that runs {name}'s code")
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype("f4") * 0.2, n) for n, s in (
        ("w1", (32, 16, 3, 3)), ("w2", (16, 48, 1, 1)), ("scale", (48,)), ("bias", (48,)), ("mean", (48,)))]
    inits.append(numpy_helper.from_array(rng.uniform(0.5, 2, 48).astype("f4"), "var"))
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), node("Concat", ["x", "a"], ["c"], axis=1),
             node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"]), node("Relu", ["b"], ["r"]),
             node("Conv", ["r", "w2"], ["d"]), node("Concat", ["d", "a"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48, 12, 12])], inits)
    _, result = compile_verified(graph, tmp_path, name)
    library = next(Path(result.output).glob("*.so"))
    import subprocess
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    names = [s.split()[-1].removeprefix("__tvm_ffi_") for s in symbols.splitlines() if "__tvm_ffi_" in s]
    found = widths(library, names, objdump_for(None))
    assert any("concatenate" in n for n in found) and found, found
    # the input's relayout (NCHW → NCHW16c) is a transpose, strided reads: the one kernel left scalar
    assert {n for n, w in found.items() if w == "scalar"} <= {"te_layout_transform"}
    assert {n: w for n, w in found.items() if "concatenate" in n} == {n: wide for n in found if "concatenate" in n}


@pytest.mark.parametrize("name,h", [("x86-avx512", 28), ("x86", 28), ("x86-avx512", 7), ("x86", 7)])
def test_a_shufflenet_unit_runs_at_vector_width(name, h, tmp_path):
    """ShuffleNet v2's unit at 116 channels: split in halves, one half through 1×1, depthwise 3×3 and 1×1
    convolutions, concatenated with the other, then the channel shuffle (reshape, transpose, reshape: NCHW only).
    The layout plan once kept the halves in blocks of 2 channels, and the copies between NCHW and those blocks,
    the concatenation picking its source per block and the slices' rows of 28 ran scalar (2.6 ms of ShuffleNet v2's
    8.1 ms of kernels, each timed alone; 4 to 6 of this unit's 9 kernels). Now the halves' 58 channels are padded
    to whole vectors' blocks, and the slice, the concatenation and the shuffle run in NCHW, fused into one kernel
    whose rows of 28 LLVM vectorizes. At 7×7 (the last stage) a row of 7 is too short for LLVM, and the select
    per element of the concatenation kept the kernel scalar: the shuffle is now split by its period (channel 2i + g
    is channel i of half g), each half's rows copied as one vectorized loop of 49. Every kernel of the library has
    packed instructions, and the unit equals onnxruntime."""
    import subprocess

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from archc.lower.vector_width import objdump_for, widths
    from archc.util.peak import detect_isa
    if objdump_for(None) is None or detect_isa() not in ("avx512", "avx2") or \
            name == "x86-avx512" and detect_isa() != "avx512":
        pytest.skip(f"needs objdump (apt-get install binutils) and a CPU that runs {name}'s code")
    rng = np.random.default_rng(6)
    c, half = 116, 58
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype("f4") * 0.2, n)
             for n, s in (("w1", (half, half, 1, 1)), ("wd", (half, 1, 3, 3)), ("w2", (half, half, 1, 1)))]
    inits += [numpy_helper.from_array(np.array(v, "i8"), n)
              for n, v in (("s1", [1, 2, half, h, h]), ("s2", [1, c, h, h]), ("sp", [half, half]))]
    node = helper.make_node
    nodes = [node("Split", ["x", "sp"], ["x1", "x2"], axis=1), node("Conv", ["x2", "w1"], ["a"]),
             node("Relu", ["a"], ["r"]), node("Conv", ["r", "wd"], ["d"], group=half, pads=[1, 1, 1, 1]),
             node("Conv", ["d", "w2"], ["e"]), node("Relu", ["e"], ["f"]), node("Concat", ["x1", "f"], ["k"], axis=1),
             node("Reshape", ["k", "s1"], ["b"]), node("Transpose", ["b"], ["t"], perm=[0, 2, 1, 3, 4]),
             node("Reshape", ["t", "s2"], ["y"])]
    graph = helper.make_graph(nodes, "unit", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, h])], inits)
    _, result = compile_verified(graph, tmp_path, name)
    library = next(Path(result.output).glob("*.so"))
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    names = [s.split()[-1].removeprefix("__tvm_ffi_") for s in symbols.splitlines() if "__tvm_ffi_" in s]
    found = widths(library, names, objdump_for(None))
    assert any("layout_transform" in n for n in found) and any("concatenate" in n for n in found), found
    assert "scalar" not in found.values(), sorted(found.items())
