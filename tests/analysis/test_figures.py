"""Analyzer figures against values derived by hand (written out here) and published ones."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from archc import analyze

SPECS = Path(__file__).resolve().parents[2] / "specs"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))


def test_alexnet_conv1_as_in_the_paper(arch):
    """227×227×3 input, 96 filters of 11×11 at stride 4: (227 − 11)/4 + 1 = 55; 11·11·3·96 + 96 = 34,944."""
    a = analyze(arch("conv1: conv(96, 11, stride=4, pad=valid) relu", shape="3x227x227"))
    conv1 = a.layer("conv1")
    assert conv1.output_shape == (1, 96, 55, 55)
    assert conv1.params == 11 * 11 * 3 * 96 + 96 == 34_944
    assert conv1.macs == 55 * 55 * 96 * 11 * 11 * 3


def test_googlenet_inception_3a_5x5_path_with_and_without_reduction(arch):
    """28×28×192 in, 32 filters of 5×5: 28·28·32·5·5·192 = 120,422,400 MACs; with a 16-filter 1×1 reduction first:
    28·28·16·192 + 28·28·32·5·5·16 = 2,408,448 + 10,035,200 = 12,443,648."""
    direct = analyze(arch("conv(32, 5)", shape="192x28x28"))
    assert direct.totals.macs == 120_422_400
    a = analyze(str(SPECS / "googlenet.arch"))
    reduced = a.layer("inception_3a/b3/reduce").macs + a.layer("inception_3a/b3/conv").macs
    assert reduced == 12_443_648
    assert a.layer("inception_3a/b3/reduce").input_shapes[0] == (1, 192, 28, 28)


def test_three_stacked_3x3_see_what_one_7x7_sees(arch):
    a = analyze(arch("c: conv(8, 3) * 3"))
    b = analyze(arch("c: conv(8, 7)"))
    assert a.layer("c_3").receptive_field.size == b.layer("c").receptive_field.size == (7.0, 7.0)
    # and with fewer weights: 3·(3·3·C·C) versus 7·7·C·C for C channels in and out (VGG's argument)
    assert 3 * 3 * 3 < 7 * 7


def test_vgg16_and_resnet50_published_figures():
    vgg = analyze(str(SPECS / "vgg16.arch"))
    assert vgg.totals.trainable_params == 138_357_544
    assert vgg.totals.depth == 16
    resnet = analyze(str(SPECS / "resnet50.arch"))
    assert resnet.totals.trainable_params == 25_557_032
    assert resnet.totals.nontrainable_params == 53_120  # BN running mean and variance: 2 × 26,560 channels
    assert resnet.totals.depth == 50
    assert abs(resnet.totals.macs / 1e9 - 4.1) < 0.05  # "about 4.1 GMACs"


@pytest.mark.parametrize("spec, weights", [
    ("alexnet", "AlexNet_Weights"), ("vgg16", "VGG16_Weights"), ("googlenet_bn", "GoogLeNet_Weights"),
    ("resnet18", "ResNet18_Weights"), ("resnet50", "ResNet50_Weights"), ("resnext50_32x4d", "ResNeXt50_32X4D_Weights"),
    ("densenet121", "DenseNet121_Weights"), ("mobilenet_v2", "MobileNet_V2_Weights"),
    ("squeezenet1_1", "SqueezeNet1_1_Weights"), ("shufflenet_v2_x1_0", "ShuffleNet_V2_X1_0_Weights"),
])
@pytest.mark.torch
def test_macs_match_torchvision_published_gflops(spec, weights):
    """torchvision publishes `_ops` in GFLOPS counted as multiply-accumulates of convs and linears (fvcore's
    convention), rounded to 3 decimals: archc's MACs must agree to that rounding."""
    from torchvision_ref import torchvision_models
    published = list(getattr(torchvision_models(), weights))[0].meta["_ops"]
    a = analyze(str(SPECS / f"{spec}.arch"))
    assert abs(a.totals.macs / 1e9 - published) <= 0.0015, (a.totals.macs, published)


