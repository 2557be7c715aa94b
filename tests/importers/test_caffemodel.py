"""`archc import FILE.prototxt --weights FILE.caffemodel`: Caffe's trained weights, bound to the imported spec.

No published .caffemodel is in the repository. The tests write their own with protobuf's encoder, from message
classes built here from descriptors of the few messages of BVLC caffe's src/caffe/proto/caffe.proto that hold
weights (NetParameter, LayerParameter, V1LayerParameter and its V0LayerParameter, BlobProto, BlobShape,
InnerProductParameter; the field numbers are caffe.proto's), so that archc's own wire-format reader
(archc/importers/caffemodel.py) is checked against protobuf's writer.

A small prototxt (a grouped convolution with ReLU, a max pool that rounds up, a convolution without bias, two inner
products with a leaky ReLU between, a softmax) is given random blobs; the imported spec, compiled to ONNX with the
.npz bound and run in onnxruntime, must give what Caffe computes, here in NumPy from the same blobs (float64):
equal within 1e-5 (the output is a softmax, so that is 1e-5 of its range). The same weights written in Caffe's
V1 `layers` form, with legacy 4-D blob shapes, values as doubles and one layer wrapped in a V0LayerParameter,
give the same tensors. Against the published prototxts (../shared/data/caffe-prototxt, skipped where absent),
every tensor the importer names exists in the spec with the shape it gives, and SqueezeNet 1.0 with a random
caffemodel binds every tensor by name.
"""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from helpers import cli_error, raises

import archc
from archc.importers.caffe import convert
from archc.spec import load_text

ROOT = Path(__file__).resolve().parents[2]
PROTOTXTS = ROOT.parent / "shared" / "data" / "caffe-prototxt"
needs_prototxts = pytest.mark.skipif(not PROTOTXTS.is_dir(), reason="the published prototxts are in "
                                     "../shared/data/caffe-prototxt: run from a checkout beside the team's shared "
                                     "folder")


# ---- a .caffemodel writer: protobuf's, from descriptors of caffe.proto's messages -------------------------------
@functools.cache
def _messages() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="archc_test_caffe.proto", package="archc_test_caffe",
                                               syntax="proto2")
    repeated, optional = F.LABEL_REPEATED, F.LABEL_OPTIONAL

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".archc_test_caffe.{type_name}"
            if label == repeated and kind not in (F.TYPE_STRING, F.TYPE_MESSAGE):
                f.options.packed = True  # [packed = true], as caffe.proto declares them

    message("BlobShape", ("dim", 1, F.TYPE_INT64, repeated, ""))
    message("BlobProto", ("shape", 7, F.TYPE_MESSAGE, optional, "BlobShape"),
            ("data", 5, F.TYPE_FLOAT, repeated, ""), ("diff", 6, F.TYPE_FLOAT, repeated, ""),
            ("double_data", 8, F.TYPE_DOUBLE, repeated, ""), ("num", 1, F.TYPE_INT32, optional, ""),
            ("channels", 2, F.TYPE_INT32, optional, ""), ("height", 3, F.TYPE_INT32, optional, ""),
            ("width", 4, F.TYPE_INT32, optional, ""))
    message("InnerProductParameter", ("num_output", 1, F.TYPE_UINT32, optional, ""),
            ("bias_term", 2, F.TYPE_BOOL, optional, ""), ("transpose", 6, F.TYPE_BOOL, optional, ""))
    message("LayerParameter", ("name", 1, F.TYPE_STRING, optional, ""), ("type", 2, F.TYPE_STRING, optional, ""),
            ("bottom", 3, F.TYPE_STRING, repeated, ""), ("top", 4, F.TYPE_STRING, repeated, ""),
            ("blobs", 7, F.TYPE_MESSAGE, repeated, "BlobProto"),
            ("inner_product_param", 117, F.TYPE_MESSAGE, optional, "InnerProductParameter"))
    message("V0LayerParameter", ("name", 1, F.TYPE_STRING, optional, ""), ("type", 2, F.TYPE_STRING, optional, ""),
            ("blobs", 50, F.TYPE_MESSAGE, repeated, "BlobProto"))
    message("V1LayerParameter", ("layer", 1, F.TYPE_MESSAGE, optional, "V0LayerParameter"),
            ("bottom", 2, F.TYPE_STRING, repeated, ""), ("top", 3, F.TYPE_STRING, repeated, ""),
            ("name", 4, F.TYPE_STRING, optional, ""),
            ("type", 5, F.TYPE_INT32, optional, ""),  # the LayerType enum: a varint on the wire all the same
            ("blobs", 6, F.TYPE_MESSAGE, repeated, "BlobProto"),
            ("inner_product_param", 17, F.TYPE_MESSAGE, optional, "InnerProductParameter"))
    message("NetParameter", ("name", 1, F.TYPE_STRING, optional, ""),
            ("layers", 2, F.TYPE_MESSAGE, repeated, "V1LayerParameter"),
            ("layer", 100, F.TYPE_MESSAGE, repeated, "LayerParameter"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"archc_test_caffe.{m.name}"))
            for m in proto.message_type}


