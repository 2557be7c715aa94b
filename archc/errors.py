"""Errors that have no source span: a bad ONNX file, a missing weights file, an unknown option.

Each carries one sentence that tells the user what to do; the CLI prints it and exits non-zero.
"""


class ArchcError(Exception):
    exit_code = 1


class UsageError(ArchcError):
    exit_code = 2


INSTALL_TVM = "pip install '.[tvm]' in archc's checkout (it pins apache-tvm and apache-tvm-ffi)"


class TvmMissing(ArchcError):
    """Raised on importing the TVM-bound back end (`archc.lower`) where TVM is not installed."""

    def __init__(self) -> None:
        super().__init__("archc's back end (compiling, tuning or profiling for a TVM target) needs Apache TVM, "
                         f"which is not installed: {INSTALL_TVM}")
