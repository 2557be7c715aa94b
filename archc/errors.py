"""Errors that have no source span: a bad ONNX file, a missing weights file, an unknown option.

Each carries one sentence that tells the user what to do and a short kebab-case code that names the kind of failure
(`Code` below, the codes' one home; the spec language's diagnostics keep theirs in archc/spec/codes.py, the package
runtime's in archc/runtime/__init__.py). The CLI prints `archc: error: <sentence>  [<code>]` and exits non-zero;
`str(err)` is the sentence alone. Scripts and tests match the code, never the sentence's wording.
"""
from __future__ import annotations

from typing import Any, Literal, get_args

Code = Literal[
    "error",  # an ArchcError raised without a code of its own (a bug: tests/test_errors.py finds them)
    "internal-error",  # a bug in archc (the CLI's exit status 70; ARCHC_DEBUG=1 shows the traceback)
    "interrupted",  # Ctrl-C (exit status 130)
    # --- the command line and the API's arguments (UsageError: exit status 2)
    "bad-option",  # an option's value is malformed or not one it takes (--set, --batch, --kernels, --engines, …)
    "bad-usage",  # arguments and options that do not go together, or one the others need is missing
    "bad-shape",  # a shape that cannot be read (--input 1x3x…) or is absurd
    "bad-input",  # --input does not fit the model's inputs (a name it lacks, another number of dimensions)
    "needs-shape",  # a model input without a (static) shape: give it with --input
    "bad-threads",  # a thread count that is no number from 1 to the maximum (--threads, TVM_NUM_THREADS)
    "bad-output",  # -o names what cannot be written (no name, a file for a folder, the model itself)
    "output-exists",  # something is already where the output goes (a folder, a file, a link) and may not be replaced
    # --- the files archc reads
    "bad-import",  # `archc import` given a file of a format it does not import, or one it cannot read as text
    "no-file",  # a file or folder named (model, spec, weights, weights map, target file) does not exist
    "bad-onnx",  # an ONNX model that is unreadable, corrupt or not valid ONNX (cycles, dangling tensors, …)
    "unsafe-onnx",  # an ONNX model whose external data lies outside its folder (refused)
    "too-large",  # a model archc cannot write: over ONNX's 2 GiB without external data
    "simplify-failed",  # onnx-simplifier could not validate the simplified model
    "no-weights",  # a model loaded without weights (for analysis) given where weights are needed
    "bad-weights",  # a weights file that cannot be read, of an unknown format, or not a state_dict of tensors
    "no-torch",  # a PyTorch weights file where PyTorch is not installed
    "bad-weights-map",  # a weights map that cannot be read or is malformed
    "weights-mismatch",  # the weights file's tensors do not fit the model's weights (names, shapes, order)
    "bad-analysis",  # a saved analysis, comparison or diff that cannot be read or is of another schema version
    "bad-results",  # bench results that cannot be read, are not bench results, or are cut short or edited
    "results-too-new",  # bench results of a newer schema version than this archc reads
    "unknown-layer",  # --explain names no layer of the model
    "no-cam",  # `archc cam` on a network that does not end in global average pooling and a fully connected layer
    # --- targets and the back end
    "unknown-target",  # a target name that no target file defines
    "bad-target",  # a target file that is malformed, cannot be read, or is no valid TVM target
    "needs-tvm-target",  # a verb of the back end (tune, bench) given a target without TVM (onnx)
    "no-tvm",  # Apache TVM is not installed (errors.TvmMissing)
    "no-compiler",  # no C compiler for linking a library or building the FMA peak kernel
    "no-cross-compiler",  # the target's cross compiler is not installed
    "no-nvcc",  # CUDA's nvcc is not on PATH
    "no-objcopy",  # the objcopy that matches the compiler is not installed
    "link-failed",  # a tool that links archc's parallel runtime into a library failed
    "broken-install",  # a file of archc's own installation is missing: reinstall archc
    "tvm-import",  # TVM cannot import the model (ops its ONNX importer lacks)
    "tvm-compile",  # TVM could not compile the model for the target
    "no-gpu-tuning",  # tuning GPU kernels, which this version does not do
    "no-bf16",  # --precision bf16 where it cannot run fast: no AMX-BF16, a cross target, TVM's kernels
    "no-int8",  # --precision int8 where it cannot run fast: no AVX512-VNNI, a cross target, TVM's kernels
    "not-quantized",  # --precision int8 of a model without QuantizeLinear (archc quantize makes one)
    "bad-calibration",  # archc quantize's histogram calibration cannot bin an activation's values
    "needs-rpc",  # tuning or profiling a board's package measures on the board: --rpc and --rpc-key are needed
    "tuning-failed",  # every tuning trial failed
    "bad-database",  # a tuning database that cannot be read or whose TVM stamp is corrupt
    "database-other-tvm",  # a tuning database that another TVM version wrote
    "old-package",  # a package built by another archc version (its kernels do not take this archc's arguments)
    "corrupt-package",  # a package that lacks what it needs (no kernel to time): compile it again
    "measure-failed",  # measuring this machine (memory bandwidth, the FMA peak) failed
    "unverified",  # a package whose library differs from onnxruntime (errors.VerificationFailed; exit status 4)
]
CODES: frozenset[str] = frozenset(get_args(Code))


class ArchcError(Exception):
    """One sentence (`str(err)`) and its `code`: `ArchcError(message, code="no-file")`."""

    exit_code = 1
    code: Code = "error"  # the class's code where a subclass has one meaning (TvmMissing); else given when raised

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(ArchcError):
    exit_code = 2


INSTALL_TVM = "pip install '.[tvm]' in archc's checkout (it pins apache-tvm and apache-tvm-ffi)"


class TvmMissing(ArchcError):
    """Raised on importing the TVM-bound back end (`archc.lower`) where TVM is not installed."""

    code: Code = "no-tvm"

    def __init__(self) -> None:
        super().__init__("archc's back end (compiling, tuning or profiling for a TVM target) needs Apache TVM, "
                         f"which is not installed: {INSTALL_TVM}")


class VerificationFailed(ArchcError):
    """A package was written, but its library does not compute what onnxruntime computes (`archc.lower.verify`);
    its manifest says so. Exit status 4: the output exists and must not be trusted."""

    exit_code = 4
    code: Code = "unverified"

    def __init__(self, folder: Any, record: Any) -> None:
        self.folder, self.verification = folder, record
        super().__init__(f"the library of '{folder}' differs from onnxruntime's results: output "
                         f"'{record.worst_output}' by {record.max_rel_diff:.2e} of its range (tolerance "
                         f"{record.tolerance:.0e}, {record.inputs}); {record.divergence}. The package is written and "
                         "marked unverified in its manifest; please report this with the model")