V1_TYPE = {"Convolution": 4, "InnerProduct": 14, "ReLU": 18, "Pooling": 17, "Softmax": 20}


def _fill(blob: Any, array: np.ndarray, legacy: bool, double: bool) -> None:
    if legacy:  # num, channels, height, width: ones before the blob's own axes (an inner product's 1×1×out×in)
        blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
    else:
        blob.shape.dim.extend(array.shape)
    (blob.double_data if double else blob.data).extend(array.ravel().tolist())


def caffemodel(layers: list[tuple[str, str, list[np.ndarray]]], v1: bool = False, legacy: bool = False,
               doubles: bool = False, v0: tuple[str, ...] = ()) -> bytes:
    """A NetParameter of (name, type, blobs) layers: in `layer` (field 100) or the V1 `layers` (field 2), with
    BlobShape shapes or `legacy` 4-D ones, float or `doubles` values; in V1, the layers named in `v0` wrapped in
    a V0LayerParameter."""
    m = _messages()
    net = m["NetParameter"](name="net")
    for name, kind, blobs in layers:
        if not v1:
            layer = net.layer.add(name=name, type=kind)
            target = layer.blobs
        elif name in v0:
            layer = net.layers.add()
            layer.layer.name, layer.layer.type = name, kind.lower()
            target = layer.layer.blobs
        else:
            layer = net.layers.add(name=name, type=V1_TYPE[kind])
            target = layer.blobs
        for array in blobs:
            _fill(target.add(), array, legacy, doubles)
    return net.SerializeToString()


# ---- a small network, and Caffe's forward pass in NumPy -----------------------------------------------------------
TINY = """name: "tiny"
input: "data"
input_shape { dim: 1 dim: 4 dim: 9 dim: 9 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 4 kernel_size: 1 bias_term: false } }
layer { name: "fc1" type: "InnerProduct" bottom: "conv2" top: "fc1" inner_product_param { num_output: 5 } }
layer { name: "relu2" type: "ReLU" bottom: "fc1" top: "fc1" relu_param { negative_slope: 0.1 } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" }
"""
# Caffe's blobs: conv1 6 × (4/2) × 3 × 3 (grouped, as ONNX's), 9×9 → 5×5; pool1 rounds up, 5×5 → 3×3;
# conv2 4 × 6 × 1 × 1, no bias; fc1 5 × (4·3·3); fc2 3 × 5
SHAPES = {"conv1": [(6, 2, 3, 3), (6,)], "conv2": [(4, 6, 1, 1)], "fc1": [(5, 36), (5,)], "fc2": [(3, 5), (3,)]}
KINDS = {"conv1": "Convolution", "conv2": "Convolution", "fc1": "InnerProduct", "fc2": "InnerProduct"}


