"""Winograd's F(4×4, 3×3) for 3×3 stride-1 convolutions (archc/lower/kernels/winograd.py): the three kernels alone
against a float64 direct convolution (odd sizes, tiles past the edge, no padding, one-sided padding, a batch of 2),
whole models against onnxruntime on both vector widths, and the plan's choice (which layers take it, which do not).

Tolerance: 1e-5 of the output's range for the kernels alone (F(4×4)'s transforms lose about 3e-6 on 64-256
channels, measured), 1e-4 for models, as every other kernel's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import compile_verified, native_isa, skip_unless_runs

from archc.lower.kernels import winograd

pytestmark = [pytest.mark.tvm]


def _direct(x: np.ndarray, w: np.ndarray, padding: tuple[int, int, int, int]) -> np.ndarray:
    """NCHW × OIHW 3×3 stride 1 in float64."""
    top, left, bottom, right = padding
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (top, bottom), (left, right)])
    oh, ow = xp.shape[2] - 2, xp.shape[3] - 2
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j].astype(np.float64))
    return out


def test_the_transforms_of_f4_are_cook_toom_on_accurate_points():
    """Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A is the 3×3 correlation of a 6×6 tile (exactly, in float64), and the weights'
    transform is G g Gᵀ per output and input channel."""
    at, bt, g = winograd.matrices(4)
    assert at.shape == (4, 6) and bt.shape == (6, 6) and g.shape == (6, 3)
    rng = np.random.default_rng(0)
    d, k = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    y = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
    want = np.array([[np.sum(d[i:i + 3, j:j + 3] * k) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
    w = rng.standard_normal((5, 7, 3, 3))
    u = winograd.weights(w, 4)
    assert u.shape == (36, 5, 7, 1, 1)
    np.testing.assert_allclose(u[:, 2, 3, 0, 0].reshape(6, 6), g @ w[2, 3] @ g.T, atol=1e-12)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@pytest.mark.parametrize("case", [
    # channels, out channels, height, width, padding (top, left, bottom, right), batch
    (32, 16, 13, 17, (1, 1, 1, 1), 1),  # tiles past the bottom and right edges (13 = 3·4 + 1 rows of output)
    (16, 32, 12, 14, (0, 0, 0, 0), 2),  # no padding, a batch of 2: tiles numbered across the batch
    (16, 16, 9, 10, (0, 1, 1, 0), 1),  # one-sided padding, as ONNX allows
], ids=["edges", "batch2-valid", "one-sided"])
def test_three_kernels_equal_a_direct_convolution(isa, case):
    """The input transform, the products on archc's blocked kernel (as a 1×1 convolution of 36 groups) and the
    output transform with a bias and ReLU fused, each scheduled as a build schedules it (every loop nest
    vectorized, the outer one parallel), equal the direct convolution within 1e-5 of the range."""
    skip_unless_runs(isa)
    import tvm
    from tvm import s_tir, te, tirx

    from archc import targets
    from archc.lower.kernels import conv2d
    from archc.lower.kernels.conv2d import Config
    from archc.lower.kernels.layout import _packed
    from archc.lower.tvm_target import tvm_target
    channels, out, h, w_, padding, n = case
    bn = 16 if isa == "avx512" else 8
    tgt = tvm_target(targets.get({"avx512": "x86-avx512", "avx2": "x86"}[isa]))
    rng = np.random.default_rng(sum(case[:4]))
    x = rng.standard_normal((n, channels, h, w_)).astype("f4")
    w = (rng.standard_normal((out, channels, 3, 3)) / np.sqrt(9 * channels)).astype("f4")
    bias = rng.standard_normal(out).astype("f4")
    want = np.maximum(_direct(x, w, padding) + bias[None, :, None, None], 0)

    data = te.placeholder((n, channels // bn, h, w_, bn), "float32", name="x")
    v = winograd.transform_input(data, padding, 4)
    u = np.concatenate([_packed(u, bn, bn) for u in winograd.weights(w, 4)]).astype("f4")
    vp = te.placeholder(v.shape, "float32", name="v")
    up = te.placeholder(u.shape, "float32", name="u")
    products = conv2d.compute(vp, up, (1, 1), (0, 0, 0, 0), (1, 1), "float32")
    mp = te.placeholder(products.shape, "float32", name="m")
    b = te.placeholder((1, out // bn, 1, 1, bn), "float32", name="b")
    y = winograd.transform_output(mp, data.shape, padding, 4)
    relu = te.compute(y.shape, lambda *i: te.max(y(*i) + b[0, i[1], 0, 0, i[4]], tvm.tirx.const(0, "float32")))
    kernels = [(te.create_prim_func([data, v]), winograd.schedule_input),
               (te.create_prim_func([vp, up, products]), lambda s: conv2d.schedule(s, Config(7, 1))),
               (te.create_prim_func([mp, b, relu]), winograd.schedule_output)]
    built = []
    for func, rule in kernels:
        sch = s_tir.Schedule(func)
        rule(sch)
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            kinds = [sch.get(loop).kind for loop in sch.get_loops(block)]
            assert tirx.ForKind.PARALLEL in kinds and tirx.ForKind.VECTORIZED in kinds, sch.mod.script()
        built.append(tvm.tirx.build(sch.mod, target=tgt))

    def array(shape, value=None):
        return tvm.runtime.tensor(np.zeros([int(d) for d in shape], "f4") if value is None else value)

    xb = array(data.shape, np.ascontiguousarray(x.reshape(n, channels // bn, bn, h, w_).transpose(0, 1, 3, 4, 2)))
    vt, mt, yt = array(v.shape), array(products.shape), array(relu.shape)
    built[0](xb, vt)
    built[1](vt, array(u.shape, u), mt)
    built[2](mt, array(b.shape, np.ascontiguousarray(bias.reshape(1, out // bn, 1, 1, bn))), yt)
    got = yt.numpy().transpose(0, 1, 4, 2, 3).reshape(want.shape)
    assert float(np.abs(got - want).max()) <= 1e-5 * float(np.abs(want).max())


def _blocks_graph():
    """A ResNet basic block at 30×30 (3×3 convolutions with BN, ReLU, the residual add), then a 3×3 convolution
    without padding (30 → 28), one of stride 2 and a 3×3 convolution at 7×7 (direct: too few tiles)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)

    def init(name, *shape, scale=0.1):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype("f4"), name)

    inits = [init("w1", 48, 32, 3, 3), init("w2", 32, 48, 3, 3), init("w3", 24, 32, 3, 3), init("b3", 24),
             init("w4", 32, 24, 3, 3), init("w5", 32, 32, 3, 3),
             *(init(f"bn{p}", 48 if i == 0 else 32, scale=s) for i in (0, 1) for p, s in
               ((f"{i}s", 1), (f"{i}b", 1), (f"{i}m", 1), (f"{i}v", 0)))]
    for t in inits:
        if t.name.endswith("v"):  # variances: positive
            t.CopyFrom(numpy_helper.from_array(np.abs(numpy_helper.to_array(t)) + 0.5, t.name))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn0s", "bn0b", "bn0m", "bn0v"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "bn1s", "bn1b", "bn1m", "bn1v"], ["n2"]),
             helper.make_node("Add", ["n2", "x"], ["s"]), helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]), helper.make_node("Relu", ["c3"], ["r3"]),
             helper.make_node("Conv", ["r3", "w4"], ["c4"], pads=[1, 1, 1, 1], strides=[4, 4]),
             helper.make_node("Conv", ["c4", "w5"], ["y"], pads=[1, 1, 1, 1])]
    for node in nodes:  # named after their outputs, as the profile names them
        node.name = node.output[0]
    return helper.make_graph(nodes, "wino", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 30, 30])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 7, 7])], inits)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """isa → (the model's path, the package's folder), compiled once (compile_verified: equal to onnxruntime within
    1e-4 of the range)."""
    made: dict[str, tuple[Path, Path]] = {}

    def build(isa: str) -> tuple[Path, Path]:
        if isa not in made:
            path, result = compile_verified(_blocks_graph(), tmp_path_factory.mktemp(isa),
                                            {"avx512": "x86-avx512", "avx2": "x86"}[isa])
            made[isa] = path, Path(result.output)
        return made[isa]
    return build


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_a_model_runs_its_3x3_convolutions_as_winograd_tiles(isa, built):
    """The plan takes F(4×4, 3×3) for the 3×3 stride-1 convolutions of many tiles (30×30 and 28×28 outputs, padded
    or not, the batch norm folded and the residual add fused into the output transform) and the direct kernel for
    the strided one and the 7×7 one; the compiled model equals onnxruntime (compile_verified: 1e-4 of the range)."""
    skip_unless_runs(isa)
    _, folder = built(isa)
    layout = json.loads((folder / "manifest.json").read_text())["build"]["layout"]
    wino = [c["conv"] for c in layout["convolutions"] if "Winograd F(4×4, 3×3)" in c["conv"]]
    assert [c.split(",")[0] for c in wino] == ["32×30×30 → 48", "48×30×30 → 32", "32×30×30 → 24"], layout
    assert len(layout["convolutions"]) == 5 and all(c["folded"] >= 0 for c in layout["convolutions"])


