"""Flow diagrams for ``ivr graph``: Graphviz (dot source, SVG, PNG) and Mermaid.

``build_graph(flow)`` turns a compiled flow into boxes and arrows: one box per node (shape and
colour by kind; the label shows the node's name, its kind and a short excerpt of what it says or
does), one arrow per way out (``Node.exits()``: key 1, no input, invalid, failed, open, closed, ...;
exits of one node that lead to the same place share an arrow and list every name), where calls
start, and a dashed arrow from an "any error" note to the flow's ``on_error`` node. Nodes nothing
leads to are drawn grey and marked "unreachable". ``to_dot`` and ``to_mermaid`` write the two text
formats; ``render`` runs Graphviz's ``dot`` (a system package) for SVG and PNG.

May import ``engine.core`` and the standard library.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape as _html_escape

from engine.core.flow import (
    Audio,
    Branch,
    Collect,
    Conference,
    Dial,
    Flow,
    Goto,
    Hangup,
    Hold,
    Hours,
    Http,
    Menu,
    Monitor,
    Node,
    Prompt,
    Record,
    Say,
    Set,
    Transfer,
)

EXCERPT = 42  # characters of a prompt shown in a box
DOT_TIMEOUT = 60  # seconds


@dataclass(frozen=True)
class Style:
    dot_shape: str
    fill: str
    border: str
    rounded: bool = False
    mermaid: tuple[str, str] = ("[", "]")  # how Mermaid opens and closes the shape


STYLES: dict[str, Style] = {
    "play": Style("box", "#DBEAFE", "#2563EB", rounded=True, mermaid=("(", ")")),
    "menu": Style("hexagon", "#FEF3C7", "#D97706", mermaid=("{{", "}}")),
    "collect": Style("parallelogram", "#FDE68A", "#B45309", mermaid=("[/", "/]")),
    "record": Style("box", "#EDE9FE", "#7C3AED", rounded=True, mermaid=("(", ")")),
    "monitor": Style("box", "#F3E8FF", "#9333EA", rounded=True, mermaid=("(", ")")),
    "hold": Style("box", "#E5E7EB", "#4B5563", rounded=True, mermaid=("(", ")")),
    "unhold": Style("box", "#E5E7EB", "#4B5563", rounded=True, mermaid=("(", ")")),
    "transfer": Style("cds", "#D1FAE5", "#059669", mermaid=("[[", "]]")),
    "hangup": Style("octagon", "#FEE2E2", "#DC2626", mermaid=("([", "])")),
    "dial": Style("invhouse", "#CFFAFE", "#0891B2", mermaid=("[/", "\\]")),
    "conference": Style("cds", "#A7F3D0", "#047857", mermaid=("[[", "]]")),
    "http": Style("box3d", "#E0E7FF", "#4F46E5", mermaid=("[(", ")]")),
    "set": Style("box", "#F5F5F4", "#78716C", mermaid=("[", "]")),
    "branch": Style("diamond", "#FFEDD5", "#EA580C", mermaid=("{", "}")),
    "hours": Style("diamond", "#FCE7F3", "#DB2777", mermaid=("{", "}")),
    "goto": Style("box", "#F5F5F4", "#78716C", mermaid=("[", "]")),
}
DEFAULT_STYLE = Style("box", "#FFFFFF", "#374151")
GREY_FILL, GREY_LINE, GREY_TEXT = "#F3F4F6", "#9CA3AF", "#6B7280"
ERROR_LINE, ERROR_FILL = "#DC2626", "#FEF2F2"


@dataclass(frozen=True)
class GraphNode:
    id: str
    kind: str
    details: tuple[str, ...]  # short lines under the name: what it says or does
    reachable: bool
    error_handler: bool


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    labels: tuple[str, ...]  # every exit of ``source`` that leads to ``target``


@dataclass(frozen=True)
class FlowGraph:
    name: str
    description: str
    start: str
    outbound: bool
    on_error: str | None
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]

    def node(self, node_id: str) -> GraphNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)


# --------------------------------------------------------------------------------------------------
# Building


def _excerpt(text: str, limit: int = EXCERPT, *, words: bool = True) -> str:
    """At most ``limit`` characters, cut at a word (``words``) when one ends late enough."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if words and space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def prompt_excerpt(prompt: Prompt | None) -> str | None:
    """The first thing a prompt says (its template source), or the audio file it plays."""
    for part in prompt or ():
        if isinstance(part, Say) and part.text.source.strip():
            return f"“{_excerpt(part.text.source)}”"
        if isinstance(part, Audio):
            name = part.url.source.rstrip("/").rsplit("/", 1)[-1]
            return f"▶ {_excerpt(name)}"
    return None


