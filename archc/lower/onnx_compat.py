"""ONNX ops TVM's importer lacks, rewritten into ops it has, before `from_onnx` (the ONNX file itself is unchanged).

    LpNormalization(x, axis, p)  →  Div(x, ReduceL1|ReduceL2(x, axes=[axis], keepdims=1))

(SSD's conv4_3 L2 norm.) The spec says y = x / ‖x‖_p along the axis, which is what onnxruntime computes.
"""
from __future__ import annotations

import onnx
from onnx import helper


def decompose_for_tvm(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every op above rewritten; the same object when there is none."""
    if not any(n.op_type == "LpNormalization" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 17)
    nodes = []
    for node in out.graph.node:
        if node.op_type != "LpNormalization" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, p = int(attrs.get("axis", -1)), int(attrs.get("p", 2))
        norm = f"{node.output[0]}__archc_l{p}norm"
        reduce_op = "ReduceL1" if p == 1 else "ReduceL2"
        if opset >= 18:  # axes became an input in opset 18
            axes = f"{norm}__axes"
            nodes.append(helper.make_node("Constant", [], [axes], value=helper.make_tensor(axes, onnx.TensorProto.INT64,
                                                                                           [1], [axis])))
            nodes.append(helper.make_node(reduce_op, [node.input[0], axes], [norm], keepdims=1))
        else:
            nodes.append(helper.make_node(reduce_op, [node.input[0]], [norm], axes=[axis], keepdims=1))
        nodes.append(helper.make_node("Div", [node.input[0], norm], list(node.output), name=node.name))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
