"""`archc.util.peak`: the measured fp32 FMA peak (a C kernel compiled at run time): plausible figures, more with
two threads than with one (loosely: the machine is shared), the ISA from the CPU's flags, FMA instructions in the
kernel, one sentence without a compiler, and no TVM needed."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers import raises

from archc.util import peak
from archc.util.machine import cpus

needs_cc = pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc")), reason="needs a C compiler (gcc)")


@needs_cc
def test_peak_is_plausible():
    one = peak.fma_peak(1)
    assert one["gflops"] > 0
    assert 5 <= one["per_core"] <= 1000
    assert one["threads"] == 1 and len(one["per_thread"]) == 1
    assert one["isa"] == peak.detect_isa()
    assert one["method"].endswith("runs") and "FMA" in one["method"]


@needs_cc
@pytest.mark.skipif(cpus() < 2, reason="needs two CPUs")
def test_two_threads_are_not_slower():
    one, two = peak.fma_peak(1), peak.fma_peak(2)
    assert 5 <= two["per_core"] <= 1000
    assert two["gflops"] > 0.9 * one["gflops"]  # 1.2× or more on a quiet machine; this one is shared


@needs_cc
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_kernel_is_made_of_fmas(tmp_path):
    isa = peak.detect_isa()
    if isa in ("sse", "scalar128"):
        pytest.skip("this CPU has no FMA: run on an x86 CPU with FMA3 (Intel Haswell or AMD Zen on)")
    (tmp_path / "p.c").write_text(peak.source(isa))
    subprocess.run([peak.compiler(), "-O2", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread",
                    "-o", str(tmp_path / "p.so"), str(tmp_path / "p.c")], check=True)
    assert (peak.fma_instructions(tmp_path / "p.so") or 0) >= peak.ISAS[isa][1]


def test_isa_from_flags():
    assert peak.detect_isa({"avx", "avx2", "fma", "avx512f"}, "x86_64") == "avx512"
    assert peak.detect_isa({"avx", "avx2", "fma"}, "x86_64") == "avx2"
    assert peak.detect_isa({"sse2", "avx"}, "x86_64") == "sse"
    assert peak.detect_isa(set(), "aarch64") == "neon"


def test_no_compiler_is_one_sentence(monkeypatch):
    monkeypatch.setattr(peak.shutil, "which", lambda name: None)
    monkeypatch.delenv("CC", raising=False)
    peak._library.cache_clear()
    try:
        with raises("no-compiler", naming="gcc"):  # what to install
            peak.fma_peak(1)
    finally:
        peak._library.cache_clear()
    with raises("bad-threads", naming=("1 to 256", "not 0")):
        peak.fma_peak(0)


def test_needs_no_tvm():
    code = "import sys; sys.modules['tvm'] = None; import archc.util.peak; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@needs_cc
def test_whether_a_256_bit_fma_does_a_512_bit_ones_work_is_measured_once_per_machine(tmp_path, monkeypatch):
    """The layout plan's question (8-channel blocks against padding to 16): measured once (its 512-bit and 256-bit
    peaks recorded beside the answer), then read from the user's cache; a cache edited to the other answer is
    what the next process believes, which shows it is read and not measured again."""
    if peak.detect_isa() != "avx512":
        pytest.skip("a question for AVX-512 CPUs: run on an x86 CPU with AVX-512")
    import json
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    peak.half_width_fma_is_full.cache_clear()
    first = peak.half_width_fma_is_full()
    (record,) = (tmp_path / "archc" / "machine").glob("*.json")
    data = json.loads(record.read_text())
    assert data["half_width_fma_is_full"] is first and data["gflops_512"] > 0 and data["gflops_256"] > 0
    assert first == (data["gflops_512"] < 1.5 * data["gflops_256"])
    record.write_text(json.dumps({**data, "half_width_fma_is_full": not first}))
    peak.half_width_fma_is_full.cache_clear()
    assert peak.half_width_fma_is_full() is (not first)
    peak.half_width_fma_is_full.cache_clear()
