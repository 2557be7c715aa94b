"""The worked numbers of the five lecture decks (../shared/seeds), checked against archc.

Where a deck's figure is wrong, archc computes the right one and the test says why. Deck references are
"D<deck>-<item>" as collected from the decks' text: deck 000 (CNNs for signal processing: LeNet, AlexNet,
GoogLeNet, SSD, YOLO), 001 (VGG, ResNet, NAS), 002 (AlexNet/VGG/GoogLeNet/ResNet numbers), 003 (BN-Inception,
ResNeXt), 004 (1-D, dilated and transposed convolutions).
"""
from __future__ import annotations

from pathlib import Path

from archc import analyze

SPECS = Path(__file__).resolve().parents[2] / "specs"

ALEXNET_PAPER = """
  conv1: conv(96, 11, stride=4, pad=valid) relu
  norm1: lrn(5, bias=2)
  pool1: maxpool(3, stride=2)
  conv2: conv(256, 5, pad=2, groups=2) relu
  norm2: lrn(5, bias=2)
  pool2: maxpool(3, stride=2)
  conv3: conv(384, 3) relu
  conv4: conv(384, 3, groups=2) relu
  conv5: conv(256, 3, groups=2) relu
  pool5: maxpool(3, stride=2)
  flatten
  fc6: dense(4096) relu dropout
  fc7: dense(4096) relu dropout
  fc8: dense(1000)
"""