def _bf16_layout(graph, folder: Path, target: str) -> tuple[Path, list[dict]]:
    import onnx
    from onnx import helper

    import archc
    path = folder / "wino.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = archc.compile(path, target=target, output=folder / "pkg", quick=0, db=folder / "db", precision="bf16")
    if result.verification is not None and result.verification.status != "skipped":
        assert result.verification.status == "passed", result.verification  # bf16's tolerance of fp32
    layout = json.loads((Path(result.output) / "manifest.json").read_text())["build"]["layout"]
    return Path(result.output), layout["convolutions"]


def test_a_bf16_build_takes_winograd_with_bf16_products(tmp_path):
    """--precision bf16 on AVX512-BF16: the Winograd layers' products run in bf16 on VDPBF16PS steps (the input
    transform rounds its tiles to bf16, the sums stay float32); the strided and 7×7 layers in bf16 direct. Measured
    on Zen 4: ResNet-18 bf16 0.62 → 0.47-0.49× onnxruntime fp32, ResNet-50 0.67 → 0.60; the difference from
    onnxruntime fp32 3.7e-3 and 4.2e-3 of the range (2.9e-3 and 3.2e-3 before), same top classes."""
    from archc import targets
    from archc.lower.build import bf16_unavailable
    unavailable = bf16_unavailable(targets.get("native"))
    if unavailable:
        pytest.skip(f"this CPU cannot run bf16 builds: {unavailable[0]}")
    _, layout = _bf16_layout(_blocks_graph(), tmp_path, "native")
    convs = [c["conv"] for c in layout]
    assert not any("Winograd F(4×4, 3×3) bf16" in c for c in convs), convs  # bf16 products take F(2×2) (layout.py)
    wino = [c for c in convs if "Winograd F(2×2, 3×3)" in c or "Winograd F(4×4, 3×3)" in c]
    if any(c.endswith("bf16 on AMX") for c in convs):  # AMX's tiles take every layer they fit, directly
        assert not wino, convs
    else:
        # where the plan gives the 24-channel output blocks of 8 (Zen 4's half-width cost), not VDPBF16PS's 16,
        # its products stay float32; padded to 16 (the cost measured otherwise), bf16
        assert len(wino) == 3 and [c["conv"].endswith("bf16 on AVX512-BF16") for c in layout] == [
            c["out"] != "NCHW8c" for c in layout], layout


