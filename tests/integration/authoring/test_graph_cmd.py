"""``ivr graph``: every node and every labelled exit of each example flow, the error handler, unreachable
nodes, SVG/PNG through Graphviz, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.authoring import graph as graph_module
from engine.authoring.graph import build_graph, exit_label, mermaid_ids
from engine.cli import main
from engine.flowfile import load_flow

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "flows").glob("*.yaml"))


def ivr_graph(*args: str) -> str:
    result = CliRunner().invoke(main, ["graph", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def load(path: Path):
    flow, findings = load_flow(path)
    assert flow is not None, findings
    return flow


def dot_edges(dot: str) -> dict[tuple[str, str], str]:
    found = re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label="((?:[^"\\]|\\.)*)"', dot, re.MULTILINE)
    return {(a, b): label.replace("\\n", "\n") for a, b, label in found}


def mermaid_edges(text: str) -> dict[tuple[str, str], str]:
    found = re.findall(r"^    (\w+) -\.?->\|\"([^\"]*)\"\| (\w+)$", text, re.MULTILINE)
    return {(a, b): label for a, label, b in found}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_dot_has_every_node_and_every_labelled_exit(path):
    flow = load(path)
    dot = ivr_graph(str(path), "--format", "dot")
    assert dot.startswith(f'digraph "{flow.name}" {{')
    edges = dot_edges(dot)
    for node in flow.nodes.values():
        assert re.search(rf'^  "{re.escape(node.id)}" \[shape=\w+, .*<b>{re.escape(node.id)}</b>.*{node.kind}', dot,
                         re.MULTILINE), node.id
        for exit_name, target in node.exits().items():
            label = exit_label(node, exit_name)
            assert exit_name.split(" ")[0] in label
            assert label in edges[(node.id, target)].split("\n"), (node.id, exit_name)
    assert f'"call:start" -> "{flow.start}"' in dot


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_mermaid_has_every_node_and_every_labelled_exit(path):
    flow = load(path)
    text = ivr_graph(path.stem)  # a flow name; mermaid is the default format
    assert "\nflowchart TD\n" in text
    ids = mermaid_ids(flow.nodes)
    edges = mermaid_edges(text)
    for node in flow.nodes.values():
        assert re.search(rf'^    {ids[node.id]}\W+"<b>{re.escape(node.id)}</b><br/><i>{node.kind}', text, re.MULTILINE)
        for exit_name, target in node.exits().items():
            assert exit_label(node, exit_name) in edges[(ids[node.id], ids[target])].split(", "), (node.id, exit_name)
    assert f"==> {ids[flow.start]}" in text


def test_labels_read_like_the_flow():
    def labels(name: str) -> dict[tuple[str, str], tuple[str, ...]]:
        return {(e.source, e.target): e.labels for e in build_graph(load(ROOT / f"flows/{name}.yaml")).edges}

    edges = labels("auto_attendant")
    assert edges[("main_menu", "sales")] == ("key 1",)
    assert edges[("main_menu", "voicemail")] == ("key 0", "no input (2 tries)", "invalid (3 tries)")
    assert edges[("sales", "nobody_free")] == ("failed",)
    small = labels("small_business")
    assert small[("check_hours", "main_menu")] == ("open",)
    assert small[("check_hours", "closed_message")] == ("closed",)
    assert small[("check_hours", "holiday_message")] == ("holiday",)
    booking = labels("booking_confirmation")
    assert booking[("goodbye", "goodbye_confirmed")] == ("case 1: decision == 'confirmed'",)
    assert booking[("goodbye", "goodbye_later")] == ("otherwise",)
    assert booking[("call_customer", "not_reached")] == ("unanswered", "busy", "failed")


def test_the_error_handler_is_marked():
    dot = ivr_graph("auto_attendant", "--format", "dot")
    assert '"call:error" -> "technical_problem" [style=dashed' in dot
    assert re.search(r'^  "technical_problem" .*penwidth=2\.4.*error handler', dot, re.MULTILINE)
    text = ivr_graph("auto_attendant", "--format", "mermaid")
    assert 'any_error>"any error"] -.->|"on_error"| n_technical_problem' in text
    assert "class n_technical_problem errorHandler" in text


UNREACHABLE = """\
start: welcome
on_error: oops
nodes:
  welcome:
    type: play
    say: "Welcome."
    next: bye
  old-promo.2025:
    type: play
    say: "Ask about our summer offer."
    next: bye
  bye:
    type: hangup
  oops:
    type: hangup
    say: "Sorry."
  end:
    type: goto
    to: bye
"""


def test_unreachable_nodes_are_grey_and_marked(tmp_path):
    flow = tmp_path / "promo.yaml"
    flow.write_text(UNREACHABLE)
    dot = ivr_graph(str(flow), "--format", "dot")
    lines = {m.group(1): m.group(0) for m in re.finditer(r'^  "([^"]+)" \[shape=.*$', dot, re.MULTILINE)}
    for node_id in ("old-promo.2025", "end"):
        assert "unreachable" in lines[node_id] and "dashed" in lines[node_id] and "#F3F4F6" in lines[node_id]
    for node_id in ("welcome", "bye", "oops"):
        assert "unreachable" not in lines[node_id]
    assert re.search(r'^  "old-promo\.2025" -> "bye" \[label="next", color="#9CA3AF"', dot, re.MULTILINE)
    text = ivr_graph(str(flow))
    assert "class n_old_promo_2025,n_end unreachable" in text
    assert 'n_old_promo_2025("<b>old-promo.2025</b><br/><i>play</i><br/>“Ask about our summer offer.”<br/>' \
           '<i>unreachable</i>")' in text
    assert 'n_old_promo_2025 -.->|"next"| n_bye' in text
    assert "class n_welcome play" in text  # reachable ones keep their colour


def test_svg_and_png_with_graphviz(tmp_path):
    assert graph_module.dot_program(), "Graphviz is not installed: apt-get install graphviz"
    svg = tmp_path / "auto.svg"
    result = CliRunner().invoke(main, ["graph", "auto_attendant", "-o", str(svg)])
    assert result.exit_code == 0, result.output
    content = svg.read_text()
    assert "<svg" in content and "main_menu" in content and "no input (2 tries)" in content
    png = tmp_path / "small.png"
    result = CliRunner().invoke(main, ["graph", "small_business", "--format", "png", "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in ivr_graph("two_factor_voice", "--format", "svg")  # svg is text: stdout is fine


def test_png_needs_a_file_and_dot_missing_is_explained(monkeypatch, tmp_path):
    result = CliRunner().invoke(main, ["graph", "auto_attendant", "--format", "png"])
    assert result.exit_code == 2 and "give a file with -o" in result.output
    monkeypatch.setattr(graph_module, "dot_program", lambda: None)
    result = CliRunner().invoke(main, ["graph", "auto_attendant", "-o", str(tmp_path / "x.svg")])
    assert result.exit_code == 1
    assert "needs Graphviz's `dot` program" in result.output and "--format mermaid" in result.output
    assert not (tmp_path / "x.svg").exists()
    assert "flowchart TD" in ivr_graph("auto_attendant")  # mermaid needs no Graphviz


def test_a_bad_flow_prints_the_findings_and_exits_1():
    result = CliRunner().invoke(main, ["graph", str(ROOT / "tests/flows_bad/missing_target.yaml")])
    assert result.exit_code == 1
    assert "error: menu 'main' sends key 2 to 'suport'" in result.output
    assert "Traceback" not in result.output
