"""Run an aarch64 package on an x86-64 machine, under qemu's user-mode emulation.

`scripts/install-test-deps.sh` installs qemu-user-static and builds an arm64 Python root: Debian's arm64 python3.11
and the aarch64 wheels of the host's TVM and numpy, in `$ARCHC_ARM64_ROOT` (default `~/.cache/archc/arm64`). An
emulated Python runs the runtime's own file as a script (`python __init__.py PKG --inputs in.npz --output out.npz
[--repeat N] [--threads N]`, see `main` in the runtime): the inputs and outputs travel as .npz files in a temporary
folder, and the times are measured inside the emulated process, without its start-up.

This module needs only the standard library and numpy (like the rest of the runtime, it imports nothing of archc).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import CARRIED, PACKAGE_ERROR_EXIT, TIMES, Manifest, PackageError, _write_npz, last_line, parse_error_line

STAMP = "archc-arm64.stamp"  # written last by scripts/install-test-deps.sh: the root is complete
PYTHON = "usr/bin/python3.11"
INSTALL = "run scripts/install-test-deps.sh (it installs qemu and an arm64 Python with TVM)"
_DROPPED = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONSAFEPATH", "PYTHONEXECUTABLE", "PYTHONUSERBASE",
            "VIRTUAL_ENV", "LD_LIBRARY_PATH", "LD_PRELOAD", "QEMU_LD_PREFIX", "QEMU_CPU")


ROOT_VARIABLE = "ARCHC_ARM64_ROOT"
POOL_LINE = "archc pool: "  # how archc's parallel runtime (pool.c) starts a line on stderr


def arm64_root() -> Path:
    """Where the arm64 Python root is: `$ARCHC_ARM64_ROOT`, else `~/.cache/archc/arm64`."""
    return Path(os.environ.get(ROOT_VARIABLE) or Path.home() / ".cache" / "archc" / "arm64")


def find_qemu() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


def root_versions(root: Path) -> dict[str, str] | None:
    """The root's package versions from its stamp (`tvm 0.27.0`, ...), or None when the root is missing or was
    left unfinished."""
    try:
        lines = (root / STAMP).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    if not (root / PYTHON).is_file():
        return None
    return dict(line.split(" ", 1) for line in lines if " " in line)


def missing() -> str | None:
    """Why aarch64 code cannot be emulated here (the part of a sentence after 'because'), or None when it can."""
    if find_qemu() is None:
        return "qemu-aarch64-static is not installed"
    root = arm64_root()
    if root_versions(root) is None:
        return f"there is no arm64 Python root in '{root}'"
    return None


@dataclass(frozen=True)
class Emulator:
    qemu: str
    root: Path
    tvm_version: str | None

    def environment(self) -> dict[str, str]:
        """The emulated Python's environment: the host's, less what points at the host's Python or libraries."""
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        env.update(QEMU_LD_PREFIX=str(self.root), PYTHONHOME=str(self.root / "usr"),
                   PYTHONPATH=str(self.root / "site"), PYTHONNOUSERSITE="1",
                   # TVM's runtime library alone: loading its compiler library (240 MB) takes seconds under qemu
                   TVM_USE_RUNTIME_LIB="1")
        return env

    def command(self, script: Path, *args: str, cpu: str | None = None) -> list[str]:
        """The emulated Python running `script`; with `cpu`, on that CPU model of qemu's rather than its "max"
        (every extension qemu knows)."""
        return [self.qemu, *(["-cpu", cpu] if cpu else []), str(self.root / PYTHON), str(script), *args]

    def cpu(self, manifest: Manifest) -> str | None:
        """The qemu CPU model a package's target names (its LLVM mcpu: cortex-a72 for rpi4, cortex-a76 for rpi5),
        so that an instruction the board lacks stops the run as the board would; None (qemu's "max") where qemu
        has no model of it (graviton3's neoverse-v1 in qemu 7)."""
        mcpu = str(manifest.target.tvm.get("mcpu", ""))
        return mcpu if mcpu in cpu_models(self.qemu) else None

    def run(self, package: Path, inputs: dict[str, np.ndarray], repeat: int = 0,
            threads: int | None = None) -> tuple[list[np.ndarray], list[float]]:
        """Run `package` on `inputs` with archc's loader as a package carries it (`archc_runtime.py` beside
        `archc_manifest.py`, copied into a temporary folder) in an emulated Python:
        the outputs, in the manifest's order, and with `repeat`, the seconds of each of `repeat` runs after a
        warm-up, measured inside the emulated process; `threads`: the library's threads there (default: its
        TVM_NUM_THREADS, which it inherits, else every CPU)."""
        manifest = Manifest.read(package)
        with tempfile.TemporaryDirectory(prefix="archc-qemu-") as tmp:
            given, result = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
            for name, source in CARRIED.items():
                shutil.copyfile(source, Path(tmp) / name)
            script = Path(tmp) / "archc_runtime.py"
            _write_npz(given, inputs)
            args = [str(package.resolve()), "--inputs", str(given), "--output", str(result)]
            if repeat:
                args += ["--repeat", str(repeat)]
            if threads is not None:
                args += ["--threads", str(threads)]
            try:
                done = subprocess.run(self.command(script, *args, cpu=self.cpu(manifest)), env=self.environment(),
                                      cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      errors="replace")
            except OSError as err:
                raise PackageError(f"{self.qemu} does not start ({err.strerror or err}); {INSTALL}",
                                   code="no-qemu") from None
            lines = done.stderr.splitlines()
            for line in lines:  # the emulated pool's own lines (ARCHC_POOL_STATS=1), on stderr as natively
                if line.startswith(POOL_LINE):
                    print(line, file=sys.stderr)
            if done.returncode != 0:
                last = last_line("\n".join(line for line in lines if not line.startswith(POOL_LINE)),
                                 f"no message, exit status {done.returncode}")
                if done.returncode == PACKAGE_ERROR_EXIT:  # the loader's own PackageError: its sentence and code
                    raise parse_error_line(last, "emulation-failed")
                raise PackageError(f"running '{package}' under {Path(self.qemu).name} failed: {last}",
                                   code="emulation-failed")
            names = [o.name for o in manifest.outputs]
            with np.load(result, allow_pickle=False) as data:
                outputs = [data[name] for name in names]
        timed = [line[len(TIMES):] for line in done.stdout.splitlines() if line.startswith(TIMES)]
        times: list[Any] = json.loads(timed[-1]) if timed else []
        return outputs, [float(t) for t in times]


@functools.cache
def cpu_models(qemu: str) -> frozenset[str]:
    """The CPU models `qemu -cpu help` lists (none where it cannot say)."""
    try:
        listed = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in listed.splitlines()[1:] if line.strip())


def emulator() -> Emulator:
    """The emulator and arm64 root of this machine; a PackageError saying what to install when one is missing."""
    why = missing()
    if why:
        raise PackageError(f"aarch64 code cannot run on this machine because {why}; {INSTALL}", code="no-qemu")
    qemu = find_qemu()
    assert qemu is not None
    root = arm64_root()
    return Emulator(qemu, root, (root_versions(root) or {}).get("tvm"))
