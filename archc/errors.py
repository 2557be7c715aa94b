"""Errors that have no source span: a bad ONNX file, a missing weights file, an unknown option.

Each carries one sentence that tells the user what to do; the CLI prints it and exits non-zero.
"""


class ArchcError(Exception):
    exit_code = 1


class UsageError(ArchcError):
    exit_code = 2
