"""A drawing of the network with its blocks collapsed: one node per block instance (a spec block, or a name prefix
the analyzer recovered) and one per layer outside blocks, a layer's activation folded into it (`c1/tanh` into
`c1`); edges where tensors flow between them.

The graph is a networkx DiGraph built from the analysis JSON (`layers[].block`, `layers[].inputs`). It is drawn
by Graphviz (`dot -Tsvg`, a layered layout made for such graphs) when `dot` is on PATH, else laid out in layers
here (networkx's topological generations, `multipartite_layout`) and drawn with matplotlib's SVG backend. Both
escape the text they write (Graphviz XML-escapes labels; matplotlib too, and `charts.label` guards mathtext).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from archc.render.report import charts

MOST_NODES = 250  # beyond this the drawing says so instead: a foreign graph without blocks can have thousands


def _dims(shape: Any) -> str:
    return "×".join(str(d) for d in shape[1:]) if shape and len(shape) > 1 else ""


def collapsed(analysis: dict[str, Any]) -> Any:
    """The DiGraph of blocks: nodes carry `label` (name), `kind` (block type or op) and `shape` (output, no
    batch), in graph order; graph inputs are nodes of kind "input"."""
    import networkx as nx
    layers = analysis.get("layers") or []
    names = {lay["name"] for lay in layers}
    types = {b["path"]: b["type"] for b in analysis.get("blocks") or []}
    g = nx.DiGraph()
    for i in analysis.get("inputs") or []:
        g.add_node(i["name"], label=i["name"], kind="input", shape=_dims(i.get("shape")))
    owner: dict[str, str] = {i["name"]: i["name"] for i in analysis.get("inputs") or []}
    for lay in layers:
        name = lay["name"]
        head = name.split("/", 1)[0]
        key = lay.get("block") or (head if head and head != name and head in names else name)
        owner[name] = key
        if key not in g:
            kind = types.get(key) or lay.get("spec_op") or lay["op"]
            g.add_node(key, label=key, kind=kind, shape="")
        g.nodes[key]["shape"] = _dims(lay.get("output_shape"))  # the group's last layer's output
        for src in lay.get("inputs") or []:
            s = owner.get(src)
            if s is not None and s != key:
                g.add_edge(s, key)
    return g


def draw(analysis: dict[str, Any], name: str, engine: str | None = None) -> tuple[str, str]:
    """(svg, how): the drawing and which library made it ("graphviz" or "matplotlib"), or ("", why not).
    `engine` forces one ("graphviz" needs `dot` on PATH)."""
    g = collapsed(analysis)
    if g.number_of_nodes() == 0:
        return "", "the analysis has no layers"
    if g.number_of_nodes() > MOST_NODES:
        return "", f"{g.number_of_nodes()} nodes even with blocks collapsed: too many to draw legibly"
    dot = shutil.which("dot")
    if engine != "matplotlib" and dot:
        svg = _graphviz(g, dot, name)
        if svg:
            return svg, "graphviz"
    return _matplotlib(g, name), "matplotlib"


def _graphviz(g: Any, dot: str, name: str) -> str | None:
    def q(s: str) -> str:  # a DOT string: quotes and backslashes escaped (labels' \n etc. are not interpreted)
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
    ids = {n: f"n{i}" for i, n in enumerate(g.nodes)}
    lines = ["digraph G {", 'graph [rankdir=TB, nodesep=0.25, ranksep=0.3, bgcolor="transparent"];',
             'node [shape=box, style="rounded,filled", fillcolor="#eef3f8", color="#5b7083", '
             'fontname="Helvetica,Arial,sans-serif", fontsize=10, height=0.3];',
             'edge [color="#5b7083", arrowsize=0.6];']
    for n, d in g.nodes(data=True):
        text = " · ".join(x for x in (d["label"], d["kind"] if d["kind"] != d["label"] else "", d["shape"]) if x)
        fill = ', fillcolor="#fff4e0"' if d["kind"] == "input" else ""
        lines.append(f"{ids[n]} [label={q(text)}, tooltip={q(d['label'])}{fill}];")
    lines += [f"{ids[a]} -> {ids[b]};" for a, b in g.edges]
    lines.append("}")
    try:
        out = subprocess.run([dot, "-Tsvg"], input="\n".join(lines), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or "<svg" not in out.stdout:
        return None
    svg = out.stdout[out.stdout.index("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)  # Graphviz comments repeat node names: not needed
    svg = re.sub(r"<[^>]+>", lambda m: re.sub(r'(\bid="|xlink:href="#|url\(#)', lambda r: f"{r.group(1)}{name}-",
                                                m.group(0)), svg)
    return svg.replace("<svg ", f'<svg class="chart graph" role="img" aria-label="{name}" ', 1)


def _matplotlib(g: Any, name: str) -> str:
    import networkx as nx
    from matplotlib.patches import FancyArrowPatch
    gens = list(nx.topological_generations(g)) if nx.is_directed_acyclic_graph(g) else [list(g.nodes)]
    for depth, nodes in enumerate(gens):
        for n in nodes:
            g.nodes[n]["layer"] = depth
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=1.0)
    # rows top to bottom (generation order), nodes of a row spread evenly across
    width = max(len(n) for n in gens)
    coords = {}
    for depth, nodes in enumerate(gens):
        ordered = sorted(nodes, key=lambda n: pos[n][0])
        for i, n in enumerate(ordered):
            coords[n] = ((i - (len(ordered) - 1) / 2) * 2.6, -depth)
    with charts.figure(min(charts.WIDTH, 2.4 + 2.6 * width), 0.6 + 0.42 * len(gens)) as fig:
        ax = fig.subplots()
        ax.set_axis_off()
        for a, b in g.edges:
            (x0, y0), (x1, y1) = coords[a], coords[b]
            skip = y0 - y1 > 1.01
            ax.add_patch(FancyArrowPatch((x0, y0 - 0.18), (x1, y1 + 0.18), arrowstyle="-|>", mutation_scale=8,
                                         color="#5b7083", lw=0.8,
                                         connectionstyle=f"arc3,rad={0.35 if skip else 0.0}"))
        for n, d in g.nodes(data=True):
            x, y = coords[n]
            kind = d["kind"] if d["kind"] != d["label"] else ""
            text = " · ".join(charts.label(t, 32) for t in (d["label"], kind, d["shape"]) if t)
            ax.text(x, y, text, ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.3", "fc": "#fff4e0" if d["kind"] == "input" else "#eef3f8",
                          "ec": "#5b7083", "lw": 0.8})
        xs = [c[0] for c in coords.values()]
        ax.set_xlim(min(xs) - 1.6, max(xs) + 1.6)
        ax.set_ylim(-len(gens) + 0.4, 0.6)
        return charts.to_svg(fig, name)
