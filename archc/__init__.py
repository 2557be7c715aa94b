"""archc: an ONNX graph compiler and CNN architecture analyzer.

Python API (mirrors the CLI verbs; see `archc.api`):

    model = archc.load("specs/resnet50.arch", input="1x3x320x320")   # Model: ONNX with static shapes
    archc.compile(model, target="onnx", output="resnet50.onnx")       # CompileResult
    analysis = archc.analyze("resnet50.onnx")                           # Analysis (to_json / from_json)
    archc.compile(model, target="native", output="resnet50.native")   # a deploy package
    archc.profile("resnet50.native")                                    # Profile: each kernel's time
    results = archc.bench("specs/resnet18.arch", "native")              # archc against onnxruntime
    archc.report([results], "resnet18.html")                            # the HTML report
"""
from __future__ import annotations

from archc.api import (
    CompileResult,
    analyze,
    bench,
    cam,
    compile,
    import_spec,
    load,
    profile,
    quantize,
    read_result,
    report,
    tune,
)
from archc.diagnostics import SpecError
from archc.errors import ArchcError
from archc.options import ModelOptions
from archc.shapes import parse_shape
from archc.version import __version__

__all__ = ["ArchcError", "CompileResult", "ModelOptions", "SpecError", "analyze", "bench", "cam", "compile",
           "import_spec", "load", "parse_shape", "profile", "quantize", "read_result", "report", "tune", "__version__"]