def _blobs(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {name: [(rng.standard_normal(s) * 0.5).astype(np.float32) for s in shapes]
            for name, shapes in SHAPES.items()}


def _layers(blobs: dict[str, list[np.ndarray]]) -> list[tuple[str, str, list[np.ndarray]]]:
    """Every layer of TINY in order, as Caffe saves a net: those without parameters with no blobs."""
    order = [("conv1", "Convolution"), ("relu1", "ReLU"), ("pool1", "Pooling"), ("conv2", "Convolution"),
             ("fc1", "InnerProduct"), ("relu2", "ReLU"), ("fc2", "InnerProduct"), ("prob", "Softmax")]
    return [(name, kind, blobs.get(name, [])) for name, kind in order]


def _caffe_forward(x: np.ndarray, b: dict[str, list[np.ndarray]]) -> np.ndarray:
    """TINY as Caffe computes it (batch 1), in float64 from the blobs."""
    def conv(v: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride: int, pad: int, group: int) -> np.ndarray:
        k = w.shape[2]
        p = np.pad(v, ((0, 0), (pad, pad), (pad, pad)))
        win = np.lib.stride_tricks.sliding_window_view(p, (k, k), (1, 2))[:, ::stride, ::stride]  # C×OH×OW×k×k
        cin, cout = v.shape[0] // group, w.shape[0] // group
        out = np.concatenate([np.einsum("ockl,cyxkl->oyx", w[g * cout:(g + 1) * cout], win[g * cin:(g + 1) * cin])
                              for g in range(group)])
        return out + (bias[:, None, None] if bias is not None else 0)

    b64 = {k: [a.astype(np.float64) for a in v] for k, v in b.items()}
    c1 = np.maximum(conv(x[0].astype(np.float64), *b64["conv1"], stride=2, pad=1, group=2), 0)  # 6×5×5
    # Caffe's max pool: 2×2 windows every 2 pixels, rounded up (3×3), the last window cut at the edge
    p1 = np.pad(c1, ((0, 0), (0, 1), (0, 1)), constant_values=-np.inf).reshape(6, 3, 2, 3, 2).max(axis=(2, 4))
    c2 = conv(p1, b64["conv2"][0], None, stride=1, pad=0, group=1)                                # 4×3×3
    f1 = b64["fc1"][0] @ c2.ravel() + b64["fc1"][1]
    f1 = np.where(f1 > 0, f1, 0.1 * f1)
    f2 = b64["fc2"][0] @ f1 + b64["fc2"][1]
    e = np.exp(f2 - f2.max())
    return (e / e.sum())[None]


def _tiny(tmp_path: Path) -> Path:
    prototxt = tmp_path / "tiny.prototxt"
    prototxt.write_text(TINY)
    return prototxt


def _run_onnx(spec: Path, npz: Path, x: np.ndarray) -> np.ndarray:
    model = archc.load(spec, weights=npz)
    assert model.binding is not None and {how for _, _, how in model.binding.pairs} == {"name"}
    out = archc.compile(model, output=spec.with_suffix(".onnx")).output
    (got,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    return got


def test_caffemodel_binds_and_gives_caffes_outputs(tmp_path):
    """The importer names each learned layer's tensors; the .npz beside the spec holds the blobs under those names
    (Caffe's layouts are archc's: OIHW kernels, grouped as ONNX groups them, output × input matrices), bound by
    name; the compiled network computes what Caffe computes from them."""
    prototxt, blobs = _tiny(tmp_path), _blobs()
    imported = convert(TINY, "tiny.prototxt")
    assert imported.blobs == {"conv1": [("conv1.weight", (6, 2, 3, 3)), ("conv1.bias", (6,))], "relu1": [],
                              "pool1": [], "conv2": [("conv2.weight", (4, 6, 1, 1))],
                              "fc1": [("fc1.weight", (5, 36)), ("fc1.bias", (5,))], "relu2": [],
                              "fc2": [("fc2.weight", (3, 5)), ("fc2.bias", (3,))], "prob": []}
    weights = tmp_path / "tiny.caffemodel"
    weights.write_bytes(caffemodel(_layers(blobs)))
    spec = tmp_path / "tiny.arch"
    archc.import_spec(prototxt, spec, weights)
    with np.load(tmp_path / "tiny.npz") as npz:
        assert sorted(npz.files) == sorted(name for tensors in imported.blobs.values() for name, _ in tensors)
        for layer, arrays in blobs.items():
            for (name, _), array in zip(imported.blobs[layer], arrays, strict=True):
                assert npz[name].dtype == np.float32 and np.array_equal(npz[name], array)
    x = np.random.default_rng(1).standard_normal((1, 4, 9, 9)).astype(np.float32)
    got, want = _run_onnx(spec, tmp_path / "tiny.npz", x), _caffe_forward(x, blobs)
    assert got.shape == (1, 3) and np.abs(got - want).max() <= 1e-5


def test_v1_layers_legacy_shapes_doubles_and_v0_give_the_same_tensors(tmp_path):
    """Caffe's files from before 2015: V1 `layers` (field 2, the type an enum), 4-D legacy shapes (num, channels,
    height, width: fc1's weight 1×1×5×36, biases 1×1×1×n), values as doubles, and conv1 inside a V0 layer. A file
    holding layers the prototxt lacks (a training net's auxiliary classifier) binds all the same: Caffe skips
    them too."""
    prototxt, blobs = _tiny(tmp_path), _blobs(2)
    rng = np.random.default_rng(5)
    aux = ("loss1/fc", "InnerProduct", [rng.standard_normal((2, 36)).astype(np.float32)])
    for i, (form, kw) in enumerate([("v2", {}), ("v1", {"v1": True, "legacy": True, "doubles": True,
                                                        "v0": ("conv1",)})]):
        weights = tmp_path / f"{form}.caffemodel"
        weights.write_bytes(caffemodel(_layers(blobs) + [aux] * i, **kw))
        archc.import_spec(prototxt, tmp_path / f"{form}.arch", weights)
    with np.load(tmp_path / "v2.npz") as v2, np.load(tmp_path / "v1.npz") as v1:
        assert sorted(v2.files) == sorted(v1.files) and len(v1.files) == 7
        assert all(np.array_equal(v2[k], v1[k]) and v1[k].shape == v2[k].shape for k in v1.files)
    x = np.random.default_rng(3).standard_normal((1, 4, 9, 9)).astype(np.float32)
    assert np.abs(_run_onnx(tmp_path / "v1.arch", tmp_path / "v1.npz", x) - _caffe_forward(x, blobs)).max() <= 1e-5


def test_transposed_inner_product_is_stored_input_by_output(tmp_path):
    """`transpose: true` (a flag of the layer's inner_product_param, saved in the caffemodel): Caffe stores the
    matrix input × output; archc's dense weight is output × input."""
    blobs = _blobs()
    m = _messages()
    net = m["NetParameter"].FromString(caffemodel(_layers(blobs)))
    fc1 = next(layer for layer in net.layer if layer.name == "fc1")
    fc1.inner_product_param.transpose = True
    del fc1.blobs[0].shape.dim[:]
    fc1.blobs[0].shape.dim.extend((36, 5))
    fc1.blobs[0].ClearField("data")
    fc1.blobs[0].data.extend(blobs["fc1"][0].T.ravel().tolist())
    weights = tmp_path / "t.caffemodel"
    weights.write_bytes(net.SerializeToString())
    archc.import_spec(_tiny(tmp_path), tmp_path / "t.arch", weights)
    with np.load(tmp_path / "t.npz") as npz:
        assert np.array_equal(npz["fc1.weight"], blobs["fc1"][0])


def test_wrong_caffemodels_are_one_sentence_and_write_nothing(tmp_path):
    """Through the command line: a blob of another shape, a learned layer the file lacks, a file that is not a
    caffemodel (random bytes; the prototxt itself): exit status 1, one sentence naming the file and what is wrong,
    no traceback, neither the spec nor the .npz written. A layer with a bias the prototxt turns off: the same."""
    prototxt, blobs = _tiny(tmp_path), _blobs()

    def run(name: str, data: bytes) -> subprocess.CompletedProcess:
        weights = tmp_path / name
        weights.write_bytes(data)
        return subprocess.run([sys.executable, "-m", "archc", "import", str(prototxt), "-o", str(tmp_path / "w.arch"),
                               "--weights", str(weights)], capture_output=True, text=True)

    wrong = dict(blobs, conv1=[np.zeros((6, 4, 3, 3), np.float32), blobs["conv1"][1]])  # as if group: 1
    cli_error(run("shape.caffemodel", caffemodel(_layers(wrong))), "weights-mismatch", 1,
              naming=("conv1", "shape.caffemodel", "6×4×3×3", "6×2×3×3"))
    short = [layer for layer in _layers(blobs) if layer[0] != "fc2"]
    cli_error(run("short.caffemodel", caffemodel(short)), "weights-mismatch", 1, naming=("'fc2'", "short.caffemodel"))
    cli_error(run("random.caffemodel", np.random.default_rng(0).bytes(4000)), "bad-weights", 1,
              naming=("random.caffemodel", "not a Caffe .caffemodel"))
    cli_error(run("text.caffemodel", TINY.encode()), "bad-weights", 1, naming=("text.caffemodel", "prototxt"))
    assert not (tmp_path / "w.arch").exists() and not (tmp_path / "w.npz").exists()
    biased = dict(blobs, conv2=blobs["conv2"] + [np.zeros(4, np.float32)])
    (tmp_path / "b.caffemodel").write_bytes(caffemodel(_layers(biased)))
    with raises("weights-mismatch", naming=("conv2", "2 blobs", "bias_term: false")):
        archc.import_spec(prototxt, tmp_path / "b.arch", tmp_path / "b.caffemodel")
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with raises("bad-weights", naming="no layers"):
        archc.import_spec(prototxt, tmp_path / "b.arch", tmp_path / "empty.caffemodel")
    assert not (tmp_path / "b.arch").exists()


# ---- the published prototxts ----------------------------------------------------------------------------------
@needs_prototxts
@pytest.mark.parametrize("name", ["bvlc_alexnet", "bvlc_googlenet", "squeezenet_v1.0"])
def test_every_learned_layer_names_a_weight_of_the_spec(name):
    """Each tensor the importer names for a Caffe blob is a weight of the imported spec with that shape, and every
    weight of the spec is one of them: a caffemodel's .npz binds entirely by name."""
    imported = convert((PROTOTXTS / f"{name}.deploy.prototxt").read_text(), f"{name}.deploy.prototxt")
    graph = load_text(imported.text, name)
    named = [t for tensors in imported.blobs.values() for t in tensors]
    assert len(named) == len(dict(named))
    assert dict(named) == {key: tuple(w.shape) for key, _, w in graph.weight_items()}
    assert sum(int(np.prod(shape)) for _, shape in named) == imported.weights
    if name == "bvlc_alexnet":  # the two-GPU grouped convolutions: 48 input channels a group
        assert imported.blobs["conv2"] == [("conv2.weight", (256, 48, 5, 5)), ("conv2.bias", (256,))]
        assert imported.blobs["fc6"] == [("fc6.weight", (4096, 9216)), ("fc6.bias", (4096,))]


@needs_prototxts
def test_squeezenet_caffemodel_binds_by_name(tmp_path):
    """SqueezeNet 1.0's published prototxt with a random caffemodel (its 1,248,424 parameters, each layer's blobs
    in Caffe's shapes): every tensor bound by name, each equal to its blob, and the network runs."""
    prototxt = PROTOTXTS / "squeezenet_v1.0.deploy.prototxt"
    imported = convert(prototxt.read_text(), prototxt.name)
    rng = np.random.default_rng(0)
    layers = [(layer, "Convolution", [(rng.standard_normal(shape) * 0.05).astype(np.float32) for _, shape in tensors])
              for layer, tensors in imported.blobs.items() if tensors]
    assert sum(a.size for _, _, blobs in layers for a in blobs) == 1_248_424
    weights = tmp_path / "squeezenet.caffemodel"
    weights.write_bytes(caffemodel(layers))
    spec = tmp_path / "squeezenet.arch"
    archc.import_spec(prototxt, spec, weights)
    model = archc.load(spec, weights=tmp_path / "squeezenet.npz")
    assert model.binding is not None and len(model.binding.pairs) == 52
    assert {how for _, _, how in model.binding.pairs} == {"name"}
    stored = {t.name: t for t in model.proto.graph.initializer}
    from onnx import numpy_helper
    for layer, _, blobs in layers:
        for (key, _), blob in zip(imported.blobs[layer], blobs, strict=True):
            assert np.array_equal(numpy_helper.to_array(stored[key]), blob)
    x = np.random.default_rng(1).random((1, 3, 227, 227), dtype=np.float32)
    (prob,) = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"image": x})
    assert prob.shape == (1, 1000, 1, 1) and abs(prob.sum() - 1) < 1e-4
