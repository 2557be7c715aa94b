"""One `Layer` row per ONNX node: weights, cost by the op's registered rule, output size, receptive field."""
from __future__ import annotations

from collections.abc import Callable

from archc import metadata
from archc.analysis.graph import NetGraph, Node
from archc.analysis.model import Layer, ReceptiveField
from archc.ops.registry import RF
from archc.shapes import FLOAT_ONNX, Shape


def weights_of(node: Node, g: NetGraph) -> tuple[list[str], list[str]]:
    """(trainable, non-trainable) stored tensors this node reads, by the op's weight slots."""
    rule = node.rule
    trainable, buffers = [], []
    for slot, name in enumerate(node.proto.input):
        t = g.tensors.get(name)
        if not name or t is None or not t.stored:
            continue
        if rule is None:  # an op without a rule: its stored float tensors are its weights (its cost is unknown)
            if t.numel > 1 and t.dtype in FLOAT_ONNX:
                trainable.append(name)
            continue
        if slot in rule.trainable_slots:
            trainable.append(name)
        elif slot in rule.buffer_slots:
            buffers.append(name)
        elif rule.learned_constants and t.numel > 1 and t.dtype in FLOAT_ONNX:
            trainable.append(name)
    return trainable, buffers


def _window_attrs(node: Node) -> tuple[Shape | None, Shape | None, Shape | None, Shape | None, int | None]:
    rule = node.rule
    if rule is None or rule.rf not in (RF.WINDOW, RF.TRANSPOSED):
        return None, None, None, None, None
    k, s, d, pads = node.view.window()
    return k or None, s, d, pads, node.view.attrs.get("group")  # only convolutions have a group


def build_layers(g: NetGraph, fields: dict[str, ReceptiveField], main_fields: dict[str, ReceptiveField],
                 block_of: Callable[[Node], str]) -> list[Layer]:
    names = {}
    for node in g.nodes:
        for out in node.proto.output:
            names[out] = node.name
    layers = []
    for node in g.nodes:
        if node.shape_only:
            continue
        trainable, buffers = weights_of(node, g)
        rule = node.rule
        macs = rule.macs(node.view) if rule else None
        flops = rule.flops(node.view) if rule else None
        out = g.tensors.get(node.proto.output[0]) if node.proto.output else None
        elems = out.numel if out is not None and out.shape is not None else 0
        k, s, d, pads, groups = _window_attrs(node)
        layers.append(Layer(
            name=node.name, op=node.op_type, block=block_of(node),
            kernel=k, stride=s, dilation=d, pads=pads, groups=groups,
            input_shapes=list(node.view.in_shapes),
            output_shape=out.shape if out is not None else None,
            params=sum(g.tensors[t].numel for t in trainable),
            nontrainable=sum(g.tensors[t].numel for t in buffers),
            macs=macs, flops=flops, activation_elements=elems,
            activation_bytes=elems * (out.itemsize if out is not None else 4),
            receptive_field=fields.get(node.proto.output[0]) if node.proto.output else None,
            receptive_field_main=main_fields.get(node.proto.output[0]) if node.proto.output else None,
            inputs=[names.get(i, i) for i, stored in zip(node.proto.input, node.view.initializer_inputs)
                    if i and not stored],
            weights=trainable, buffers=buffers,
            spec_op=node.meta.get(metadata.LAYER), span=node.meta.get(metadata.SPAN),
        ))
    return layers


def depth(layers: list[Layer], main_path: bool = True) -> int:
    """Layers with MACs (convolutions, dense layers) on the longest path: ResNet-50 → 50, VGG-16 → 16.

    On the main path (papers' depth), a merge follows only its inputs of the output's full shape: a squeeze-
    excitation gate's two dense layers (N×C×1×1, broadcast over N×C×H×W) are a side branch, so SE-ResNet-50 is 50
    deep as its paper says, not 82. `main_path=False` gives the plain longest path."""
    best: dict[str, int] = {}
    by_name = {lay.name: lay for lay in layers}
    for lay in layers:
        here = 1 if lay.macs else 0
        preds = [by_name[i] for i in lay.inputs if i in by_name]
        if main_path and len(preds) > 1:
            preds = [p for p in preds if p.output_shape == lay.output_shape] or preds
        best[lay.name] = here + max((best.get(p.name, 0) for p in preds), default=0)
    consumed = {i for lay in layers for i in lay.inputs}
    return max((d for name, d in best.items() if name not in consumed), default=0)  # measured at the ends


def total_stride(layers: list[Layer]) -> tuple[int, ...] | None:
    """Input spatial size / output spatial size of a run of layers (the stride of a block)."""
    first = next((lay.input_shapes[0] for lay in layers if lay.input_shapes and lay.input_shapes[0]), None)
    last = layers[-1].output_shape if layers else None
    if not first or not last or len(first) < 3 or len(last) != len(first):
        return None
    return tuple(max(1, round(a / b)) for a, b in zip(first[2:], last[2:]))

