"""archc's int8 convolution on AVX512-VNNI (archc/lower/kernels/vnni.py, conv2d.compute_int8): float32 blocked
data quantized to uint8 by its input kernel, int8 weights packed in quadruples, int32 sums of VPDPBUSD steps. The
integer result is exact, so it is compared with numpy's integer convolution for equality."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.tvm]


def _has_vnni() -> bool:
    from archc.util.machine import all_cpu_flags
    return {"avx512f", "avx512_vnni"} <= all_cpu_flags()


def test_weights_are_packed_four_input_channels_per_output_channel():
    """OIHW[ic_bn]i[oc_bn]o → OIHW[ic_bn/4]i[oc_bn]o[4]i: a step's 64 bytes are 16 output channels' four input
    channels; the zero point's share of each channel's sum is zero_point · Σ its weights."""
    from archc.lower.kernels import vnni
    w = np.arange(2 * 1 * 1 * 1 * 8 * 16).reshape(2, 1, 1, 1, 8, 16).astype(np.int8)  # occ, icc, kh, kw, ic, oc
    q = vnni.pack_weights(w)
    assert q.shape == (2, 1, 1, 1, 2, 16, 4) and q.dtype == np.int8
    assert q[1, 0, 0, 0, 1, 5].tolist() == [w[1, 0, 0, 0, 4 + i, 5] for i in range(4)]
    oihw = np.array([[[[1, -2]], [[3, 4]]], [[[-127, 127]], [[0, 5]]]], np.int8)  # 2 × 2 × 1 × 2
    assert vnni.zero_point_sums(oihw, 128).tolist() == [128 * 6, 128 * 5]
    assert vnni.fits(16, 16, 1, False) and vnni.fits(4, 16, 1, False)
    assert not vnni.fits(3, 16, 1, False) and not vnni.fits(16, 8, 1, False) and not vnni.fits(16, 16, 2, False)


@pytest.mark.parametrize("case", ["3x3-pad1", "1x1-stride2"])
def test_int8_convolution_on_vnni_equals_the_integer_convolution(case):
    """The input kernel quantizes as ONNX's QuantizeLinear (round half to even, saturated to 0-255) and pads with
    the zero point; the kernel, tensorized into VPDPBUSD steps, equals numpy's int64 convolution of the same
    integers exactly, on a 3×3 convolution padded by 1 and a 1×1 one of stride 2 (the ResNets' shortcut)."""
    if not _has_vnni():
        pytest.skip("this CPU has no AVX512-VNNI (Intel Cascade Lake or later, AMD Zen 4 or later runs it)")
    import tvm
    from tvm import s_tir, te
    from tvm.target import codegen

    from archc.lower.kernels import conv2d, vnni
    from archc.lower.kernels.conv2d import Config
    k, s, pad, c, o, h = {"3x3-pad1": (3, 1, 1, 32, 32, 9), "1x1-stride2": (1, 2, 0, 16, 32, 10)}[case]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, c, h, h)).astype("f4") * 3  # beyond 0-255 at this scale: saturated
    w = rng.integers(-127, 128, (o, c, k, k)).astype(np.int8)
    scale, zp = 0.02, 128
    xb = x.reshape(1, c // 16, 16, h, h).transpose(0, 1, 3, 4, 2).copy()
    packed = vnni.pack_weights(w.reshape(o // 16, 16, c // 16, 16, k, k).transpose(0, 2, 4, 5, 3, 1))
    data = te.placeholder(xb.shape, "float32", name="data")
    padded = conv2d.pad_int8(conv2d.quantize(data, scale, zp), (k, k), (s, s), (pad,) * 4, (1, 1), zp)
    quantized = te.placeholder(padded.shape, "uint8", name="quantized")
    weight = te.placeholder(packed.shape, "int8", name="weight")
    out = conv2d.compute_int8(quantized, weight, (s, s), (pad,) * 4, (1, 1), xb.shape)
    first = s_tir.Schedule(te.create_prim_func([data, padded]))
    conv2d.schedule_input(first)  # the quantization inlined into the padding, a row of it per task
    assert len(first.get_child_blocks(first.get_sblock("root"))) == 1
    assert int(first.get(first.get_loops(first.get_sblock(conv2d.PAD_INT8))[0]).extent) == \
        c // 16 * int(padded.shape[2])
    second = s_tir.Schedule(te.create_prim_func([quantized, weight, out]))
    conv2d.schedule(second, Config(reg_n=3 if h % 3 == 0 else 5, oc_tile=2))
    tgt = tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": 2})
    quantize, convolve = tvm.tirx.build(first.mod, target=tgt), tvm.tirx.build(second.mod, target=tgt)
    assert "vpdpbusd" in convolve.inspect_source("asm")
    dev = tvm.cpu()
    q = tvm.runtime.tensor(np.zeros([int(d) for d in padded.shape], np.uint8), dev)
    y = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], np.int32), dev)
    quantize(tvm.runtime.tensor(xb, dev), q)
    convolve(q, tvm.runtime.tensor(packed, dev), y)

    ints = np.clip(np.round(x / np.float32(scale)) + zp, 0, 255).astype(np.int64)  # np.round: half to even
    ints = np.pad(ints, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=zp)
    oh = (h + 2 * pad - k) // s + 1
    ref = np.zeros((o, oh, oh), np.int64)
    for i in range(k):
        for j in range(k):
            window = ints[0, :, i:i + s * oh:s, j:j + s * oh:s]
            ref += np.einsum("chw,oc->ohw", window, w[:, :, i, j].astype(np.int64))
    got = y.numpy().transpose(0, 1, 4, 2, 3).reshape(o, oh, oh)
    assert np.array_equal(got, ref)


@pytest.mark.tvm
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (1, 6, 9)], ids=["nchw-rgb", "ncl"])
def test_an_nchw_input_is_relaid_out_as_it_is_quantized(shape):
    """conv2d.quantize with a block: NCHW (or NCL, as height 1) float32 → uint8 NCHW[4]c in one kernel, as
    QuantizeLinear rounds (half to even) and saturates; the channels past the last hold the zero point, which the
    int8 convolution's zero weights for them cancel."""
    import tvm
    from tvm import s_tir, te
    from tvm.target import codegen

    from archc.lower.kernels import conv2d, generic
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3).astype("f4")
    x.flat[:4] = [0.01, 0.03, -0.05, 0.07]  # halves at scale 0.02: 0.5, 1.5, -2.5, 3.5
    scale, zp = 0.02, 128
    data = te.placeholder(shape, "float32", name="data")
    out = conv2d.quantize(data, scale, zp, 4)
    sch = s_tir.Schedule(te.create_prim_func([data, out]))
    generic.schedule(sch, 16)
    lib = tvm.tirx.build(sch.mod, target=tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}))
    y = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], np.uint8), tvm.cpu())
    lib(tvm.runtime.tensor(x, tvm.cpu()), y)
    ints = np.clip(np.round(x / np.float32(scale)) + zp, 0, 255).astype(np.uint8)
    four = np.full((shape[0], 4, *shape[2:]), zp, np.uint8)
    four[:, :shape[1]] = ints[:, :4] if shape[1] > 4 else ints
    if shape[1] > 4:  # two blocks: channels 4-5 and two of the zero point
        four = np.concatenate([four, np.full_like(four, zp)], axis=1)
        four[:, 4:shape[1]] = ints[:, 4:]
    got = y.numpy()
    got = got.transpose(0, 1, 4, *range(2, got.ndim - 1)).reshape(four.shape[0], -1, *got.shape[2:4])
    want = four if len(shape) == 4 else four[:, :, None, :]
    assert np.array_equal(got, want)
