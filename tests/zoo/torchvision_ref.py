"""torchvision as the reference for zoo specs: same weight tensors in the same order, and the same outputs.

Every test imports torchvision through `import_torchvision` here (tests/conftest.py's `torch` marker check too),
so the one workaround below lives in one place.
"""
from __future__ import annotations

import sys
import types

import numpy as np

_STUBBED = "torchvision._meta_registrations"


def import_torchvision():
    """`import torchvision`, with one stub where the installed wheel needs it.

    Why: the torchvision 0.28.0 wheel on these machines is the CUDA build (0.28.0+cu130) while torch is the CPU
    build (2.13.0+cpu). Its compiled extension (`torchvision/_C.so`) cannot load, so the `torchvision::nms`,
    `roi_align` … operators are never defined, and `torchvision/__init__.py` then fails importing
    `torchvision._meta_registrations`, which registers fake/meta kernels for exactly those operators
    ("RuntimeError: operator torchvision::nms does not exist"). The model definitions the tests use never call
    those operators (only detection post-processing does, which no test runs), so an empty stand-in for that one
    module is enough. The plain import is tried first: with a matching torchvision wheel the stub is never used.
    """
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # the failed import left its submodules half-initialised
        sys.modules[_STUBBED] = types.ModuleType(_STUBBED)
        import torchvision
    return torchvision


def torchvision_models():
    import_torchvision()
    import torchvision.models as models
    return models


def reference(name: str, **kwargs):
    import torch
    torch.manual_seed(0)
    model = getattr(torchvision_models(), name)(**kwargs).eval()
    return model


def state_tensors(model):
    """state_dict entries in order, without BN's num_batches_tracked counters."""
    return [(k, v.detach().numpy()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]


def bind_positionally(graph, model) -> dict[str, np.ndarray]:
    """Pair archc's weights with torchvision's state_dict in order; any shape difference is a structural mismatch."""
    ours = list(graph.weight_items())
    theirs = state_tensors(model)
    assert len(ours) == len(theirs), f"archc has {len(ours)} weight tensors, torchvision {len(theirs)}"
    bound = {}
    for (name, _, w), (tname, arr) in zip(ours, theirs):
        assert tuple(w.shape) == tuple(arr.shape), f"{name} {w.shape} vs torchvision {tname} {arr.shape}"
        bound[name] = arr.astype(np.float32)
    return bound


def randomize_bn(model, seed: int = 0):
    """Non-trivial BN statistics, so a wrongly ordered mean/var pair would show in the outputs."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def compare_outputs(graph, model, shape=None, tolerance=1e-5):
    """Run archc's ONNX (with torchvision's weights) in onnxruntime and the torch model on the same input.

    Tolerance: max |archc − torch| ≤ 1e-5 × max(1, max |torch|). Relative to the output's range, because random
    BN statistics (which do not normalise the real activations) make deep nets' logits grow to ~1e11 while the
    float32 rounding stays ~5e-7 of the range; a structural error (wrong order, padding, pooling mode) is O(1)
    of the range.
    """
    import onnxruntime as ort
    import torch

    from archc.emit import to_onnx
    from archc.options import ModelOptions
    randomize_bn(model)
    weights = bind_positionally(graph, model)
    onnx_model = to_onnx(graph, ModelOptions(simplify=False), weights=weights)
    shape = shape or graph.inputs[0].shape
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sess = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    ours = sess.run(None, {graph.inputs[0].name: x})[0]
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(1.0, float(np.abs(theirs).max()))
    err = float(np.abs(ours - theirs).max())
    assert err <= tolerance * scale, f"max abs diff {err:.3g} exceeds {tolerance} × {scale:.3g}"
    return err / scale