def test_an_aarch64_bf16_build_runs_winograd_on_bfdot_under_qemu(tmp_path):
    """graviton3 (here under qemu): the Winograd products on BFDOT steps, two 4-lane steps per block of 8 (their
    rows of tiles need not pair, as BFMMLA's would), as the stride-4 convolution's; the 3×3 one at 7×7 on BFMMLA,
    its row of 7 computed as 4 pairs and cut; the emulated library equals onnxruntime fp32 to bf16's tolerance with
    the same top class."""
    from helpers import GRAVITON3_UNDER_QEMU, assert_emulated_like_onnxruntime
    target = tmp_path / "graviton3-qemu.toml"
    target.write_text(GRAVITON3_UNDER_QEMU)
    folder, layout = _bf16_layout(_blocks_graph(), tmp_path, str(target))
    convs = [c["conv"] for c in layout]
    wino = [c for c in convs if "Winograd F(2×2, 3×3) bf16" in c]
    assert len(wino) == 3 and [c.rsplit(" on ", 1)[1] for c in convs] == ["BFDOT"] * 4 + ["BFMMLA"], convs
    assert_emulated_like_onnxruntime(folder, ("bfdot", "bfmmla"))


def test_a_profile_names_the_convolution_in_each_of_its_three_kernels(built):
    """`archc profile`: the input transform, the products and the output transform each name their Conv, the output
    transform its epilogue (BN, the residual Add, ReLU) too; the products' MACs are the multiplies they do, 36 per
    tile and channel pair (a quarter of the direct count here, 30×30 in 8×8 tiles of 4×4), the transforms' none;
    no kernel runs above the FMA peak."""
    isa = native_isa()
    if not isa:
        pytest.skip("needs an x86 CPU with AVX2 or AVX-512 to run the package")
    import onnx

    import archc
    from archc.util.peak import fma_peak
    path, folder = built(isa)
    profile = archc.profile(folder, repeat=4, threads=1)
    graph = onnx.load(str(path)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    stages = {stage: [k for k in profile.kernels if stage in k.name]
              for stage in ("winograd_input", "winograd_products", "winograd_output")}
    for stage, kernels in stages.items():
        named = [n for k in kernels for n in k.nodes if n in convs]
        assert sorted(named) == sorted(convs[:3]), (stage, [(k.name, k.nodes) for k in kernels])
    tails = {n for k in stages["winograd_output"] for n in k.nodes if n not in convs}
    op_of = {n.name: n.op_type for n in graph.node}
    assert sorted(op_of[n] for n in tails) == ["Add", "BatchNormalization", "BatchNormalization", "Relu", "Relu",
                                                "Relu"]
    bn = 16 if isa == "avx512" else 8
    padded = [(32, 48), (48, 32), (32, -(-24 // bn) * bn)]
    want = 36 * sum(t * c * o for t, (c, o) in zip((8 * 8, 8 * 8, 7 * 7), padded, strict=True))  # 30, 30, 28 wide
    assert sum(k.macs or 0 for k in stages["winograd_products"]) == want
    assert all(k.macs == 0 for k in stages["winograd_input"] + stages["winograd_output"])
    # 1.5×, not 1.0: on a shared host the peak, measured apart from the kernels, can read low; counting the
    # products' MACs as direct convolution's would put them at 4× theirs
    peak = float(fma_peak(1)["gflops"])
    assert all(k.gflops is None or k.gflops <= 1.5 * peak for k in profile.kernels)


@pytest.mark.parametrize(("shape", "m"), [
    # channels, out channels, kernel, strides, dilation, input channels per group as computed, output size
    ((64, 64, (3, 3), (1, 1), (1, 1), 64, (56, 56)), 4),
    ((256, 256, (3, 3), (1, 1), (1, 1), 256, (14, 14)), 4),
    ((128, 32, (3, 3), (1, 1), (1, 1), 128, (56, 56)), 4),  # DenseNet's: more input channels to transform
    ((32, 32, (3, 3), (1, 1), (1, 1), 32, (112, 112)), 4),
    # ResNeXt-50's 4-channel groups, merged 4 at a time: products of 16 channels, transforms of 128
    ((128, 128, (3, 3), (1, 1), (1, 1), 16, (56, 56)), 0),
    ((16, 16, (3, 3), (1, 1), (1, 1), 16, (56, 56)), 0),  # too few channels to pay for the transforms
    ((512, 512, (3, 3), (1, 1), (1, 1), 512, (7, 7)), 0),  # four 4×4 tiles for 49 outputs: slower (measured)
    ((64, 64, (3, 3), (2, 2), (1, 1), 64, (28, 28)), 0),  # strided
    ((64, 64, (3, 3), (1, 1), (2, 2), 64, (56, 56)), 0),  # dilated
    ((64, 64, (3, 3), (1, 1), (1, 1), 8, (56, 56)), 0),  # groups of 8 (on AVX2's 8-channel blocks)
    ((3, 64, (3, 3), (1, 1), (1, 1), 3, (224, 224)), 0),  # an RGB stem: the transforms would cost more than saved
    ((64, 64, (1, 3), (1, 1), (1, 1), 64, (56, 56)), 0),
])
def test_which_convolutions_take_winograd(shape, m):
    assert winograd.tile_size(*shape) == m