def test_d0_alexnet_table_and_paper_totals(arch):
    """D0-15: the table's sizes 55×55×96 … 6×6×256 hold. Its row "6 FC 9216" is wrong: 9216 = 6·6·256 is the
    flattened pool5, not a layer; AlexNet has three FC layers (8 weight layers in all). With the paper's two-GPU
    grouping: 60,965,224 parameters."""
    a = analyze(arch(ALEXNET_PAPER, shape="3x227x227"))
    sizes = {n: a.layer(n).output_shape[1:] for n in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5")}
    assert sizes == {"conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27), "pool2": (256, 13, 13),
                     "conv5": (256, 13, 13), "pool5": (256, 6, 6)}
    assert a.layer("flatten").output_shape == (1, 9216) and a.layer("flatten").params == 0
    assert sum(1 for layer in a.layers if layer.op == "Gemm") == 3 and a.totals.depth == 8
    assert a.totals.trainable_params == 60_965_224
    assert a.layer("conv1").macs == 105_415_200
    assert a.layer("pool5").receptive_field.size == (195.0, 195.0) and a.layer("pool5").receptive_field.stride == (
        32.0, 32.0)


def test_d0_lenet5_table():
    """D0 LeNet-5 table: 32→28→14→10→5→1; C5 has 5·5·16·120 + 120 = 48,120 parameters and sees the whole 32×32."""
    a = analyze(str(SPECS / "lenet5.arch"))
    assert [a.layer(n).output_shape[2] for n in ("c1", "s2", "c3", "s4", "c5")] == [28, 14, 10, 5, 1]
    assert a.layer("c5").params == 48_120 and a.layer("c5").receptive_field.size == (32.0, 32.0)
    assert a.totals.trainable_params == 61_706


def test_d0_googlenet_table():
    """D0-17: the table gives conv1 "2.7K params, 34M ops"; a dense 7×7/2 convolution from 3 to 64 channels has
    7·7·3·64 = 9,408 weights and 112·112·64·7·7·3 = 118,013,952 MACs (2.7K fits only a separable 7×7).
    D0-27/32: inception 4c has 509,440 weights (table: 463K) and 5a 1,042,432 weights = 1018K (table: 1072K);
    3a (163,328 weights, 128M MACs) agrees. The table's K is 1024 and excludes biases."""
    a = analyze(str(SPECS / "googlenet.arch"))
    conv1 = a.layer("conv1")
    assert conv1.params - 64 == 9_408 and conv1.macs == 118_013_952
    blocks = {b.path: b for b in a.blocks}

    def weights(b):  # without biases, as the table counts
        return b.params - sum(a.layer(n).output_shape[1] for n in b.layers if a.layer(n).op == "Conv")

    assert weights(blocks["inception_3a"]) == 163_328 and blocks["inception_3a"].macs == 128_049_152
    assert weights(blocks["inception_4c"]) == 509_440
    assert weights(blocks["inception_5a"]) == 1_042_432 and round(blocks["inception_5a"].macs / 1e6) == 51


def test_d0_ssd300_boxes_and_ceil_mode():
    """D0: SSD300's conv4_3 map is 38×38 because pool3 rounds up (floor would give 37), and the six heads predict
    38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4 = 8,732 boxes."""
    a = analyze(str(SPECS / "ssd300.arch"))
    assert a.layer("conv4_3").output_shape[2:] == (38, 38)
    locs = [o for o in a.outputs if "loc" in o["name"]]
    assert sum(o["shape"][1] // 4 * o["shape"][2] * o["shape"][3] for o in locs) == 8_732


def test_d0_darknet19_operations():
    """D0 Darknet-19 table / YOLOv2 paper: 5.58 billion operations at 224×224 = 2 × 2,790,989,824 MACs."""
    a = analyze(str(SPECS / "darknet19.arch"))
    assert a.totals.macs == 2_790_989_824 and round(2 * a.totals.macs / 1e9, 2) == 5.58


def test_d4_mask_rcnn_case_study():
    """D4 Mask R-CNN: ResNet-50's first 4 stages feed the RPN; with k = 15 anchors a location, a W×H map has W×H×k
    anchors (the deck's 600×800 image: a 50×38 map, 28,500 anchors), 2k scores and 4k offsets a location; each
    proposal's RoIAlign gives 7×7×1024, res5 7×7×2048, the heads K + 1 = 81 and 4K = 320, the mask branch 14×14 after
    its transposed convolution and K = 80 masks of m×m = 14×14 (K·m² numbers). The deck's "dense layer of size
    2048" after res5 is the paper's average pooling (Figure 4, "ave"): 2048 numbers and no weights. The heads run
    once per proposal: their multiply-adds are exactly R times one proposal's."""
    a = analyze(str(SPECS / "mask_rcnn_r50_c4.arch"))
    k = 15
    scores, boxes = (a.layer(f"rpn/{n}").output_shape for n in ("scores", "boxes"))
    assert scores == (1, 2 * k, 38, 50) and boxes == (1, 4 * k, 38, 50)
    assert scores[2] * scores[3] * scores[1] // 2 == 28_500
    assert a.layer("head/roi").output_shape == (300, 1024, 7, 7)
    assert a.layer("head/res5_3/relu").output_shape == (300, 2048, 7, 7)
    assert a.layer("pool").output_shape == (300, 2048, 1, 1) and a.layer("pool").params == 0
    assert a.layer("cls").output_shape == (300, 81) and a.layer("box").output_shape == (300, 320)
    assert a.layer("mask").output_shape == (300, 256, 14, 14)  # the transposed conv, 7 → 14
    assert a.layer("mask/sigmoid").output_shape == (300, 80, 14, 14)
    one = analyze(str(SPECS / "mask_rcnn_r50_c4.arch"), input={"rois": "1x1x4"})
    per_roi = [lay.macs for lay in one.layers if lay.name.startswith(("head/", "cls", "box", "mask")) and lay.macs]
    all_rois = [lay.macs for lay in a.layers if lay.name.startswith(("head/", "cls", "box", "mask")) and lay.macs]
    # res5: 3 bottlenecks of 3 convs and one projection; cls and box; the transposed conv and the 1×1 of the masks
    assert all_rois == [300 * m for m in per_roi] and len(per_roi) == 3 * 3 + 1 + 2 + 2
    # the totals say both: the anchors W×H×k and the multiply-adds of one proposal, run R times
    assert a.totals.anchors == [38, 50, 15] and a.totals.proposals == 300
    assert a.totals.per_proposal_macs == one.totals.per_proposal_macs == sum(per_roi)
    from archc.render.text import render_text
    from archc.render.views import totals_table
    table = render_text(totals_table(a))
    assert "38×50×15 = 28,500" in table and f"{sum(per_roi):,} MACs" in table and "each of 300" in table
    # --explain on the RoIAlign: the deck's sampling points, and 300·1024·7·7 cells of 2·2 samples
    from archc.render.explain import explain
    rpn = explain(a, "rpn/scores")  # --explain on the RPN: one location, its window and its k anchors
    assert "each of the 38×50 locations" in rpn and "k = 15 anchors" in rpn and "2k = 30" in rpn
    assert "28,500 anchors in all" in rpn and "moves 16×16 pixels" in rpn
    assert "4k = 60" in explain(a, "rpn/boxes")
    text = explain(a, "head/roi")
    assert "each of the 300 proposals" in text and "38×50×1024 feature map" in text and "7×7 cells" in text
    assert "bilinear interpolation of the 4 feature pixels" in text
    assert f"{300 * 1024 * 49 * (2 * 2 * 8 + 1):,}" in text


def test_d1_vgg_configurations():
    """D1-13/15: the deck's VGG-13 layer list is configuration C and its VGG-19 list is VGG-16; the real
    configurations have 133,047,848 (B, 13 weight layers) and 143,667,240 (E, 19) parameters."""
    depths = {n: analyze(str(SPECS / f"{n}.arch")).totals for n in ("vgg11", "vgg13", "vgg16", "vgg19")}
    assert {n: t.depth for n, t in depths.items()} == {"vgg11": 11, "vgg13": 13, "vgg16": 16, "vgg19": 19}
    assert depths["vgg13"].trainable_params == 133_047_848 and depths["vgg19"].trainable_params == 143_667_240


def test_d2_vgg16_memory_and_parameter_shares():
    """D2-11 says VGG-16 needs "96MB per image" forward: the layer outputs (input, convs, pools, FCs; ReLUs in
    place) hold 15,237,608 floats = 61.0 MB in float32; 96 MB comes from a mis-added 24M total.
    D2-13 says the FC layers hold 80% of the parameters: 123,642,856 / 138,357,544 = 89.4%.
    Receptive field: 196 at conv5_3, 212 at pool5."""
    a = analyze(str(SPECS / "vgg16.arch"))
    kept = ("Conv", "MaxPool", "Gemm")
    floats = 3 * 224 * 224 + sum(layer.activation_elements for layer in a.layers if layer.op in kept)
    assert floats == 15_237_608 and round(floats * 4 / 1e6, 1) == 61.0
    fc = sum(layer.params for layer in a.layers if layer.op == "Gemm")
    assert fc == 123_642_856 and round(100 * fc / a.totals.trainable_params, 1) == 89.4
    assert a.totals.macs == 15_470_264_320
    assert a.layer("conv5_3").receptive_field.size == (196.0, 196.0)
    assert a.layer("pool5").receptive_field.size == (212.0, 212.0)


def test_d2_googlenet_against_alexnet_and_vgg():
    """D2-14 says GoogLeNet has "5M parameters, 12× fewer than AlexNet, 27× fewer than VGG-16": the paper's network
    has 7.0M (6,998,552 with biases), about 9× fewer than AlexNet's 61M and 20× fewer than VGG-16's 138M."""
    g = analyze(str(SPECS / "googlenet.arch")).totals.trainable_params
    alex = analyze(str(SPECS / "alexnet.arch")).totals.trainable_params
    vgg = analyze(str(SPECS / "vgg16.arch")).totals.trainable_params
    assert round(g / 1e6, 1) == 7.0 and round(alex / g) == 9 and round(vgg / g) == 20


def test_d2_bottleneck_arithmetic(arch):
    """D2-17 writes 1×1×64×256 + 3×3×192×64 = 126,976 for a 1×1 reduction 192→64 then a 3×3 64→256: the channel
    factors are swapped. The weights are 1·1·192·64 + 3·3·64·256 = 12,288 + 147,456 = 159,744."""
    a = analyze(arch("r: conv(64, 1, bias=false)\n c: conv(256, 3, bias=false)", shape="192x28x28"))
    assert (a.layer("r").params, a.layer("c").params) == (12_288, 147_456)
    assert a.totals.trainable_params == 159_744


def test_d3_resnext50():
    """D3: ResNeXt-50 (32×4d) keeps ResNet-50's budget: 25,028,904 parameters and 4.23 GMACs (the paper's "FLOPs")
    against 25,557,032 and 4.09 G."""
    x = analyze(str(SPECS / "resnext50_32x4d.arch")).totals
    assert x.trainable_params == 25_028_904 and x.macs == 4_230_479_872


def test_d3_bn_inception_widths():
    """D3-07/10/12: the BN-Inception table's 3c output is 28×28×576 at stride 2 (it is 14×14×576), its 4c/4d
    outputs say 576 (the widths add to 160+160+160+128 = 608), and 4e says 14×14×1024 (7×7×1056)."""
    a = analyze(str(SPECS / "inception_bn.arch"))
    out = {b.path: b.output_shape[1:] for b in a.blocks}
    assert out["inception_3c"] == (576, 14, 14)
    assert out["inception_4c"] == (608, 14, 14) and out["inception_4d"] == (608, 14, 14)
    assert out["inception_4e"] == (1056, 7, 7)


def test_d4_dilated_and_transposed(arch):
    """D4-04: two kernel-2, stride-2 layers with dilation 2 see 7 inputs by the recurrence (deck: 8).
    D4 transposed convolutions: 2×2 input, kernel 3, stride 2, no padding → (2−1)·2 + 3 = 5×5; 7×7 with kernel 2,
    stride 2 → 14×14."""
    d = analyze(arch("c: conv(1, 2, stride=2, dilation=2, pad=valid) * 2", shape="1x32"))
    assert d.layer("c_2").receptive_field.size == (7.0,)
    t = analyze(arch("up: deconv(1, 3, stride=2)", shape="1x2x2"))
    assert t.layer("up").output_shape[2:] == (5, 5)
    m = analyze(arch("up: deconv(256, 2, stride=2)", shape="256x7x7"))
    assert m.layer("up").output_shape[2:] == (14, 14)


def test_mobilenet_v1_against_the_paper():
    """Howard et al. 2017, Table 8: 569M mult-adds and 4.2M parameters (without BN) for 1.0 MobileNet-224."""
    a = analyze(str(SPECS / "mobilenet_v1.arch"))
    assert a.totals.macs == 568_740_352
    bn = sum(layer.params for layer in a.layers if layer.op == "BatchNormalization")
    assert a.totals.trainable_params - bn == 4_210_088