def node_details(node: Node) -> list[str]:
    """Short lines describing a node, for its box."""
    lines: list[str] = []
    if isinstance(node, Transfer):
        lines.append(f"→ {_excerpt(node.to.source, 30, words=False)}")
    elif isinstance(node, Dial):
        lines.append("calls the number given")
    elif isinstance(node, Collect):
        lines.append(f"into {node.var}")
    elif isinstance(node, Record):
        lines.append(f"records into {node.var}")
    elif isinstance(node, Monitor):
        lines.append(f"records the call into {node.var}")
    elif isinstance(node, Http):
        lines.append(_excerpt(f"{node.method} {node.url.source}", 36, words=False))
    elif isinstance(node, Set):
        for name, template in list(node.values.items())[:2]:
            lines.append(_excerpt(f"{name} = {template.source}", 30))
        if len(node.values) > 2:
            lines.append(f"+{len(node.values) - 2} more")
    elif isinstance(node, Hours):
        lines.append(node.timezone)
    elif isinstance(node, Conference):
        lines.append(f"room {_excerpt(node.room.source, 24)}")
    elif isinstance(node, Hangup) and node.force:
        lines.append("at once")
    prompt = getattr(node, "prompt", None) if not isinstance(node, Hold) else node.music
    said = prompt_excerpt(prompt)
    if said:
        lines.append(said)
    elif isinstance(node, Hold):
        lines.append("hold music")
    return lines


def exit_label(node: Node, exit_name: str) -> str:
    """How an exit is written on its arrow."""
    if isinstance(node, Menu | Collect) and exit_name in ("no input", "invalid"):
        retry = node.no_input if exit_name == "no input" else node.invalid
        tries = f"{retry.tries} tries" if retry.tries != 1 else "1 try"
        return f"{exit_name} ({tries})"
    if isinstance(node, Branch) and exit_name.startswith("case "):
        index = int(exit_name[5:]) - 1
        return f"{exit_name}: {_excerpt(node.cases[index].when.source, 28)}"
    if isinstance(node, Goto):
        return "go to"
    return exit_name


def _reach(flow: Flow) -> set[str]:
    roots = [flow.start] + ([flow.on_error] if flow.on_error else [])
    seen = {r for r in roots if r in flow.nodes}
    queue = deque(seen)
    while queue:
        for target in flow.nodes[queue.popleft()].exits().values():
            if target in flow.nodes and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def build_graph(flow: Flow) -> FlowGraph:
    reachable = _reach(flow)
    nodes = tuple(
        GraphNode(node.id, node.kind, tuple(node_details(node)), node.id in reachable, node.id == flow.on_error)
        for node in flow.nodes.values()
    )
    edges: list[GraphEdge] = []
    for node in flow.nodes.values():
        by_target: dict[str, list[str]] = {}
        for exit_name, target in node.exits().items():
            by_target.setdefault(target, []).append(exit_label(node, exit_name))
        edges.extend(GraphEdge(node.id, target, tuple(labels)) for target, labels in by_target.items())
    return FlowGraph(flow.name, flow.description, flow.start, flow.outbound, flow.on_error, nodes, tuple(edges))


# --------------------------------------------------------------------------------------------------
# Graphviz


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return _html_escape(text, quote=True)


def _dot_label(node: GraphNode) -> str:
    colour = GREY_TEXT if not node.reachable else "#111827"
    rows = [f'<font color="{colour}"><b>{_html(node.id)}</b></font>']
    kind = node.kind + (" · error handler" if node.error_handler else "")
    rows.append(f'<font point-size="9" color="{GREY_TEXT}">{_html(kind)}</font>')
    rows.extend(f'<font point-size="10" color="{colour}">{_html(line)}</font>' for line in node.details)
    if not node.reachable:
        rows.append(f'<font point-size="9" color="{GREY_TEXT}"><i>unreachable</i></font>')
    return "<" + "<br/>".join(rows) + ">"