def test_dilated_1d_stack_receptive_field(arch):
    """Two kernel-2, stride-2 1-D convolutions: r = 1 + 1·1 = 2, then 2 + 1·2 = 4 inputs.
    With dilation 2 in both: r = 1 + (2 − 1)·2·1 = 3, jump 2; then 3 + (2 − 1)·2·2 = 7.
    A lecture figure says 8; the recurrence gives 7 (8 is what kernel-2 layers with dilations 1, 2, 4 at stride 1
    reach: 1 + 1 + 2 + 4), and the recurrence wins."""
    plain = analyze(arch("c: conv(4, 2, stride=2, pad=valid) * 2", shape="1x64"))
    assert plain.layer("c_2").receptive_field.size == (4.0,)
    dilated = analyze(arch("c: conv(4, 2, stride=2, dilation=2, pad=valid) * 2", shape="1x64"))
    assert dilated.layer("c_1").receptive_field.size == (3.0,) and dilated.layer("c_1").receptive_field.stride == (2.0,)
    assert dilated.layer("c_2").receptive_field.size == (7.0,)
    wavenet = analyze(arch("c: conv(4, 2, dilation=d, pad=causal) for d in [1, 2, 4]", shape="1x64"))
    assert wavenet.layer("c_3").receptive_field.size == (8.0,)


def test_grouped_convolution_has_groups_times_fewer_weights(arch):
    """3×3, 256 → 128 channels: 3·3·256·128 = 294,912 weights; in 32 groups 3·3·(256/32)·128 = 9,216: 32× fewer."""
    full = analyze(arch("conv(128, 3, bias=false)", shape="256x14x14")).totals.trainable_params
    grouped = analyze(arch("conv(128, 3, groups=32, bias=false)", shape="256x14x14")).totals.trainable_params
    assert full == 294_912 and grouped == 9_216 and full == 32 * grouped


def test_global_average_pooling_before_the_classifier(arch):
    """256 maps of 100×100 into a 10-way dense layer: flattened, 256·100·100·10 = 25,600,000 weights; after global
    average pooling, 256·10 = 2,560."""
    flat = analyze(arch("flatten dense(10, bias=false)", shape="256x100x100")).totals.trainable_params
    gap = analyze(arch("gap flatten dense(10, bias=false)", shape="256x100x100")).totals.trainable_params
    assert flat == 25_600_000 and gap == 2_560


def test_receptive_field_with_padding_and_transposed_convolution(arch):
    """conv 3×3/2 pad 1: r = 3, j = 2, start = 0 + (1 − 1)·1 = 0; then deconv 4×4/2 pad 1 on the finer grid:
    j = 2/2 = 1, r = 3 + 3·1 = 6, start = 0 + (1 − 1.5)·1 = −0.5."""
    a = analyze(arch("down: conv(8, 3, stride=2)\n up: deconv(8, 4, stride=2, pad=1)", shape="3x16x16"))
    down, up = a.layer("down").receptive_field, a.layer("up").receptive_field
    assert (down.size, down.stride, down.start) == ((3.0, 3.0), (2.0, 2.0), (0.0, 0.0))
    assert (up.size, up.stride, up.start) == ((6.0, 6.0), (1.0, 1.0), (-0.5, -0.5))


def test_whole_input_after_global_pooling_and_dense(arch):
    a = analyze(arch("conv(8, 3) gap flatten dense(4)"))
    assert a.layer("gap").receptive_field.whole and a.layer("dense").receptive_field.whole
    assert a.layer("gap").receptive_field.size == (32.0, 32.0)


def test_unaligned_paths_warn_and_take_the_widest(arch):
    """A 1×1 conv at stride 2 (centre 0) and a 3×3 at stride 2 padded only at the end (centre 1) do not align."""
    a = analyze(arch("add {\n a: conv(8, 1, stride=2)\n b: conv(8, 3, stride=2, pad=(0, 0, 2, 2))\n }", shape="3x9x9"))
    assert a.layer("add").receptive_field.size == (3.0, 3.0)
    assert any("not aligned" in w for w in a.warnings)
    inception = analyze(str(SPECS / "googlenet.arch"))
    assert not any("not aligned" in w for w in inception.warnings)  # same-padded branches stay aligned


