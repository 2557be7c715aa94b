"""Peak memory of one engine alone: a fresh child process (`python -m archc.measurement.memory SPEC INPUTS`) rebuilds
the engine from its `spec()`, runs it once on the benchmark's inputs and reports its peak resident set size (on
Linux the kernel's high-water mark, VmHWM in /proc/self/status): the engine's libraries, the model, its weights and
its working memory, plus what every child has (the Python interpreter, numpy and archc's engine module:
`baseline`, the same for all engines).

The child imports only what the engine needs: an archc package runs on TVM's runtime library alone
(TVM_USE_RUNTIME_LIB=1, as on a device), and `import torch` is kept out of it, which TVM's FFI package would
otherwise do merely because PyTorch is installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

METHOD = ("peak resident set size (Linux: VmHWM) of a fresh process that loads only that engine and runs the model "
          "once at that batch; it includes the interpreter, numpy and archc's engine module ('baseline_bytes')")


def peak_bytes(spec: dict[str, Any], inputs: Path, timeout: float = 3600) -> int | None:
    """The child's peak RSS in bytes, None when it failed (the engine's own measurement already said why)."""
    env = dict(os.environ)
    if spec["engine"] == "archc":
        env["TVM_USE_RUNTIME_LIB"] = "1"  # its threads: the spec's, given to load_package
    try:
        out = subprocess.run([sys.executable, "-m", "archc.measurement.memory", json.dumps(spec), str(inputs)],
                             capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"])


def baseline(inputs: Path) -> int | None:
    """What every child holds before it loads an engine."""
    return peak_bytes({"engine": "none", "path": "", "threads": 1}, inputs)


def _rss_peak() -> int:
    """This process's peak resident set: VmHWM on Linux (getrusage's ru_maxrss would also count the parent's,
    which it inherits across fork and exec), ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # kilobytes elsewhere


def main(argv: list[str]) -> int:
    spec, inputs_file = json.loads(argv[0]), argv[1]
    if spec["engine"] not in ("torch", "none"):
        sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` now fails: TVM's FFI goes on without
    import numpy as np

    from archc.measurement import engines
    with np.load(inputs_file, allow_pickle=False) as data:
        inputs = {k: data[k] for k in data.files}
    if spec["engine"] != "none":
        engine = engines.make(spec)
        engine.prepare()
        engine.run(inputs)
    print(json.dumps({"peak_bytes": _rss_peak()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
