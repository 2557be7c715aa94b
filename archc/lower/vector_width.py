"""The vector width each kernel of a built library really runs at, read from its machine code (`archc profile`'s
"Vector" column): a kernel whose schedule vectorizes nothing may still be vectorized by LLVM, and one whose
schedule does may have been scalarized (a predicate, a gather), so the code itself is the only true witness.

Each kernel's code is its `NAME_compute_` function (TVM's body, with its parallel tasks after it) or else the
`__tvm_ffi_NAME` wrapper. The width is that of the widest register any packed instruction in it uses: x86 `…ps`
(single precision) and `vp…` (integer: bf16's rounding is integer arithmetic on float32 bits) instructions on zmm
(512 bits, 16 float32 lanes), ymm (256) or xmm (128), but for the bitwise ones that scalar code uses too (`vxorps
%xmm0,%xmm0,%xmm0` zeroes a register); aarch64 instructions on `vN.4s` or `vN.8h` (128 bits). A kernel with none
is "scalar". The disassembler is `objdump` (the target's cross one for a
board, as its target file names the cross compiler); without one, no width is known (None).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

_SYMBOL = re.compile(r"^[0-9a-f]+ <(.+)>:$")
_X86 = re.compile(r"^\s*[0-9a-f]+:\s+(v?[a-z0-9]+ps|vp[a-z0-9]+)\s+(.*)$")  # a packed instruction, its operands
_BITWISE = re.compile(r"^(v?(xor|and|andn|or)ps|vp(xor|and|andn|or)[dq]?)$")  # scalar code's zeroing, sign idioms
_A64 = re.compile(r"\bv\d+\.(4s|8h)\b")
_BITS = {"zmm": 512, "ymm": 256, "xmm": 128}


def objdump_for(cross_compiler: str | None) -> str | None:
    """The disassembler for a library built with `cross_compiler` (None: this machine's), if installed."""
    if cross_compiler:
        prefix = cross_compiler.rsplit("-", 1)[0] if "-" in Path(cross_compiler).name else ""
        found = shutil.which(f"{prefix}-objdump") if prefix else None
        return found or shutil.which("llvm-objdump")
    return shutil.which("objdump") or shutil.which("llvm-objdump")


def widths(library: str | Path, names: list[str], objdump: str | None) -> dict[str, str]:
    """Kernel name → "512-bit", "256-bit", "128-bit" or "scalar", for each of `names` found in the library."""
    if objdump is None:
        return {}
    try:
        text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True,
                              timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    bits: dict[str, int] = {}
    symbol = None
    for line in text.splitlines():
        m = _SYMBOL.match(line)
        if m:
            symbol = m.group(1)
            bits.setdefault(symbol, 0)
            continue
        if symbol is None:
            continue
        x86 = _X86.match(line)
        if x86 and not _BITWISE.match(x86.group(1)):
            bits[symbol] = max([bits[symbol]] + [b for reg, b in _BITS.items() if f"%{reg}" in x86.group(2)])
        elif _A64.search(line):
            bits[symbol] = max(bits[symbol], 128)
    out = {}
    for name in names:
        for symbol in (f"{name}_compute_", f"__tvm_ffi_{name}"):
            if symbol in bits:
                out[name] = f"{bits[symbol]}-bit" if bits[symbol] else "scalar"
                break
    return out
