"""The records of `archc profile`: each compiled kernel's time beside the whole model's (made by
`archc.lower.profile`, which times them; read by `archc.render` and `archc bench`). TVM-free."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class KernelTime:
    name: str
    seconds: float  # mean of the timed runs
    calls: int  # how often the model calls it (each call is counted in `total_seconds`)
    args: list[str]  # argument shapes and dtypes, as 1×64×56×56 float32
    nodes: list[str] = field(default_factory=list)  # the ONNX nodes it runs (over all its calls)
    macs: int | None = None  # theirs, from the analyzer, over all its calls (None: no node found)
    vector: str | None = None  # the widest packed float32 register its machine code uses ("512-bit"), or "scalar"

    @property
    def total_seconds(self) -> float:
        return self.seconds * self.calls

    @property
    def gflops(self) -> float | None:
        """Achieved GFLOP/s (a MAC is two FLOPs), None where the kernel does no MACs."""
        return 2 * self.macs / self.total_seconds / 1e9 if self.macs and self.total_seconds > 0 else None


@dataclass
class Profile:
    package: str
    target: str
    kernels: list[KernelTime]  # slowest first (by total time)
    end_to_end_seconds: float  # the median of whole-model runs

    @property
    def kernels_seconds(self) -> float:
        return sum(k.total_seconds for k in self.kernels)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": 1, "package": self.package, "target": self.target,
                "end_to_end_seconds": self.end_to_end_seconds, "kernels_seconds": self.kernels_seconds,
                "kernels": [{**_without_unknown_vector(asdict(k)), "total_seconds": k.total_seconds,
                             "gflops": k.gflops} for k in self.kernels]}


def _without_unknown_vector(kernel: dict[str, Any]) -> dict[str, Any]:
    """A kernel's record without the vector width where none is known (as profiles written before it was read):
    such files still round-trip byte for byte."""
    if kernel.get("vector") is None:
        kernel.pop("vector", None)
    return kernel
