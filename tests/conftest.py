import functools
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

sys.path.insert(0, str(ROOT / "tests" / "zoo"))  # torchvision_ref: the one place torchvision is imported
from torchvision_ref import import_torchvision  # noqa: E402


@pytest.fixture(scope="module")
def own_tuning_cache(tmp_path_factory):
    """The default tuning database lives under the user's cache (XDG_CACHE_HOME): a test module that compiles for a
    TVM target uses its own, never the user's. (The arm64 root stays where it is: ARCHC_ARM64_ROOT or the home
    folder, not XDG_CACHE_HOME.)"""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture
def specs_dir() -> Path:
    return SPECS


# ---- markers for what a test needs (registered in pyproject.toml) ---------------------------------------------
# A marked test whose requirement is missing is skipped with a reason that says what to install; each check runs
# at most once per session, and only when a test that needs it is about to run.
@functools.cache
def _missing_torch() -> str | None:
    hint = "pip install -e '.[test]'"
    if importlib.util.find_spec("torch") is None:
        return f"needs PyTorch and torchvision: {hint}"
    try:
        import_torchvision()
    except Exception as e:  # a broken install (wrong wheel for this torch) skips too, and says why
        last = (str(e).strip().splitlines() or [""])[-1]  # a traceback-like message ends with the cause
        return (f"needs PyTorch and torchvision: `import torchvision` failed ({type(e).__name__}: {last}); "
                f"reinstall them as a matching pair: {hint}")
    return None


@functools.cache
def _missing_tvm() -> str | None:
    if importlib.util.find_spec("tvm") is None:
        return "needs Apache TVM: install TVM's Python package (`import tvm` must work)"
    try:
        import tvm  # noqa: F401
    except Exception as e:
        return f"needs Apache TVM: `import tvm` failed ({type(e).__name__}: {e})"
    return None


@functools.cache
def _missing_cross() -> str | None:
    from archc.runtime import qemu
    missing = [] if shutil.which("aarch64-linux-gnu-gcc") else ["aarch64-linux-gnu-gcc"]
    if qemu.find_qemu() is None:
        missing.append("qemu-aarch64 (or qemu-aarch64-static)")
    if qemu.root_versions(qemu.arm64_root()) is None:
        missing.append(f"the arm64 Python root (in {qemu.arm64_root()}; ARCHC_ARM64_ROOT)")
    if missing:
        return (f"needs an aarch64 cross compiler, qemu and an arm64 Python with TVM: {', '.join(missing)} missing; "
                "run scripts/install-test-deps.sh")
    return None


@functools.cache
def _missing_gpu() -> str | None:
    try:
        ok = subprocess.run(["nvidia-smi"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return None if ok else "needs an NVIDIA GPU: `nvidia-smi` is missing or failed"


REQUIREMENTS = {"torch": _missing_torch, "tvm": _missing_tvm, "cross": _missing_cross, "gpu": _missing_gpu}


@pytest.hookimpl(tryfirst=True)  # before fixtures, which may import torch
def pytest_runtest_setup(item: pytest.Item) -> None:
    for name, missing in REQUIREMENTS.items():
        if item.get_closest_marker(name) is not None:
            reason = missing()
            if reason:
                pytest.skip(reason)
