"""The `archc` command: one short function per verb over the library. The only place that prints errors and
picks exit codes: 0 success, 1 a user error without a source location, 2 a bad spec or bad usage, 70 an internal
error (a bug in archc: set ARCHC_DEBUG=1 for the traceback)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from archc import __version__

TARGETS = ("onnx",)
LATER_TARGETS = ("x86", "x86-avx2", "x86-avx512", "native", "arm64", "rpi4", "graviton3", "cuda", "cuda-sm80",
                 "cuda-sm90", "llvm")


def _fail(message: str, code: int) -> None:
    click.echo(f"archc: error: {message}", err=True)
    sys.exit(code)


def _parse_set(values) -> dict:
    from archc.errors import UsageError
    from archc.spec.parser import parse_value
    out = {}
    for item in values:
        if "=" not in item:
            raise UsageError(f"--set expects name=value, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def _parse_inputs(values) -> dict:
    from archc import parse_shape
    out = {}
    for item in values:
        name, _, shape = item.rpartition("=")
        out[name or None] = parse_shape(shape)
    return out


def spec_options(f):
    """Options shared by every verb that reads a spec."""
    f = click.option("-I", "--include-path", multiple=True, type=click.Path(file_okay=False),
                     help="Extra folder to search for imported .arch files (also: ARCHC_PATH).")(f)
    f = click.option("--set", "set_", multiple=True, metavar="NAME=VALUE",
                     help="Set a network parameter, e.g. --set num_classes=10.")(f)
    f = click.option("--batch", type=click.IntRange(min=1), help="Batch size (default 1).")(f)
    f = click.option("--input", "inputs", multiple=True, metavar="[NAME=]SHAPE",
                     help="Full input shape with batch, e.g. --input 1x3x320x320 (first input) or image=2x3x224x224.")(f)
    return f


def _load(path, inputs, batch, set_, include_path):
    import archc
    from archc.diagnostics import render
    spec = archc.load_spec(path, input=_parse_inputs(inputs) or None, batch=batch, params=_parse_set(set_),
                           include_path=tuple(include_path))
    for w in spec.graph.warnings:
        click.echo(render(w), err=True)
    return spec


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="archc")
def main():
    """archc: compile CNN specs (.arch) to ONNX and analyze network architectures.

    \b
    Examples:
      archc compile specs/googlenet.arch --target onnx -o googlenet.onnx
      archc check specs/*.arch
      archc ops
    """


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--target", default="onnx", show_default=True, help="What to produce. This version emits ONNX.")
@click.option("-o", "--output", type=click.Path(), help="Output .onnx file (one spec) or folder (several specs). "
              "Default: <spec name>.onnx in the current folder.")
@click.option("--no-simplify", is_flag=True, help="Skip onnx-simplifier.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Bind trained weights from .npz, .safetensors or .onnx by layer path.")
@click.option("--seed", default=0, show_default=True, help="Seed of the deterministic weight initialisation.")
@spec_options
def compile(specs, target, output, no_simplify, weights, seed, inputs, batch, set_, include_path):
    """Compile SPEC(s) to ONNX: every shape inferred, checked, runnable in onnxruntime."""
    from archc.errors import UsageError
    from archc.util.progress import progress
    if target not in TARGETS:
        if target in LATER_TARGETS:
            raise UsageError(f"target '{target}' needs the TVM back end, which this version of archc does not have "
                             "yet; use --target onnx")
        raise UsageError(f"unknown target '{target}'; available: {', '.join(TARGETS)}")
    many = len(specs) > 1
    if many and output and Path(output).suffix == ".onnx":
        raise UsageError("several specs need -o to name a folder, not a .onnx file")
    with progress(len(specs), "compiling", enabled=many) as advance:
        for path in specs:
            spec = _load(path, inputs, batch, set_, include_path)
            if many or output is None or Path(output).is_dir():
                out = Path(output or ".") / f"{Path(path).stem}.onnx"
            else:
                out = Path(output)
            spec.save(out, simplify=not no_simplify, weights=weights, seed=seed)
            click.echo(f"{path}: wrote {out} ({spec.name}: {len(spec.graph.nodes)} layers, "
                       f"{spec.num_params:,} parameters, output "
                       + ", ".join("×".join(map(str, v.shape)) for v in spec.graph.outputs) + ")")
            advance()


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@spec_options
def check(specs, inputs, batch, set_, include_path):
    """Parse SPEC(s), infer every shape and report errors, without writing anything."""
    failed = 0
    from archc.diagnostics import SpecError
    for path in specs:
        try:
            spec = _load(path, inputs, batch, set_, include_path)
        except SpecError as err:
            _print_diagnostics(err)
            failed += 1
            continue
        click.echo(f"{path}: ok: {spec.name}, {len(spec.graph.nodes)} layers, {spec.num_params:,} parameters, "
                   "output " + ", ".join("×".join(map(str, v.shape)) for v in spec.graph.outputs))
    if failed:
        sys.exit(2)


@main.command("ops")
@click.option("--costs", is_flag=True, help="List the analyzer's cost rule for each ONNX op type instead.")
def list_ops(costs):
    """List the ops of the spec language with their arguments."""
    from archc import ops
    from archc.ops.registry import onnx_rules
    from archc.spec.expand import Expander
    if costs:
        for rule in onnx_rules():
            macs = "MACs counted" if rule.counts_macs else "no MACs"
            click.echo(f"{rule.op_type:22s} {macs:13s} FLOPs: {rule.flops_doc}")
        return
    for op in ops.all_ops():
        click.echo(f"{Expander.signature(op):60s} {op.doc}")
        if op.aliases:
            click.echo(f"{'':4s}aliases: {', '.join(op.aliases)}")


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--by", type=click.Choice(["block", "layer"]), default="block", show_default=True,
              help="One row per block instance (the papers' tables) or per layer.")
@click.option("--stages", is_flag=True, help="Fold repeated blocks (layer1_1, layer1_2, …) into one ×N row.")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "latex", "html"]), default="table",
              show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file instead of the terminal.")
@click.option("--sort", type=click.Choice(["model", "input", "params", "macs", "flops", "activations", "peak",
                                           "depth", "rf", "weights"]), help="Sort a comparison by this column.")
@click.option("--diff", is_flag=True, help="Show per-layer differences between two models.")
@click.option("--explain", "explain_layer", metavar="LAYER", help="Show the arithmetic behind one layer's figures.")
@spec_options
def analyze(models, by, stages, fmt, output, sort, diff, explain_layer, inputs, batch, set_, include_path):
    """Analyze specs or ONNX files: paper-style tables of sizes, parameters, MACs, memory and receptive fields.

    \b
    One model: a per-block (or per-layer) table and totals.
    Several models: a side-by-side comparison (--sort COLUMN).
    --diff A B: what changing A into B costs, layer by layer.
    """
    from archc.analyze import LoadOptions
    from archc.analyze import analyze as run_analysis
    from archc.errors import UsageError
    from archc.render import Format, render
    from archc.render import views
    options = LoadOptions(batch=batch, inputs=_parse_inputs(inputs), params=_parse_set(set_),
                          include_path=tuple(include_path))
    if diff and len(models) != 2:
        raise UsageError("--diff compares exactly two models")
    if explain_layer and len(models) != 1:
        raise UsageError("--explain takes one model")
    analyses = [run_analysis(m, options) for m in models]
    for a in analyses:
        for w in a.warnings:
            click.echo(f"archc: warning: {a.model}: {w}", err=True)
    fmt = Format(fmt)
    if explain_layer:
        from archc.render.explain import explain
        text = explain(analyses[0], explain_layer) + "\n"
    elif fmt is Format.JSON:
        import json
        if diff:
            payload = views.diff_table(*analyses).rows
        elif len(analyses) > 1:
            payload = {"models": [a.to_json() for a in analyses]}
        else:
            payload = analyses[0].to_json()
        text = json.dumps(payload, indent=2, default=list) + "\n"
    else:
        if diff:
            tables = [views.diff_table(*analyses)]
        elif len(analyses) > 1:
            tables = [views.compare_table(analyses, sort)]
        else:
            a = analyses[0]
            blocks = views.fold_stages(a.blocks) if stages else a.blocks
            tables = [views.block_table(a, blocks) if by == "block" else views.layer_table(a), views.totals_table(a)]
        text = render(tables, fmt, title=tables[0].title)
    if output:
        from archc.util.atomic import write_text
        write_text(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _print_diagnostics(err) -> None:
    from archc.diagnostics import render
    sources: dict[str, str] = {}
    for d in err.diagnostics:
        click.echo(render(d, sources), err=True)
    n = len([d for d in err.diagnostics if d.severity.value == "error"])
    click.echo(f"{n} error{'s' if n != 1 else ''}", err=True)


def run() -> None:
    """Console entry point: map every failure to one clear message and an exit code."""
    from archc.diagnostics import SpecError
    from archc.errors import ArchcError
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except SpecError as e:
        _print_diagnostics(e)
        sys.exit(2)
    except ArchcError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:  # a bug: say so plainly; the traceback is for developers
        if os.environ.get("ARCHC_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {e} (set ARCHC_DEBUG=1 for the traceback and please report it)",
              70)
