"""The layout plan: convolutions in the blocked layout NCHW[x]c, the layout carried through the ops between them.

One pass over the model's dataflow (a Relax function from the ONNX importer, before legalization):

* each convolution archc has a kernel for becomes a call of archc's compute (conv2d.compute) on NCHW[ic_bn]c data
  with weights packed here, once, in numpy (OIHW[ic_bn]i[oc_bn]o); its output is NCHW[oc_bn]c;
* the per-channel affine chain after a convolution (bias, the batch norm that DecomposeOpsForInference spelled as
  subtract/divide/multiply/add of constants) is folded: the scale into the packed weights, the shift into one add
  that fuses into the kernel's epilogue;
* elementwise ops, pools, channel reductions and channel concatenation run on the blocked tensors as they are
  (their constants re-laid out here); any other op gets NCHW, through a layout_transform emitted once per tensor
  (which op takes which rule: the table in optable.py, which the block plan reads too);
* the block size is the plan's choice per group of tensors that share a layout (blocks.py: the modelled sum of
  the convolutions' times, channels zero-padded to whole blocks where that is cheaper); a tensor no convolution
  writes takes the rule's (`Plan.block`), and a consumer its producer's block to avoid a relayout.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from tvm import relax, tirx
from tvm.relax.utils import gen_call_tir_inputs

from archc.lower.kernels import amx, bfmmla, conv2d, dense, dpbf16, sdot, steps, usmmla, vnni, winograd
from archc.lower.kernels.blocks import choose, is_depthwise, padded
from archc.lower.kernels.optable import OPS, Kind, is_const, is_op_call, per_channel, rule_of, shape_of
from archc.lower.kernels.qdq import integers, quantized_input

_AFFINE = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide"}


@dataclass
class Decision:
    """What the plan did with one convolution (for --explain-layout)."""
    name: str  # the output variable
    shape: str  # C×H×W → O×OH×OW, kernel, stride, groups
    ic_bn: int
    oc_bn: int
    relayout: bool  # its input had to be re-laid out
    folded: int = 0  # per-channel ops folded into it
    channels: tuple[int, int] = (0, 0)  # output channels, and as stored (zero-padded to whole blocks)


@dataclass
class Plan:
    lanes: int
    precision: str = "fp32"
    # precision bf16: what computes it, "amx" (tiles), "avx512bf16" (VDPBF16PS), "bfmmla" (aarch64: BFMMLA and BFDOT)
    bf16_unit: str = "amx"
    half_width_cost: float = 2.0  # a block of 8 channels' cost per MAC against a full vector's (blocks.choose)
    decisions: list[Decision] = field(default_factory=list)
    bf16_dense: int = 0  # dense layers computed in bf16 (on AMX or AVX512-BF16)
    int8_dense: int = 0  # dense layers computed in int8
    bf16_residuals: int = 0  # residual adds that read their shortcut as bf16 (the bf16 residual stream)
    int8_unit: str = "vnni"  # precision int8: what computes it, "vnni" (x86's VPDPBUSD), "usdot" (aarch64's i8mm)
    # or "sdot" (aarch64's dotprod)
    transforms: list[str] = field(default_factory=list)  # each layout change emitted between ops, and why

    def to_json(self) -> dict[str, Any]:
        return {"lanes": self.lanes, "half_width_cost": self.half_width_cost, "bf16_dense": self.bf16_dense,
                "int8_dense": self.int8_dense, "bf16_residuals": self.bf16_residuals,
                "transforms": self.transforms,
                "convolutions": [{"conv": d.shape, "in": f"NCHW{d.ic_bn}c", "out": f"NCHW{d.oc_bn}c"
                                  + (f" ({d.channels[0]} padded to {d.channels[1]})"
                                     if d.channels[0] != d.channels[1] else ""),
                                  "relayout": d.relayout, "folded": d.folded} for d in self.decisions]}

    def block(self, channels: int) -> int:
        """The block of a tensor with this many channels: the vector width where they divide by it, else 8."""
        for bn in (self.lanes, 8):
            if channels % bn == 0:
                return bn
        return 0


# an int8 convolution's step (Plan.int8_unit, or USMMLA in its place: _int8_step) → its name in --explain-layout
_INT8_UNITS = {"vnni": "VNNI", "usdot": "USDOT", "sdot": "SDOT", "usmmla": "USMMLA"}
# the Plan.bf16_units of a step in archc's kernel → the step's name in --explain-layout
_BF16_STEPS = {"avx512bf16": "AVX512-BF16", "bfdot": "BFDOT", "bfmmla": "BFMMLA"}


def _scheduled(kernel: Any) -> Any:
    """An amx.py kernel as the module takes it: already scheduled (archc's pass and MetaSchedule leave it alone),
    without its own global symbol (the BlockBuilder names each one uniquely)."""
    return kernel.with_attr("tirx.is_scheduled", True).without_attr("global_symbol")


def blocked_conv_layout(mod: Any, lanes: int, precision: str = "fp32", bf16_unit: str = "amx",
                        half_width_cost: float = 2.0, int8_unit: str = "vnni",
                        keep_fp32: Sequence[np.ndarray] = ()) -> tuple[Any, Plan]:
    """The module with its `main` re-laid out (above); the plan's decisions for explaining it. With `precision`
    "bf16", every convolution `amx.fits` runs on AMX in bf16 (`_amx_conv`) where `bf16_unit` is "amx", and every
    one `dpbf16.fits` in archc's blocked kernel with VDPBF16PS steps where it is "avx512bf16" (BFDOT steps where it
    is "bfdot", on aarch64); with "int8", every QDQ convolution and dense layer whose weights are int8 ones
    dequantized (qdq.integers) and that `vnni.fits` in archc's int8 kernel, with `int8_unit`'s steps (VPDPBUSD for
    "vnni", USDOT for "usdot", SDOT for "sdot"), its uint8 input quantized once where it is computed (`_quantized`).
    `half_width_cost`: a block of 8 channels' cost per MAC against a full vector's (pipeline.half_width_cost).
    `keep_fp32`: the weights of the layers a bf16 build keeps in fp32 (--keep-fp32), as the ONNX file holds them
    (found by their values: the importer keeps no node names)."""
    plan = Plan(lanes, precision=precision, bf16_unit=bf16_unit, half_width_cost=half_width_cost,
                int8_unit=int8_unit)
    func = mod["main"]
    body = func.body
    if not isinstance(body, relax.SeqExpr) or not all(isinstance(b, relax.DataflowBlock) for b in body.blocks):
        return mod, plan  # not the importer's plain dataflow: leave it to TVM's own path
    out = _Rewriter(func, plan, keep_fp32).run()  # main and archc's computes
    for gv, f in mod.functions.items():
        if gv.name_hint != "main":
            out[gv] = f
    return out.with_attrs(mod.attrs) if mod.attrs else out, plan


class _Rewriter:
    def __init__(self, func: Any, plan: Plan, keep_fp32: Sequence[np.ndarray] = ()) -> None:
        self.relax = relax
        self.kept = {_fingerprint(w) for w in keep_fp32}  # layers a bf16 build keeps in fp32, by their weights
        self.kept_sizes = {np.asarray(w).size for w in keep_fp32}
        self.func = func
        self.plan = plan
        self.bb = relax.BlockBuilder()
        self.plain: dict[Any, Any] = {}  # original var → its NCHW (or non-4-D) value in the new function
        self.blocked: dict[Any, tuple[Any, int]] = {}  # original var → (NCHW[bn]c value, bn)
        self.unblocked: dict[Any, Any] = {}  # original var → its NCHW value made from the blocked one
        self.skip: set[Any] = set()  # bindings folded into a convolution
        self.why = ""  # the op being rewritten (for the plan's list of layout changes)
        self.bindings = [b for block in func.body.blocks for b in block.bindings]
        self.value_of = {b.var: b.value for b in self.bindings}
        self.uses: Counter[Any] = Counter()
        self.readers: dict[Any, list[Any]] = {}  # var → the bindings that read it (once per reading), in order
        for b in self.bindings:
            for v in _vars_in(b.value, relax):
                self.uses[v] += 1
                self.readers.setdefault(v, []).append(b)
        for v in _vars_in(func.body.body, relax):
            self.uses[v] += 2  # a function output is never folded away
        # var → block, where a convolution writes it
        self.weights: dict[Any, tuple[np.ndarray, np.ndarray] | None] = {}  # a weight → its int8 integers
        self.quantized: dict[tuple[Any, int, float, int], tuple[Any, bool]] = {}  # (x, block, scale, zero) → uint8
        self.rounded: dict[tuple[Any, int], Any] = {}  # (x, block) → x's bf16 bits, for its bf16 convolutions
        self.bits_readers: Counter[Any] = Counter()  # x → its readers that take those bits
        self.choice = choose(self.bindings, plan.lanes, shape_of, plan.half_width_cost, frozenset(
            b.var for b in self.bindings if self._int8_candidate(b.value) or self._bf16_candidate(b.value)))

    # -- values in either layout -------------------------------------------------------------------------
    def nchw(self, v: Any) -> Any:
        if v in self.plain:
            return self.plain[v]
        if v not in self.unblocked:
            value, bn = self.blocked[v]
            plain = self.bb.emit(self.relax.op.layout_transform(
                value, index_map=lambda n, c, h, w, b: (n, c * bn + b, h, w)))
            channels = shape_of(v)[1]
            if channels % bn:  # the zero-padded channels dropped
                plain = self.bb.emit(self.relax.op.strided_slice(plain, [1], [0], [channels]))
            if len(shape_of(v)) == 3:  # a 1-D tensor, carried as N×C/bn×1×L×bn
                plain = self.bb.emit(self.relax.op.reshape(plain, shape_of(v)))
            self.unblocked[v] = plain
            self.plan.transforms.append(f"NCHW{bn}c → NCHW ({'×'.join(map(str, shape_of(v)))}) for {self.why}")
        return self.unblocked[v]

    def block(self, v: Any, bn: int) -> tuple[Any, bool]:
        """v as NCHW[bn]c; whether a relayout was emitted."""
        if v in self.blocked and self.blocked[v][1] == bn:
            return self.blocked[v][0], False
        x = self.nchw(v)
        if len(shape_of(v)) == 3:  # NCL as NC1L: the 2-D kernels and layouts serve 1-D tensors
            n, c, length = shape_of(v)
            x = self.bb.emit(self.relax.op.reshape(x, (n, c, 1, length)))
        if bn == 1:  # NCHW is NCHW[1]c: the same bytes, one more axis
            zero = tirx.const(0, "int64")
            return self.bb.emit(self.relax.op.layout_transform(
                x, index_map=lambda n, c, h, w: (n, c, h, w, zero))), False
        extra = padded(shape_of(v)[1], bn) - shape_of(v)[1]
        if extra:  # zero channels up to whole blocks
            x = self.bb.emit(self.relax.op.nn.pad(x, [0, 0, 0, extra, 0, 0, 0, 0]))
        y = self.bb.emit(self.relax.op.layout_transform(
            x, index_map=lambda n, c, h, w: (n, c // bn, h, w, c % bn)))
        self.plan.transforms.append(f"NCHW → NCHW{bn}c ({'×'.join(map(str, shape_of(v)))}) for {self.why}")
        self.blocked[v] = (y, bn)
        return y, True

    def arg(self, e: Any) -> Any:
        """An argument of an op that runs in NCHW: every variable in it as NCHW."""
        relax = self.relax
        if isinstance(e, relax.Var):
            return self.nchw(e)
        if isinstance(e, relax.Tuple):
            return relax.Tuple([self.arg(f) for f in e.fields])
        return e

    # -- the pass -------------------------------------------------------------------------------------------
    def run(self) -> Any:
        relax = self.relax
        params = [relax.Var(p.name, p.ty) for p in self.func.params]
        for old, new in zip(self.func.params, params, strict=True):
            self.plain[old] = new
        attrs = {k: self.func.attrs[k] for k in self.func.attrs.keys()} if self.func.attrs else {}
        with self.bb.function("main", params, attrs=attrs):
            with self.bb.dataflow():
                for binding in self.bindings:
                    if binding.var not in self.skip:
                        self.visit(binding)
                self.why = "the model's output"
                result = self.bb.emit_output(self.arg(self.func.body.body))
            self.bb.emit_func_output(result)
        return self.bb.get()

    def visit(self, binding: Any) -> None:
        relax = self.relax
        v, e = binding.var, binding.value
        self.why = e.op.name.replace("relax.", "") if isinstance(e, relax.Call) and hasattr(e.op, "name") else \
            "the model's output"
        rule = rule_of(e)
        if rule is not None and self.RULES[rule.kind](self, v, e):
            return
        if isinstance(e, relax.Call):
            self.plain[v] = self.bb.emit(relax.Call(e.op, [self.arg(a) for a in e.args], e.attrs, e.ty_args))
            return
        if isinstance(e, relax.Var):
            if e in self.blocked:
                self.blocked[v] = self.blocked[e]
            else:
                self.plain[v] = self.nchw(e)
            return
        self.plain[v] = self.bb.emit(self.arg(e) if isinstance(e, relax.Tuple) else _subst(e, self))

    # -- rules ------------------------------------------------------------------------------------------------
    def conv(self, v: Any, e: Any) -> bool:
        relax = self.relax
        data, weight = e.args
        a = e.attrs
        one_d = OPS[e.op.name].one_d
        layouts = ("NCW", "OIW", "NCW") if one_d else ("NCHW", "OIHW", "NCHW")
        if not is_const(weight) or (str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) != layouts \
                or len(shape_of(data)) != (3 if one_d else 4):
            return False
        w = weight.value.numpy()
        if one_d:  # a 1-D convolution is a 2-D one of height 1
            w = w[:, :, None, :]
        oc, ic, kh, kw = w.shape
        channels = shape_of(data)[1]
        groups = int(a.groups)
        depthwise = is_depthwise(groups, channels, oc, ic)
        if depthwise and data in self.blocked:
            oc_bn = self.blocked[data][1]  # depthwise: input and output share the block
        else:
            oc_bn = self.choice.get(v) or self.plan.block(oc)
        if not oc_bn:
            return False
        if depthwise:
            ic_bn = oc_bn
        elif data in self.blocked:
            ic_bn = self.blocked[data][1]
        else:
            ic_bn = self.plan.block(channels) or 1
            if ic_bn == 1 and channels < self.plan.lanes and groups == 1 and self.plan.precision == "bf16" \
                    and self.plan.bf16_unit in _BF16_STEPS:
                ic_bn = channels + channels % 2  # an RGB stem's channels and a zero one: whole bf16 pairs
        merged = 1 if depthwise or groups == 1 else _merged_groups(groups, ic, oc // groups, ic_bn, oc_bn)
        if not merged or (groups > 1 and not depthwise and (channels % ic_bn or oc % oc_bn)):
            return False  # groups no block fits (or padded channels, which would land inside them): TVM's kernel
        scale, shift, last, folded = self._affine_chain(v, oc)
        strides = [int(s) for s in a.strides]
        padding = [int(p) for p in a.padding]
        dilation = [int(d) for d in a.dilation]
        # a 1-D convolution's window as the 2-D kernels take it (height 1)
        window = ([1, *strides], [0, padding[0], 0, padding[1]], [1, *dilation]) if one_d \
            else (strides, padding, dilation)
        text = (f"{channels}×{'×'.join(map(str, shape_of(data)[2:]))} → {oc}, "
                f"{kw if one_d else f'{kh}×{kw}'}/{strides[-1]}")  # for --explain-layout
        int8 = self._int8_source(data, weight, groups, depthwise, ic_bn, oc_bn)
        if int8 is not None:
            return self._int8_conv(last, int8, scale, shift, window, text, folded)
        w = w * scale[:, None, None, None] if scale is not None else w
        kept = self._kept(weight)  # --keep-fp32: this layer computed in fp32 in a bf16 build
        if kept:
            text += " fp32 (kept)"
        bf16 = self.plan.precision == "bf16" and not kept
        if bf16 and self.plan.bf16_unit == "amx" and amx.fits(channels, oc, groups, strides, padding, dilation,
                                                              one_d):
            x, relayout = self.block(data, ic_bn)
            self._amx_conv(last, x, w, shift, strides, padding)
            self.plan.decisions.append(Decision(last.name, f"{text} bf16 on AMX", ic_bn, 16, relayout, folded,
                                                (oc, oc)))
            return True
        out_channels = padded(oc, oc_bn)
        uint8 = quantized_input(data, self.value_of) if depthwise and self.plan.precision == "int8" else None
        if uint8 is not None:  # its uint8 input read as it is: Σ (q − z)·(s·w), padded with z
            data, x_scale, zero = uint8
            w = w * x_scale
        if depthwise:
            w = _zero_padded(w, (out_channels, 1))
            packed = w.reshape(-1, oc_bn, kh, kw).transpose(0, 2, 3, 1)[:, None, :, :, None, :]
        else:
            w = _zero_padded(_block_diagonal(w, groups, merged), (out_channels, padded(channels, ic_bn)
                                                                  if groups == 1 else ic * merged))
            packed = _packed(w, oc_bn, ic_bn)
        strides, padding, dilation = window
        out_dtype = _out_dtype(a, e.args[0])
        on_dpbf16 = bf16 and self.plan.bf16_unit in _BF16_STEPS \
            and dpbf16.fits(ic_bn, oc_bn, groups, depthwise, self.plan.lanes) \
            and str(out_dtype) == "float32"
        # Winograd's tiles, their products in bf16 where the convolution would be (`on_dpbf16`), else in float32
        m = 0 if one_d or depthwise or str(out_dtype) != "float32" \
            else winograd.tile_size(channels, oc, (kh, kw), strides, dilation, ic * merged, shape_of(v)[2:])
        # bf16 products take F(2×2): F(4×4)'s transforms (points ±2, ±1/2) cost bf16's 8-bit mantissa about 2.5e-2
        # of the range on one layer of random numbers, F(2×2)'s 4.7e-3, direct 2.8e-3 (UNet's bf16 build, 23 such
        # layers and no batch norm, differed by 3.3e-2 against 1.1e-2); ResNet-18 ~6% slower, ResNet-50 1-2%
        m = 2 if m and on_dpbf16 else m
        # NCHW (an RGB stem's input) is relaid out by the bf16 input kernel itself (pad_bf16's `bn`): one pass where
        # a channel pad, a relayout and the rounding took three
        nchw_input = on_dpbf16 and not m and data not in self.blocked and len(shape_of(data)) == 4
        if nchw_input:
            x, relayout = self.nchw(data), True
            self.plan.transforms.append(f"NCHW → NCHW{ic_bn}c ({'×'.join(map(str, shape_of(data)))}) in the bf16 "
                                        f"input kernel, for {self.why}")
        else:
            x, relayout = self._quantized(data, ic_bn, x_scale, zero) if uint8 is not None \
                else self.block(data, ic_bn)
        if m:
            source = self._rounded(data, x, ic_bn) if on_dpbf16 and self._bf16_only(data) else x
            y = self._winograd(source, w, m, padding, ic_bn, oc_bn, on_dpbf16)
            text += f" Winograd F({m}×{m}, 3×3)"
        elif on_dpbf16:  # its input padded and rounded to bf16 by a kernel of its own, its weights packed in bf16
            n, _, *size = shape_of(data)
            blocked = (n, padded(channels, ic_bn) // ic_bn, *size, ic_bn) if nchw_input else shape_of(x)
            unit = self._bf16_step(ic_bn, strides[1])
            paired = unit in conv2d.PAIRED
            if nchw_input or conv2d.needs_padding(shape_of(x)[3], (kh, kw), strides, padding, dilation, paired):
                source = self._rounded(data, x, ic_bn) if not nchw_input and self._bf16_only(data) else x
                xp = self.bb.emit_te(conv2d.pad_bf16, source, (kh, kw), strides, padding, dilation,
                                     ic_bn if nchw_input else 0, paired, primfunc_name_hint="to_bf16")
            else:
                xp = self._rounded(data, x, ic_bn)
            weights = bfmmla.pack_weights(packed) if paired else dpbf16.pack_weights(packed)
            y = self.bb.emit_te(conv2d.compute_bf16, xp, relax.const(weights), strides, padding,
                                dilation, blocked, unit, primfunc_name_hint="conv2d_bf16_nchwc")
        else:
            make, hint = ((conv2d.compute_depthwise, "dwconv2d_nchwc") if depthwise
                          else (conv2d.compute, "conv2d_nchwc"))
            y = self.bb.emit_te(make, x, relax.const(np.ascontiguousarray(packed).astype(w.dtype)),
                                strides, padding, dilation, out_dtype, *((zero,) if uint8 is not None else ()),
                                primfunc_name_hint=hint)
        if shift is not None:
            y = self.bb.emit(relax.op.add(y, relax.const(_blocked_channels(shift, oc_bn).astype(w.dtype))))
        self.blocked[last] = (y, oc_bn)
        self.plan.decisions.append(Decision(
            last.name, text + (" depthwise" if depthwise else f" groups {groups}" if groups > 1 else "")
            + (f" (as {groups // merged} of {merged} merged)" if merged > 1 else "")
            + (f" bf16 on {_BF16_STEPS[self._bf16_step(0 if m else ic_bn, strides[1])]}" if on_dpbf16 else "")
            + (" on its uint8 input" if uint8 is not None else ""), ic_bn, oc_bn, relayout, folded, (oc, out_channels)))
        return True

    def _bf16_step(self, ic_bn: int, stride: int = 1) -> str:
        """The step a bf16 convolution of input blocks of `ic_bn` channels, `stride` along its rows, takes in
        archc's kernel: the plan's unit, but on aarch64 BFMMLA only for a direct convolution whose blocks split into
        its fours and whose pixel pairs are adjacent (steps.matrix_fits; `ic_bn` 0: a Winograd product's or a dense
        layer's, whose rows of tiles or images need not pair), BFDOT otherwise."""
        unit = self.plan.bf16_unit
        return "bfdot" if unit == "bfmmla" and not (ic_bn and steps.matrix_fits(ic_bn, stride, bfmmla.WIDTH)) else unit

    def _winograd(self, x: Any, w: np.ndarray, m: int, padding: list[int], ic_bn: int, oc_bn: int,
                  bf16: bool = False) -> Any:
        """The 3×3 convolution of NCHW[ic_bn]c `x` by OIHW `w` (its channels zero-padded to whole blocks) as
        Winograd's F(m×m, 3×3) (winograd.py): the input transform, the α² products as a grouped 1×1 convolution
        of archc's kernel, and the output transform, into which TVM fuses the epilogue."""
        relax = self.relax
        v = self.bb.emit_te(winograd.transform_input, x, padding, m, bf16,
                            primfunc_name_hint="winograd_input")
        packed = np.concatenate([_packed(u, oc_bn, ic_bn) for u in winograd.weights(w, m)])
        if bf16:
            products = self.bb.emit_te(conv2d.compute_bf16, v, relax.const(dpbf16.pack_weights(packed)), (1, 1),
                                       (0, 0, 0, 0), (1, 1), shape_of(v), self._bf16_step(0),
                                       primfunc_name_hint="winograd_products")
        else:
            products = self.bb.emit_te(conv2d.compute, v, relax.const(np.ascontiguousarray(packed).astype(w.dtype)),
                                       (1, 1), (0, 0, 0, 0), (1, 1), "float32", primfunc_name_hint="winograd_products")
        # marked as a convolution's output is, so that TVM fuses the epilogue into it; added once per shape
        func, args, out = gen_call_tir_inputs(winograd.transform_output, products, shape_of(x), padding, m)
        gv = self.bb.add_func(func.with_attr("op_pattern", winograd.OUT_EWISE_FUSABLE), "winograd_output")
        return self.bb.emit(relax.call_tir(gv, args, out))

    def _int8_source(self, data: Any, weight: Any, groups: int, depthwise: bool, ic_bn: int,
                     oc_bn: int) -> tuple[Any, float, int, np.ndarray, np.ndarray, int] | None:
        """For an int8 build, a QDQ convolution that archc's int8 kernel computes: (the float32 x its input
        quantizes, scale, zero point, the int8 weights, their scales, the input's block); None otherwise (it runs
        in float32, as the QDQ model says it may)."""
        source = quantized_input(data, self.value_of) if self.plan.precision == "int8" else None
        found = self._integers(weight) if source is not None else None
        if source is None or found is None:
            return None
        x, scale, zero = source
        if x in self.blocked:
            ic_bn = self.blocked[x][1]
        elif ic_bn % vnni.QUAD and shape_of(x)[1] < self.plan.lanes:
            ic_bn = padded(shape_of(x)[1], vnni.QUAD)  # an RGB stem's channels and a zero one: a whole quadruple
        if not vnni.fits(ic_bn, oc_bn, groups, depthwise, self.plan.lanes):
            return None
        return x, scale, zero, *found, ic_bn

    def _int8_candidate(self, e: Any) -> bool:
        """Whether `e` is a convolution of one group that the int8 kernel may take (the plan gives its output
        full-width blocks, which is all the kernel writes)."""
        return (self.plan.precision == "int8" and _dense_conv(e)
                and quantized_input(e.args[0], self.value_of) is not None and self._integers(e.args[1]) is not None)

    def _bf16_candidate(self, e: Any) -> bool:
        """Whether `e` is a dense convolution that the bf16 steps (VDPBF16PS, BFDOT) compute, given output blocks
        of their width: its output takes them, padded (MobileNet v2's 24 → 32 channels), as an int8 one's."""
        return (self.plan.precision == "bf16" and self.plan.bf16_unit in _BF16_STEPS and _dense_conv(e)
                and not self._kept(e.args[1]))

    def _kept(self, weight: Any) -> bool:
        """Whether `weight` (a constant) is a layer's that a bf16 build keeps in fp32 (--keep-fp32)."""
        if not self.kept or not is_const(weight) or int(np.prod(weight.value.shape)) not in self.kept_sizes:
            return False
        return _fingerprint(weight.value.numpy()) in self.kept

    def _integers(self, weight: Any) -> tuple[np.ndarray, np.ndarray] | None:
        if weight not in self.weights:
            self.weights[weight] = integers(weight.value.numpy())
        return self.weights[weight]

    def _int8_conv(self, last: Any, source: tuple[Any, float, int, np.ndarray, np.ndarray, int], scale: Any,
                   shift: Any, window: tuple[list[int], list[int], list[int]], text: str, folded: int) -> bool:
        """The convolution in int8 (vnni.py): its float32 input quantized to uint8 and padded with the zero point by
        a kernel of its own, the int8 weights packed here, the int32 sums dequantized in the epilogue: (sum − zero
        point · Σ weights) · input scale · weight scale (· the folded batch norm's scale), then the shift.
        `window`: its strides, padding and dilation in 2-D; `text`: its line of --explain-layout."""
        relax, bn = self.relax, self.plan.lanes
        x, x_scale, zero, q, w_scale, ic_bn = source
        if q.ndim == 3:  # a 1-D convolution's weights, as a 2-D one's of height 1
            q = q[:, :, None, :]
        oc, channels, kh, kw = q.shape
        strides, padding, dilation = window
        xq, relayout = self._quantized(x, ic_bn, x_scale, zero)
        q = _zero_padded(q, (padded(oc, bn), padded(channels, ic_bn)))
        packed = _packed(q, bn, ic_bn)
        unit = self._int8_step(ic_bn, strides[1])
        paired = unit in conv2d.PAIRED
        xp = self.bb.emit_te(conv2d.pad_int8, xq, (kh, kw), strides, padding, dilation, zero, paired,
                             primfunc_name_hint="pad_int8") \
            if conv2d.needs_padding(shape_of(xq)[3], (kh, kw), strides, padding, dilation, paired) else xq
        weights = usmmla.pack_weights(packed) if paired else vnni.pack_weights(packed)
        sums = self.bb.emit_te(conv2d.compute_int8, xp, relax.const(weights), strides, padding,
                               dilation, shape_of(xq), unit, primfunc_name_hint="conv2d_int8_nchwc")
        factor = x_scale * w_scale.astype(np.float64) * (scale if scale is not None else 1.0)
        y = self._dequantized(sums, q[:oc], zero, factor)
        if shift is not None:
            y = self.bb.emit(relax.op.add(y, relax.const(_blocked_channels(shift, bn).astype(np.float32))))
        self.blocked[last] = (y, bn)
        self.plan.decisions.append(Decision(last.name, f"{text} int8 on {_INT8_UNITS[unit]}", ic_bn, bn, relayout,
                                            folded, (oc, padded(oc, bn))))
        return True

    def _int8_step(self, ic_bn: int, stride: int) -> str:
        """The step an int8 convolution of input blocks of `ic_bn` channels, `stride` along its rows, takes: the
        plan's unit, but where that is USDOT (i8mm), USMMLA for one that suits a matrix step (steps.matrix_fits)."""
        unit = self.plan.int8_unit
        return "usmmla" if unit == "usdot" and steps.matrix_fits(ic_bn, stride, usmmla.WIDTH) else unit

    def _dequantized(self, sums: Any, q: np.ndarray, zero: int, factor: np.ndarray) -> Any:
        """An int8 kernel's int32 sums (NCHW16c) in float32: (sum − zero point · Σ the channel's weights) · factor
        (the input's scale · the channel's weight scale, · a folded batch norm's scale)."""
        relax, bn = self.relax, self.plan.lanes
        zero = sdot.zero_point(zero, self.plan.int8_unit)  # as the step sees it: 128 lower on SDOT
        offsets = _blocked_channels(vnni.zero_point_sums(q, zero)[:len(factor)], bn).astype(np.int32)
        return self.bb.emit(relax.op.multiply(
            relax.op.astype(relax.op.subtract(sums, relax.const(offsets)), "float32"),
            relax.const(_blocked_channels(factor, bn).astype(np.float32))))

    def _quantized(self, x: Any, bn: int, scale: float, zero: int) -> tuple[Any, bool]:
        """float32 x quantized to uint8 NCHW[bn]c for the int8 kernels (once for all that read it so: a ResNet
        block's input feeds its first and its shortcut convolutions); whether a relayout was emitted. Where x is
        NCHW it is relaid out as it is quantized (conv2d.quantize)."""
        key = (x, bn, scale, zero)
        if key not in self.quantized:
            if x in self.blocked or len(shape_of(x)) not in (3, 4):
                xb, relayout = self.block(x, bn)
                self.quantized[key] = (self.bb.emit_te(conv2d.quantize, xb, scale, zero,
                                                       primfunc_name_hint="quantize"), relayout)
            else:
                self.quantized[key] = (self.bb.emit_te(conv2d.quantize, self.nchw(x), scale, zero, bn,
                                                       primfunc_name_hint="quantize_nchw"), True)
                self.plan.transforms.append(f"NCHW → NCHW{bn}c uint8 ({'×'.join(map(str, shape_of(x)))}) "
                                            f"for {self.why}")
        return self.quantized[key]

    def _rounded(self, v: Any, x: Any, bn: int) -> Any:
        """v (as x, NCHW[bn]c float32) rounded to bf16, once for every bf16 convolution that reads it so (a ResNet
        block's input feeds its first and its shortcut 1×1 convolutions); each call counted as a reader."""
        self.bits_readers[v] += 1
        if (v, bn) not in self.rounded:
            self.rounded[v, bn] = self.bb.emit_te(conv2d.to_bf16, x, primfunc_name_hint="to_bf16")
        return self.rounded[v, bn]

    def _bf16_only(self, v: Any) -> bool:
        """Whether every reader of `v` is a convolution in bf16 (`_bf16_candidate`) or an add of its shape: then
        its padded and Winograd readers take its bits too (`_rounded`), so that, with `_residual`, v is written in
        bf16 alone. Where a reader turns out to need float32 after all, v is written both ways: correct, a pass
        more."""
        readers = self.readers.get(v, [])
        return bool(readers) and self.uses[v] == len(readers) and all(
            (self._bf16_candidate(b.value) and b.value.args[0].same_as(v))
            or (rule_of(b.value) is not None and b.value.op.name == "relax.add" and shape_of(b.var) == shape_of(v))
            for b in readers)

    def _residual(self, v: Any, e: Any, bn: int) -> Any:
        """The bf16 residual stream: where `v`, an operand of the add `e`, is otherwise read only by bf16
        convolutions that take its bits (`_rounded`, `_bf16_only`), the add reads those bits too, so that v is
        never written in float32: the kernel that computes it writes bf16 alone (half the bytes, and no rounding
        pass of its own), as OpenVINO's and oneDNN's bf16 graphs keep every activation. The bits as float32, or
        None."""
        if e.op.name != "relax.add" or (v, bn) not in self.rounded or self.uses[v] != self.bits_readers[v] + 1:
            return None
        self.plan.bf16_residuals += 1
        return self.bb.emit_te(conv2d.from_bf16, self.rounded[v, bn], primfunc_name_hint="from_bf16")

    def _amx_conv(self, last: Any, x: Any, w: np.ndarray, shift: Any, strides: list[int],
                  padding: list[int]) -> None:
        """The convolution on AMX (amx.py): its input packed to bf16 blocks of 32 by a kernel of its own (which the
        activation before it fuses into), the weights packed in bf16 here, the folded shift as the kernel's bias;
        its output NCHW16c float32 as archc's other kernels give it."""
        relax = self.relax
        import ml_dtypes
        _, _, h, wd, _ = shape_of(x)  # NCHW[bn]c
        oc, ic, kh, kw = w.shape
        oh, ow = (h + 2 * padding[0] - kh) // strides[0] + 1, (wd + 2 * padding[1] - kw) // strides[1] + 1
        hp, wp = h + 2 * padding[0], wd + 2 * padding[1]
        step, stride = 1, strides[0]
        if kh == kw == 1 and not any(padding) and stride > 1:  # subsampled as it is packed, then at stride 1
            step, stride, hp, wp = stride, 1, oh, ow
        length = amx.conv_input_length(oh, wp, kh, kw, stride)
        packed_x = self.bb.emit_te(amx.pack_input_te, x, (padding[0], padding[1]), wp, length, step,
                                   primfunc_name_hint="amx_pack")
        gv = self.bb.add_func(_scheduled(amx.conv2d(ic, oc, hp, wp, kh, kw, stride, oh, ow, relu=False)),
                              "amx_conv2d")
        weights = relax.const(amx.pack_conv_weights(w.astype(ml_dtypes.bfloat16)))
        bias = relax.const((shift if shift is not None else np.zeros(oc)).astype(np.float32).reshape(oc // 16, 16))
        y = self.bb.emit(relax.call_tir(gv, relax.Tuple([packed_x, weights, bias]),
                                        relax.TensorType((oc // 16, oh, ow, 16), "float32")))
        self.blocked[last] = (self.bb.emit(relax.op.reshape(y, (1, oc // 16, oh, ow, 16))), 16)

    def dense(self, v: Any, e: Any) -> bool:
        """x @ W with W a constant K × N: W packed into the order the dense schedule's tasks read it (dense.py)."""
        x, w = e.args
        if not is_const(w) or len(shape_of(x)) != 2 or len(w.value.shape) != 2 or not isinstance(x, self.relax.Var):
            return False
        k, n = (int(d) for d in w.value.shape)
        if self._int8_dense(v, x, w.value.numpy()):
            return True
        bf16 = self.plan.precision == "bf16" and str(_out_dtype(e.attrs, x)) == "float32" and not self._kept(w)
        if bf16 and self.plan.bf16_unit == "amx" and not k % amx.BLOCK and not n % amx.BLOCK \
                and shape_of(x)[0] <= amx.BLOCK:
            self._amx_dense(v, x, w.value.numpy())
            return True
        if bf16 and self.plan.bf16_unit in _BF16_STEPS and not k % self.plan.lanes:
            self._dpbf16_dense(v, x, w.value.numpy())
            return True
        chunk = dense.tile(n, self.plan.lanes)
        if not chunk:
            return False  # not a row dense.tile takes: the generic schedule's
        packed = dense.pack(w.value.numpy(), chunk)
        self.plain[v] = self.bb.emit_te(dense.compute, self.nchw(x), self.relax.const(packed), _out_dtype(e.attrs, x),
                                        primfunc_name_hint="matmul")
        return True

    def _amx_dense(self, v: Any, x: Any, w: np.ndarray) -> None:
        """x @ W on AMX (amx.gemm) as (Wᵀ · xᵀ)ᵀ: Wᵀ (N × K, packed in bf16 here) is the product's A, read once
        row by row, and x's M ≤ 32 rows (converted to bf16 by a kernel of their own) are B's columns, zero up to
        32. At batch 1 the tiles compute 32 columns to keep one, but such a layer is bound by reading W, which
        bf16 halves; W as B instead would be read again for every block of its columns."""
        import ml_dtypes
        relax = self.relax
        m, k = shape_of(x)
        n = w.shape[1]
        b = self.bb.emit_te(amx.pack_columns_te, self.nchw(x), primfunc_name_hint="amx_pack_columns")
        gv = self.bb.add_func(_scheduled(amx.gemm(n, amx.BLOCK, k)), "amx_gemm")
        weights = relax.const(np.ascontiguousarray(w.T).astype(ml_dtypes.bfloat16))
        product = self.bb.emit(relax.call_tir(gv, relax.Tuple([weights, b]),
                                              relax.TensorType((n, amx.BLOCK), "float32")))  # yᵀ, padded
        kept = self.bb.emit(relax.op.strided_slice(product, [1], [0], [m]))
        self.plain[v] = self.bb.emit(relax.op.permute_dims(kept, [1, 0]))
        self.plan.bf16_dense += 1

    def _dpbf16_dense(self, v: Any, x: Any, w: np.ndarray) -> None:
        """x @ W in bf16 with AVX512-BF16 steps, as the 1×1 convolution of M images of 1×1 pixel and K channels (x's
        M × K rows are already NCHW16c of that: a reshape), W (K × N) its weights: the convolution's kernel then
        streams each task's bf16 weights once, the step's two channels at a time. N is zero-padded to whole blocks
        and the extra columns cut off (`_int8_dense`'s way): MobileNet v2's 1,280 → 1,000 classifier streamed
        5.1 MB of float32 weights per image in float32, 130 µs of its bf16 run."""
        relax, bn = self.relax, self.plan.lanes
        m, k = shape_of(x)
        n = w.shape[1]
        images = self.bb.emit(relax.op.reshape(self.nchw(x), (m, k // bn, 1, 1, bn)))
        bits = self.bb.emit_te(conv2d.pad_bf16, images, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1),
                               primfunc_name_hint="to_bf16")
        packed = _packed(_zero_padded(w.T[:, :, None, None], (padded(n, bn), k)), bn, bn)
        y = self.bb.emit_te(conv2d.compute_bf16, bits, relax.const(dpbf16.pack_weights(packed)), (1, 1),
                            (0, 0, 0, 0), (1, 1), shape_of(images), self._bf16_step(0),
                            primfunc_name_hint="conv2d_bf16_nchwc")
        y = self.bb.emit(relax.op.reshape(y, (m, padded(n, bn))))
        self.plain[v] = self.bb.emit(relax.op.strided_slice(y, [1], [0], [n])) if n % bn else y
        self.plan.bf16_dense += 1

    def _int8_dense(self, v: Any, x: Any, w: np.ndarray) -> bool:
        """For an int8 build, a QDQ dense layer x @ W (W int8 integers dequantized, per output column) as the int8
        1×1 convolution of M images of 1×1 pixel and K channels (`_dpbf16_dense`'s way): x quantized into uint8
        blocks of 16 channels, W's columns packed as the convolution's output channels, both zero-padded to whole
        blocks; the epilogue as `_int8_conv`'s. MobileNet v2's classifier (1,280 → 1,000) read 5.1 MB of float32
        weights per image, 127 µs of its 2.6 ms; in int8 a quarter."""
        relax, bn = self.relax, self.plan.lanes
        source = quantized_input(x, self.value_of) if self.plan.precision == "int8" else None
        found = integers(w.T) if source is not None else None
        if source is None or found is None:
            return False
        xf, x_scale, zero = source
        q, w_scale = found  # N × K
        (m, k), n = shape_of(xf), w.shape[1]
        images = self.bb.emit(relax.op.reshape(self.nchw(xf), (m, k, 1, 1)))
        xq = self.bb.emit_te(conv2d.quantize, images, x_scale, zero, bn, primfunc_name_hint="quantize_nchw")
        q = _zero_padded(q[:, :, None, None], (padded(n, bn), padded(k, bn)))
        packed = _packed(q, bn, bn)
        sums = self.bb.emit_te(conv2d.compute_int8, xq, relax.const(vnni.pack_weights(packed)), (1, 1),
                               (0, 0, 0, 0), (1, 1), shape_of(xq), self.plan.int8_unit,
                               primfunc_name_hint="conv2d_int8_nchwc")
        y = self.bb.emit(relax.op.reshape(self._dequantized(sums, q, zero, x_scale * w_scale.astype(np.float64)),
                                          (m, padded(n, bn))))
        self.plain[v] = self.bb.emit(relax.op.strided_slice(y, [1], [0], [n])) if n % bn else y
        self.plan.int8_dense += 1
        return True

    def _affine_chain(self, v: Any, channels: int) -> tuple[Any, Any, Any, int]:
        """Fold the per-channel constant ops that follow v (each v's only use): y = conv·scale + shift."""
        scale = np.ones(channels, dtype=np.float64)
        shift = np.zeros(channels, dtype=np.float64)
        last, folded = v, 0
        while self.uses[last] == 1 and last in self.readers:
            b = self.readers[last][-1]
            e = b.value
            if not (is_op_call(e) and e.op.name in _AFFINE):
                break
            x, c = e.args
            if e.op.name in ("relax.add", "relax.multiply") and is_const(x):
                x, c = c, x
            values = _per_channel(c, channels, len(shape_of(last)))
            if not x.same_as(last) or values is None:
                break
            op = e.op.name
            if op == "relax.add":
                shift = shift + values
            elif op == "relax.subtract":
                shift = shift - values
            elif op == "relax.multiply":
                scale, shift = scale * values, shift * values
            else:
                if not np.all(values != 0):
                    break
                scale, shift = scale / values, shift / values
            self.skip.add(b.var)
            last, folded = b.var, folded + 1
        return (scale if folded else None, shift if folded and np.any(shift) else None, last, folded)

    def unary(self, v: Any, e: Any) -> bool:
        (x, *rest) = e.args
        # elementwise: one tensor in, its shape out; other arguments scalars (clip's bounds: hardswish/hardsigmoid)
        if x not in self.blocked or shape_of(v) != shape_of(x) \
                or any(not is_const(a) or shape_of(a) for a in rest):
            return False
        value, bn = self.blocked[x]
        if not OPS[e.op.name].zero_safe and shape_of(v)[1] % bn and not self._pair(v, e):
            return False  # rsqrt of zero-padded channels: infinities; a lone quantize: the zero point
        self.blocked[v] = (self.bb.emit(self.relax.Call(e.op, [value, *rest], e.attrs, e.ty_args)), bn)
        return True

    def _pair(self, v: Any, e: Any) -> bool:
        """Whether `v` is half of a QDQ pair (quantize, then dequantize with the same scale and zero point, its one
        reader): the pair gives zero-padded channels back as zeros (0 → the zero point → 0). Else MobileNet v2's
        24-channel residual adds, padded to 32, ran in NCHW between channel slices."""
        if e.op.name == "relax.dequantize":
            return quantized_input(v, self.value_of) is not None
        reader = self.readers.get(v, [None])[-1]
        return e.op.name == "relax.quantize" and self.uses[v] == 1 and reader is not None \
            and quantized_input(reader.var, self.value_of) is not None

    def binary(self, v: Any, e: Any) -> bool:
        relax = self.relax
        x, y = e.args
        if x not in self.blocked and y not in self.blocked:
            return False
        full = [a for a in (x, y) if a in self.blocked and shape_of(a) == shape_of(v)]
        bn = self.blocked[full[0]][1] if full else (self.blocked[x] if x in self.blocked else self.blocked[y])[1]
        args = []
        for a in (x, y):
            if a in self.blocked and self.blocked[a][1] == 1 and _per_pixel(shape_of(a), shape_of(v)):
                args.append(self.blocked[a][0])  # N×1×H×W×1: broadcasts over the blocks as it is
                continue
            # a tensor of v's shape, or a gate (one value per channel: 1×C/bn×1×1×bn, broadcast over H×W) where
            # its zero-padded channels, if any, stay finite under the op
            gate = per_channel(shape_of(a), shape_of(v)) and (shape_of(v)[1] % bn == 0 or OPS[e.op.name].zero_safe)
            if isinstance(a, relax.Var) and (shape_of(a) == shape_of(v) or gate) \
                    and (a in self.blocked or a in self.plain):
                bits = self._residual(a, e, bn) if shape_of(a) == shape_of(v) else None
                args.append(self.block(a, bn)[0] if bits is None else bits)
            elif is_const(a):
                c = a.value.numpy()
                values = _per_channel(a, shape_of(v)[1], len(shape_of(v)))
                if c.size == 1:
                    args.append(a)
                elif values is not None:  # padded channels get ones: finite under every op here, divide too
                    args.append(relax.const(_blocked_channels(values, bn, fill=1.0).astype(c.dtype)))
                else:
                    return False
            else:
                return False
        self.blocked[v] = (self.bb.emit(relax.Call(e.op, args, e.attrs, e.ty_args)), bn)
        return True

    def clamp(self, v: Any, e: Any) -> bool:
        """The importer's Clip (ReLU6): call_tir of its `maximum`/`minimum` kernels with a scalar bound, which are
        elementwise: the same op on the blocked tensor."""
        relax = self.relax
        callee, args = e.args[0], e.args[1]
        name = getattr(callee, "name_hint", "").rstrip("0123456789")
        if name not in ("maximum", "minimum") or not isinstance(args, relax.Tuple) or len(args.fields) != 2:
            return False
        x, bound = args.fields
        if x not in self.blocked or not is_const(bound) or bound.value.numpy().size != 1 \
                or shape_of(v) != shape_of(x):
            return False
        value, bn = self.blocked[x]
        make = relax.op.maximum if name == "maximum" else relax.op.minimum
        self.blocked[v] = (self.bb.emit(make(value, bound)), bn)
        return True

    def pool(self, v: Any, e: Any) -> bool:
        x = e.args[0]
        a = e.attrs
        one_d = OPS[e.op.name].one_d
        if x not in self.blocked or str(a.layout) != ("NCW" if one_d else "NCHW") or str(a.out_layout) != str(a.layout):
            return False
        value, bn = self.blocked[x]
        size, strides, padding, dilation = ([int(i) for i in a.pool_size], [int(i) for i in a.strides],
                                            [int(i) for i in a.padding], [int(i) for i in a.dilation])
        if one_d:  # on the N×C/bn×1×L×bn tensor
            size, strides, dilation = [1, *size], [1, *strides], [1, *dilation]
            padding = [0, padding[0], 0, padding[1]]
        make = self.relax.op.nn.max_pool2d if "max_pool" in e.op.name else self.relax.op.nn.avg_pool2d
        y = make(value, size, strides, padding, dilation, bool(a.ceil_mode), bool(a.count_include_pad),
                 layout=f"NCHW{bn}c", out_layout=f"NCHW{bn}c")
        self.blocked[v] = (self.bb.emit(y), bn)
        return True

    def reduce(self, v: Any, e: Any) -> bool:
        x = e.args[0]
        a = e.attrs
        if x not in self.blocked or a.axis is None or not bool(a.keepdims):
            return False
        rank = len(shape_of(x))
        axes = sorted(int(i) % rank for i in a.axis)
        value, bn = self.blocked[x]
        make = {"relax.mean": self.relax.op.mean, "relax.max": self.relax.op.max, "relax.sum": self.relax.op.sum}
        if axes == [1] and rank == 4 and shape_of(x)[1] % bn == 0:
            # over the channels (a channel LayerNorm's mean per pixel): over the blocks and within them, kept as
            # N×1×H×W×1, which is NCHW[1]c of one channel (zero-padded channels would count: not with them)
            self.blocked[v] = (self.bb.emit(make[e.op.name](value, [1, 4], keepdims=True)), 1)
            return True
        if not set(axes) <= {2, 3}:
            return False
        if rank == 3:  # over L of N×C/bn×1×L×bn
            axes = [3] if axes == [2] else axes
        self.blocked[v] = (self.bb.emit(make[e.op.name](value, axes, keepdims=True)), bn)
        return True

    def concat(self, v: Any, e: Any) -> bool:
        relax = self.relax
        parts = e.args[0]
        rank = len(shape_of(v))
        if rank not in (3, 4) or int(e.attrs.axis) % rank != 1 or not isinstance(parts, relax.Tuple):
            return False
        blocked = [p for p in parts.fields if p in self.blocked]
        if not blocked:
            return False
        bn = self.blocked[blocked[0]][1]
        if any(not isinstance(p, relax.Var) or len(shape_of(p)) != len(shape_of(v)) or shape_of(p)[1] % bn
               for p in parts.fields):
            return False
        values = [self.block(p, bn)[0] for p in parts.fields]
        self.blocked[v] = (self.bb.emit(relax.op.concat(values, axis=1)), bn)
        return True

    # the rule of each kind of op in the table (optable.py); each says whether it rewrote the op (if not: NCHW)
    RULES: ClassVar[dict[Kind, Callable[[_Rewriter, Any, Any], bool]]] = {
        Kind.CONV: conv, Kind.UNARY: unary, Kind.BINARY: binary, Kind.POOL: pool, Kind.REDUCE: reduce,
        Kind.CONCAT: concat, Kind.DENSE: dense, Kind.CLAMP: clamp}


def _fingerprint(weights: np.ndarray) -> bytes:
    """A layer's weights, whatever their layout (the importer may transpose a Gemm's): their sorted values."""
    return np.sort(np.asarray(weights, dtype=np.float32).ravel()).tobytes()


def _dense_conv(e: Any) -> bool:
    """Whether `e` is a convolution of one group with constant weights (what the bf16 and int8 steps compute)."""
    return (is_op_call(e) and e.op.name in OPS and OPS[e.op.name].kind is Kind.CONV and len(e.args) == 2
            and is_const(e.args[1]) and int(e.attrs.groups) == 1)


def _per_pixel(a: tuple[int, ...], v: tuple[int, ...]) -> bool:
    """Whether a tensor of shape `a` holds one value per pixel of the N×C×H×W tensor of shape `v` (N×1×H×W)."""
    return len(a) == len(v) == 4 and a[1] == 1 < v[1] and (a[0], *a[2:]) == (v[0], *v[2:])


def _out_dtype(attrs: Any, data: Any) -> str:
    """An op's out_dtype attribute, or its input's dtype where the attribute is unset."""
    out = str(attrs.out_dtype) if attrs.out_dtype is not None else ""
    return str(data.ty.dtype) if out in ("", "void", "None") else out


def _merged_groups(groups: int, ic: int, oc: int, ic_bn: int, oc_bn: int) -> int:
    """How many neighbouring groups (of `ic` input and `oc` output channels each) make one group of whole blocks
    on both sides: 1 if each already is, else the fewest that do (ResNeXt-50's 4-channel groups on 16-channel
    blocks: 4, the merged weights block-diagonal, 4× the multiply-adds of a layer that is 0.3% of the model's);
    0 if none does within 4 (more would multiply the work of the layer by as much)."""
    for merged in range(1, min(groups, 4) + 1):
        if groups % merged == 0 and (ic * merged) % ic_bn == 0 and (oc * merged) % oc_bn == 0:
            return merged
    return 0


def _block_diagonal(w: np.ndarray, groups: int, merged: int) -> np.ndarray:
    """A grouped conv's OIHW weights (O × I/groups × KH × KW) as those of groups/merged groups: each merged group's
    weights hold its `merged` original groups on the diagonal, zeros elsewhere."""
    if merged == 1:
        return w
    oc, ic, kh, kw = w.shape
    per = oc // groups  # output channels per original group
    out = np.zeros((oc, ic * merged, kh, kw), dtype=w.dtype)
    for o in range(oc):
        slot = (o // per) % merged  # the group's place inside its merged group
        out[o, slot * ic:(slot + 1) * ic] = w[o]
    return out


def _subst(e: Any, rw: _Rewriter) -> Any:
    """A non-call binding (a tuple item, a constant) with its variables in NCHW."""
    relax = rw.relax
    if isinstance(e, relax.TupleGetItem):
        return relax.TupleGetItem(rw.arg(e.tuple_value), e.index)
    return e


def _vars_in(e: Any, relax: Any) -> list[Any]:
    if isinstance(e, relax.Var):
        return [e]
    if isinstance(e, relax.Tuple):
        return [v for f in e.fields for v in _vars_in(f, relax)]
    if isinstance(e, relax.Call):
        return [v for a in e.args for v in _vars_in(a, relax)]
    if isinstance(e, relax.TupleGetItem):
        return _vars_in(e.tuple_value, relax)
    return []


def _per_channel(c: Any, channels: int, rank: int) -> np.ndarray | None:
    """A constant's values per channel, broadcast against an N×C×… tensor of `rank` dimensions (C×1×1, 1×C×1×1,
    C×1 for a 1-D tensor, a scalar), or None if it is not such a constant."""
    if not is_const(c):
        return None
    a = c.value.numpy().astype(np.float64)
    if a.size == 1:
        return np.full(channels, a.reshape(()))
    if a.ndim > rank:
        return None
    shape = (1,) * (rank - a.ndim) + a.shape
    if shape[1] == channels and a.size == channels:
        return a.reshape(channels)
    return None


def _blocked_channels(values: np.ndarray, bn: int, fill: float = 0.0) -> np.ndarray:
    """Per-channel values (C,) as a (1, C'/bn, 1, 1, bn) constant that broadcasts against NCHW[bn]c, the channels
    past C (padding up to whole blocks) set to `fill`."""
    values = np.concatenate([values, np.full(padded(values.size, bn) - values.size, fill)])
    return np.ascontiguousarray(values.reshape(-1, bn)[None, :, None, None, :])


def _packed(w: np.ndarray, oc_bn: int, ic_bn: int) -> np.ndarray:
    """OIHW weights (whole blocks of both) in archc's blocked packing OIHW[ic_bn]i[oc_bn]o: (O/oc_bn, I/ic_bn, KH,
    KW, ic_bn, oc_bn), the one every blocked kernel reads (the bf16 and int8 steps repack it: dpbf16.pack_weights,
    vnni.pack_weights)."""
    o, _, kh, kw = w.shape
    return w.reshape(o // oc_bn, oc_bn, -1, ic_bn, kh, kw).transpose(0, 2, 4, 5, 3, 1)


def _zero_padded(w: np.ndarray, channels: tuple[int, int]) -> np.ndarray:
    """OIHW weights with zero output/input channels appended up to `channels` (O', I')."""
    extra = [(0, channels[0] - w.shape[0]), (0, channels[1] - w.shape[1]), (0, 0), (0, 0)]
    return np.pad(w, extra) if w.shape[:2] != channels else w
