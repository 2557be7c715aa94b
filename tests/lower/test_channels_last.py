"""ConvNeXt's channels-last block (channels_last.py) carried in NCHW and archc's blocked layout: no transpose left,
its LayerNorm over the channels run on the blocked tensor, the outputs equal to onnxruntime's (1e-4 of the range,
compile_verified) on both x86 targets."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import compile_verified

pytestmark = [pytest.mark.tvm]


def _block(channels: int, size: int = 14):
    """ConvNeXt's block as PyTorch exports it: depthwise 7×7, permute to NHWC, LayerNorm, Linear, erf GELU, Linear,
    layer scale, permute back, residual add."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)
    c, hidden = channels, 4 * channels
    arrays = {"wd": (c, 1, 7, 7), "bd": (c,), "g": (c,), "b": (c,), "w1": (c, hidden), "b1": (hidden,),
              "w2": (hidden, c), "b2": (c,), "scale": (c, 1, 1)}
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype("f4"), n) for n, s in arrays.items()]
    inits += [numpy_helper.from_array(np.array(v, "f4"), n) for n, v in (("r2", 1.4142135), ("one", 1.0),
                                                                       ("half", 0.5))]
    node = helper.make_node
    nodes = [node("Conv", ["x", "wd", "bd"], ["d"], group=c, pads=[3, 3, 3, 3]),
             node("Transpose", ["d"], ["t"], perm=[0, 2, 3, 1]),
             node("LayerNormalization", ["t", "g", "b"], ["n"], axis=-1, epsilon=1e-6),
             node("MatMul", ["n", "w1"], ["m1"]), node("Add", ["m1", "b1"], ["h"]),
             node("Div", ["h", "r2"], ["q"]), node("Erf", ["q"], ["e"]), node("Add", ["e", "one"], ["e1"]),
             node("Mul", ["h", "e1"], ["p"]), node("Mul", ["p", "half"], ["gelu"]),
             node("MatMul", ["gelu", "w2"], ["m2"]), node("Add", ["m2", "b2"], ["o"]),
             node("Transpose", ["o"], ["back"], perm=[0, 3, 1, 2]), node("Mul", ["back", "scale"], ["s"]),
             node("Add", ["s", "x"], ["y"])]
    shape = [1, c, size, size]
    return helper.make_graph(nodes, f"convnext{c}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)


def test_the_block_is_rewritten_without_a_transpose(tmp_path):
    """The Relax module after the rewrite: no permute, the matrix products are 1×1 convolutions, the LayerNorm is
    two channel means per pixel."""
    from onnx import helper
    from tvm import relax

    import archc
    from archc.lower.build import import_onnx
    from archc.lower.kernels.channels_last import channels_first
    model = helper.make_model(_block(32), opset_imports=[helper.make_opsetid("", 17)])
    mod = import_onnx(archc.load(_saved(model, tmp_path), batch=1))
    before = mod["main"].script(show_meta=False)
    mod = relax.transform.DecomposeOpsForInference()(mod)
    after = channels_first(mod)["main"].script(show_meta=False)
    assert before.count("R.permute_dims") == 2 and "R.nn.layer_norm" in before and "R.matmul" in before
    assert "R.permute_dims" not in after and "R.matmul" not in after and "R.nn.layer_norm" not in after
    assert after.count("R.nn.conv2d") == 3 and after.count("R.mean(") == 2 and "axis=[1]" in after


def _saved(model, folder: Path) -> Path:
    import onnx
    path = folder / "block.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("name", ["x86-avx512", "x86"])
@pytest.mark.parametrize("channels", [32, 24])
def test_a_convnext_block_runs_blocked_and_equals_onnxruntime(name, channels, tmp_path):
    """At 32 channels (whole blocks of 8 and 16) the block keeps the blocked layout throughout: the layout plan
    changes layout only at the model's input and output, and every kernel has packed instructions. At 24 channels
    AVX-512's blocks of 16 are zero-padded: the channel means would count the padding, so the LayerNorm runs in
    NCHW there (a relayout each way), still equal to onnxruntime."""
    from archc.lower.vector_width import objdump_for, widths
    from archc.util.peak import detect_isa
    if detect_isa() not in ("avx512", "avx2") or name == "x86-avx512" and detect_isa() != "avx512":
        pytest.skip(f"{name}'s code cannot run on this CPU: run on an x86 CPU with "
                    f"{'AVX-512' if name == 'x86-avx512' else 'AVX2'} (the other width runs here where it can)")
    _, result = compile_verified(_block(channels), tmp_path, name)
    build = json.loads((Path(result.output) / "manifest.json").read_text())["build"]
    moved = [t for t in build["layout"]["transforms"] if "model's output" not in t]
    padded = channels % (16 if name == "x86-avx512" else 8) != 0
    assert len(moved) == (3 if padded else 1), moved  # the input's relayout; padded: also LayerNorm's in and out
    if padded or objdump_for(None) is None:
        return
    library = next(Path(result.output).glob("*.so"))
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    names = [s.split()[-1].removeprefix("__tvm_ffi_") for s in symbols.splitlines() if "__tvm_ffi_" in s]
    found = widths(library, names, objdump_for(None))
    assert not any("transpose" in n for n in found) and any("mean" in n for n in found), found
    assert {n for n, w in found.items() if w == "scalar"} <= {"te_layout_transform"}, found