def to_dot(graph: FlowGraph, direction: str = "TB") -> str:
    """Graphviz source."""
    title = graph.name + (f": {graph.description}" if graph.description else "")
    out = [
        f"digraph {_dot_string(graph.name)} {{",
        f"  graph [rankdir={direction}, fontname=\"Helvetica\", fontsize=14, labelloc=t, "
        f"label={_dot_string(title)}, nodesep=0.35, ranksep=0.45, pad=0.3];",
        '  node [fontname="Helvetica", fontsize=11, margin="0.15,0.06", penwidth=1.3];',
        '  edge [fontname="Helvetica", fontsize=10, color="#4B5563", fontcolor="#374151", arrowsize=0.8];',
        "",
        f'  "call:start" [shape=oval, style=filled, fillcolor="#111827", fontcolor="#FFFFFF", '
        f'label={_dot_string("outbound call" if graph.outbound else "incoming call")}];',
        f'  "call:start" -> {_dot_string(graph.start)} [penwidth=1.6];',
    ]
    if graph.on_error:
        out += [
            f'  "call:error" [shape=note, style="dashed,filled", fillcolor="{ERROR_FILL}", color="{ERROR_LINE}", '
            'fontcolor="#991B1B", label="any error"];',
            f'  "call:error" -> {_dot_string(graph.on_error)} [style=dashed, color="{ERROR_LINE}", '
            f'fontcolor="{ERROR_LINE}", label="on_error"];',
        ]
    out.append("")
    for node in graph.nodes:
        style = STYLES.get(node.kind, DEFAULT_STYLE)
        styles = ["filled"] + (["rounded"] if style.rounded else [])
        fill, line = style.fill, style.border
        extra = ""
        if not node.reachable:
            styles.append("dashed")
            fill, line = GREY_FILL, GREY_LINE
        if node.error_handler:
            line, extra = ERROR_LINE, ", penwidth=2.4"
        out.append(
            f"  {_dot_string(node.id)} [shape={style.dot_shape}, style=\"{','.join(styles)}\", "
            f"fillcolor=\"{fill}\", color=\"{line}\"{extra}, label={_dot_label(node)}];"
        )
    out.append("")
    reachable = {n.id for n in graph.nodes if n.reachable}
    for edge in graph.edges:
        attrs = [f"label={_dot_string(chr(10).join(edge.labels))}"]
        if edge.source not in reachable:
            attrs += [f'color="{GREY_LINE}"', f'fontcolor="{GREY_LINE}"', "style=dashed"]
        if edge.source == edge.target:
            attrs.append("dir=forward")
        out.append(f"  {_dot_string(edge.source)} -> {_dot_string(edge.target)} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


class GraphvizMissing(RuntimeError):
    """Graphviz's ``dot`` program is not installed."""


class GraphvizFailed(RuntimeError):
    """``dot`` ran but did not produce the picture."""


def dot_program() -> str | None:
    return shutil.which("dot")


def render(dot_source: str, fmt: str, *, timeout: float = DOT_TIMEOUT) -> bytes:
    """Run Graphviz ``dot -T<fmt>`` on the source; returns the picture's bytes."""
    program = dot_program()
    if program is None:
        raise GraphvizMissing(
            "drawing SVG or PNG needs Graphviz's `dot` program, which is not installed: install the "
            "'graphviz' system package (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install "
            "graphviz), or use --format mermaid or --format dot"
        )
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizFailed(f"`dot` did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise GraphvizFailed(f"could not run `dot`: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
        raise GraphvizFailed(f"`dot` failed: {message}")
    return done.stdout


# --------------------------------------------------------------------------------------------------
# Mermaid


def _mermaid_text(text: str) -> str:
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;"))


def mermaid_ids(node_ids: Iterable[str]) -> dict[str, str]:
    """Mermaid-safe ids (``n_`` + letters, digits, _): node names may hold ``.`` and ``-``, and ``end``
    is a Mermaid keyword."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for node_id in node_ids:
        base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", node_id)
        candidate, number = base, 2
        while candidate in used:
            candidate, number = f"{base}_{number}", number + 1
        used.add(candidate)
        out[node_id] = candidate
    return out


def to_mermaid(graph: FlowGraph, direction: str = "TD") -> str:
    """Mermaid ``flowchart`` text (GitHub and most Markdown viewers draw it)."""
    ids = mermaid_ids(n.id for n in graph.nodes)
    title = graph.name + (f": {graph.description}" if graph.description else "")
    out = [f"%% {title}", f"flowchart {direction}"]
    start_label = "outbound call" if graph.outbound else "incoming call"
    out.append(f'    call_start(["{start_label}"]) ==> {ids[graph.start]}')
    if graph.on_error:
        out.append(f'    any_error>"any error"] -.->|"on_error"| {ids[graph.on_error]}')
    for node in graph.nodes:
        style = STYLES.get(node.kind, DEFAULT_STYLE)
        kind = node.kind + (" · error handler" if node.error_handler else "")
        rows = [f"<b>{_mermaid_text(node.id)}</b>", f"<i>{_mermaid_text(kind)}</i>"]
        rows += [_mermaid_text(line) for line in node.details]
        if not node.reachable:
            rows.append("<i>unreachable</i>")
        opening, closing = style.mermaid
        out.append(f'    {ids[node.id]}{opening}"{"<br/>".join(rows)}"{closing}')
    reachable = {n.id for n in graph.nodes if n.reachable}
    for edge in graph.edges:
        label = _mermaid_text(", ".join(edge.labels))
        arrow = "-->" if edge.source in reachable else "-.->"
        out.append(f'    {ids[edge.source]} {arrow}|"{label}"| {ids[edge.target]}')
    out.append("")
    kinds = sorted({n.kind for n in graph.nodes if n.reachable})
    for kind in kinds:
        style = STYLES.get(kind, DEFAULT_STYLE)
        out.append(f"    classDef {kind} fill:{style.fill},stroke:{style.border},color:#111827")
        members = ",".join(ids[n.id] for n in graph.nodes if n.kind == kind and n.reachable and not n.error_handler)
        if members:
            out.append(f"    class {members} {kind}")
    handlers = [n for n in graph.nodes if n.error_handler]
    if handlers:
        out.append(f"    classDef errorHandler fill:{ERROR_FILL},stroke:{ERROR_LINE},stroke-width:3px,color:#111827")
        out.append(f"    class {','.join(ids[n.id] for n in handlers)} errorHandler")
    out.append("    classDef marker fill:#111827,stroke:#111827,color:#FFFFFF")
    out.append("    class call_start marker")
    if graph.on_error:
        out.append(f"    classDef errorNote fill:{ERROR_FILL},stroke:{ERROR_LINE},color:#991B1B,stroke-dasharray:5 3")
        out.append("    class any_error errorNote")
    unreachable = [n for n in graph.nodes if not n.reachable]
    if unreachable:
        out.append(f"    classDef unreachable fill:{GREY_FILL},stroke:{GREY_LINE},color:{GREY_TEXT},"
                   "stroke-dasharray:4 3")
        out.append(f"    class {','.join(ids[n.id] for n in unreachable)} unreachable")
    return "\n".join(out) + "\n"


FORMATS = ("svg", "png", "mermaid", "dot")
TEXT_FORMATS = ("svg", "mermaid", "dot")
SUFFIXES = {".svg": "svg", ".png": "png", ".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot"}


def draw(flow: Flow, fmt: str, direction: str = "TB") -> bytes:
    """The diagram of ``flow`` in ``fmt`` (one of ``FORMATS``) as bytes."""
    graph = build_graph(flow)
    if fmt == "mermaid":
        return to_mermaid(graph, "TD" if direction == "TB" else direction).encode("utf-8")
    source = to_dot(graph, direction)
    if fmt == "dot":
        return source.encode("utf-8")
    return render(source, fmt)


__all__ = [
    "FORMATS", "FlowGraph", "GraphEdge", "GraphNode", "GraphvizFailed", "GraphvizMissing", "build_graph", "draw",
    "exit_label", "render", "to_dot", "to_mermaid",
]
