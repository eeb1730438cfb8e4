"""Generated flows of a given size, for the flow-size benchmark.

Every generated flow gives the benchmark's callers the same path whatever its size: a menu (one
``gather``), key 1 leads to a transfer (answered: the call ends). The other nodes hang off key 2:
a chain of ``play`` nodes ending in a hangup, all reachable, so ``ivr check`` accepts the flow and
the engine loads and compiles every node. ``generate(10)`` and ``generate(2000)`` differ only in
the length of that chain.
"""

from __future__ import annotations

FIXED_NODES = 4  # menu, transfer, goodbye, technical_problem


def generate(nodes: int, number: str) -> str:
    """YAML source of a flow with exactly ``nodes`` nodes, run by calls to ``number``."""
    if nodes < FIXED_NODES + 1:
        raise ValueError(f"a generated flow has at least {FIXED_NODES + 1} nodes")
    chain = nodes - FIXED_NODES
    lines = [
        f"description: Generated flow with {nodes} nodes (benchmark)",
        f'numbers: ["{number}"]',
        "start: main_menu",
        "on_error: technical_problem",
        "nodes:",
        "  main_menu:",
        "    type: menu",
        '    say: "For sales, press 1. For the announcements, press 2."',
        "    options:",
        '      "1": sales',
        '      "2": info_1',
        "    no_input: {say: \"Sorry, I didn't hear anything.\", tries: 2, then: goodbye}",
        '    invalid: {say: "Sorry, that is not one of the options.", tries: 3, then: goodbye}',
        "    tag: main-menu",
        "  sales:",
        "    type: transfer",
        '    say: "Connecting you to sales."',
        '    to: "+6531580001"',
        "    ring_time: 25",
        "    on_failure: continue",
        "    failed: goodbye",
        "    tag: sales",
    ]
    for i in range(1, chain + 1):
        following = f"info_{i + 1}" if i < chain else "goodbye"
        lines += [
            f"  info_{i}:",
            "    type: play",
            f'    say: "Announcement number {i}."',
            f"    next: {following}",
        ]
    lines += [
        "  goodbye:",
        "    type: hangup",
        '    say: "Thank you for calling. Goodbye."',
        "  technical_problem:",
        "    type: hangup",
        '    say: "Sorry, we are having technical problems. Please call again later."',
        "",
    ]
    return "\n".join(lines)
