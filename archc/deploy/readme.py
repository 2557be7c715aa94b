"""The README.md of a deploy package: how to run it with archc, with Python and TVM's runtime alone, and with the
C++ loader (built from the package itself, or why it cannot be)."""
from __future__ import annotations

from archc.deploy.manifest import Manifest


def readme(m: Manifest) -> str:
    ins = ", ".join(f"{i.name} {i.dims} {i.dtype}" for i in m.inputs)
    outs = ", ".join(f"{o.name} {o.dims} {o.dtype}" for o in m.outputs)
    return (f"# {m.model} for {m.target.name}\n\n{m.target.description}.\n\n"
            f"Built by archc {m.archc_version} with Apache TVM {m.tvm_version}.\n"
            f"Inputs: {ins}. Outputs: {outs}.\n\n"
            "Run it with archc (`archc run . [--threads N]`) or, in Python with only numpy and TVM's runtime "
            "installed (this folder's `archc_runtime.py` reads `manifest.json` with `archc_manifest.py`):\n\n"
            "```python\nfrom archc_runtime import load_package   # this folder's copy of archc.runtime\n"
            "pkg = load_package(\".\")                       # threads=N: the library's threads (default: "
            "TVM_NUM_THREADS, else every CPU)\n"
            "outputs = pkg.run({name: array, ...})\n```\n\n" + _detector(m) + _cpp(m))


def _detector(m: Manifest) -> str:
    """What a detector package's loaders return (compile --detect)."""
    d = m.detection
    if d is None:
        return ""
    text = (f"## Boxes: a {d.kind} detector\n\n`pkg.detect({{\"{m.inputs[0].name}\": x}})` returns `boxes` (K×4, "
            "x1 y1 x2 y2 in input pixels), `scores` and `classes`: the outputs decoded, boxes kept above "
            f"{d.confidence:g} and suppressed per class above IoU {d.iou:g}, the best {d.max_boxes} "
            "(`confidence=` and `iou=` change the thresholds); `run_model` writes them as boxes.npy, scores.npy "
            "and classes.npy.")
    if d.proposals is not None:
        p = d.proposals
        text += (f" This library is stage one (backbone and RPN); stage two, the heads run once per proposal, is "
                 f"the package in `{p.heads}/`. Between them the loaders choose the {p.rois[-2]} proposals: "
                 f"{len(p.sizes) * len(p.ratios)} anchors a location every {p.stride} pixels, the {p.pre_nms} most "
                 f"probable through non-maximum suppression above IoU {p.iou:g}; `run_model` also writes them as "
                 "proposals.npy, and times stage one.")
    return text + "\n\n"


def _cpp(m: Manifest) -> str:
    cpp = m.cpp_loader
    files = " ".join(f"{i.name}.npy" for i in m.inputs)
    outs = ", ".join(f"out{n}.npy is {o.name}" for n, o in enumerate(m.outputs))
    arm = m.target.is_arm
    text = ("## Without Python: the C++ loader\n\n"
            "`cpp/main.cc` runs the library with TVM's C++ runtime (the Relax VM); `include/` holds the TVM headers "
            "it includes and `lib/` TVM's runtime libraries for this target"
            + (f" (from {cpp.libs_from})" if cpp.runtime_libs else "") + ". Build it once with make and a "
            "C++17 compiler, then run it from any folder (its rpath finds `lib/`; no Python, no LD_LIBRARY_PATH):\n\n"
            f"```\n{cpp.build}" + ("      # cross compiled here; on the device itself: make -C cpp" if arm else "")
            + f"\n./run_model {m.library} {files} -o out/ --repeat 100\n```\n\n"
            f"It takes one .npy file per input (little endian, C order), in this order: "
            + ", ".join(f"{i.name} {i.dims} {i.dtype}" for i in m.inputs)
            + f"; writes each output to `out/`: {outs}; prints their shapes and the time of a run (the median of N "
            "runs after a warm-up with `--repeat N`; `--threads N` sets the library's threads). An error (a missing "
            "file, a wrong shape or dtype, a library "
            "that does not load here) is one line on stderr and a non-zero exit status.\n")
    if arm:
        text += ("\nOn an x86 machine it runs under qemu: `qemu-aarch64-static -L /usr/aarch64-linux-gnu ./run_model "
                 f"{m.library} {files} -o out/`.\n")
    if "libtvm_runtime_cuda.so" in " ".join(cpp.runtime_libs):
        text += ("\nThe device needs an NVIDIA GPU, its driver (libcuda.so.1) and the CUDA runtime that "
                 "`lib/libtvm_runtime_cuda.so` links (`ldd lib/libtvm_runtime_cuda.so` names it).\n")
    if cpp.missing:
        text += f"\n**run_model cannot be built from this package as it is**: {cpp.missing}."
        if not cpp.runtime_libs:
            text += (" Before building, copy TVM's runtime libraries for this target (libtvm_ffi.so, "
                     "libtvm_runtime.so and libtvm_runtime_extra.so, from the apache-tvm-ffi and apache-tvm "
                     f"{m.tvm_version} wheels for it) into `lib/`.")
        text += "\n"
    return text
