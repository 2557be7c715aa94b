"""The op registry and its families. Importing this package registers every op (explicitly, in a fixed order)."""
from archc.ops import activation, arith, conv, detection, linear, norm, pool, tensor  # noqa: F401  (registration)
from archc.ops.registry import REQUIRED, Built, Init, Kind, OpDef, OpError, Param, WeightSpec, all_ops, lookup

__all__ = ["REQUIRED", "Built", "Init", "Kind", "OpDef", "OpError", "Param", "WeightSpec", "all_ops", "lookup"]