def test_peak_memory_frees_tensors_after_last_use(arch):
    """x (3·32·32) → a (8·32·32) → b (8·32·32) → c (8·16·16), float32. While b runs, x is dead (read only by a):
    a and b are alive: 2·8·32·32·4 = 65,536 bytes, the peak; weights 3·3·3·8+8 + 3·3·8·8+8 = 808 floats."""
    a = analyze(arch("a: conv(8, 3)\n b: conv(8, 3)\n c: maxpool(2)"))
    t = a.totals
    assert t.peak_activation_bytes == 2 * 8 * 32 * 32 * 4
    assert t.weight_bytes == (3 * 3 * 3 * 8 + 8 + 3 * 3 * 8 * 8 + 8) * 4
    assert t.peak_memory_bytes == t.peak_activation_bytes + t.weight_bytes
    assert t.peak_after == "b" and set(t.peak_tensors) == {"a", "b"}


def test_residual_keeps_the_input_alive(arch):
    """In add { conv conv; identity }, x stays alive until the add: x, c1 and c2 at once (4·16·16·4 bytes each)."""
    a = analyze(arch("add {\n m: { c1: conv(4, 3); c2: conv(4, 3) }\n identity\n }", shape="4x16x16"))
    assert a.totals.peak_activation_bytes == 3 * 4 * 16 * 16 * 4


def test_batch_scales_activations_and_macs_not_params(arch):
    p = arch("conv(8, 3) flatten dense(4)")
    from archc import ModelOptions
    one, four = analyze(p), analyze(p, ModelOptions(batch=4))
    assert four.totals.macs == 4 * one.totals.macs and four.totals.activation_bytes == 4 * one.totals.activation_bytes
    assert four.totals.trainable_params == one.totals.trainable_params and four.batch == 4


def test_weight_sizes_by_dtype(arch):
    a = analyze(arch("conv(8, 3) bn"))
    stored = 3 * 3 * 3 * 8 + 8 + 4 * 8
    assert a.totals.weight_bytes_by_dtype == {"float32": 4 * stored, "float16": 2 * stored, "int8": stored}


def test_compiled_onnx_file_analyzes_like_its_spec(tmp_path):
    """The simplified ONNX that `archc compile` writes keeps every layer, weight and block record."""
    import archc
    path = archc.compile(SPECS / "googlenet.arch", output=tmp_path / "googlenet.onnx").output
    from_file, from_spec = analyze(str(path)), analyze(str(SPECS / "googlenet.arch"))
    assert from_file.totals == from_spec.totals
    assert [(layer.name, layer.params, layer.macs, layer.output_shape) for layer in from_file.layers] == \
        [(layer.name, layer.params, layer.macs, layer.output_shape) for layer in from_spec.layers]
    assert [(b.path, b.type, b.args) for b in from_file.blocks] == [(b.path, b.type, b.args) for b in from_spec.blocks]


SE_NET = """
  stem: conv(16, 3) relu
  se: mul {
    identity
    gate: { gap; conv(4, 1) relu; conv(16, 1) sigmoid }
  }
  head: conv(16, 3)
"""


def test_squeeze_excitation_gate_is_a_side_branch(arch):
    """A layer after an SE gate strictly sees the whole input (the gate pools globally), but papers draw the main
    path's field, and count depth on the main path (SE-ResNet-50 is 50 deep, not 82): both are reported."""
    a = analyze(arch(SE_NET))
    head = a.layer("head")
    assert head.receptive_field.whole
    assert head.receptive_field_main.size == (5.0, 5.0) and not head.receptive_field_main.whole  # 3×3 then 3×3
    assert (a.totals.depth, a.totals.depth_longest) == (2, 4)  # stem, head; + the gate's two 1×1 convs


def test_main_path_equals_strict_without_gates():
    a = analyze(SPECS / "resnet18.arch")
    assert all(lay.receptive_field_main == lay.receptive_field for lay in a.layers)
    assert a.totals.depth == a.totals.depth_longest == 18
