"""Benchmark: how long ``ivr check`` takes on a 2,000-node flow (budget: 1 second).

Generates a large, valid flow that uses most node types, templates and exits (200 groups of ten
nodes chained through their menus), writes it to a temporary folder, then times ``check_paths`` over
several runs and prints the median and its ratio to the budget. A benchmark, not a test: run it with
``make bench`` or ``python bench/check_flows.py [--nodes N] [--runs N]``.

May import ``engine.flowfile``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from engine.flowfile import check_paths  # noqa: E402
from engine.flowfile.templating import clear_caches  # noqa: E402

BUDGET_SECONDS = 1.0
GROUP = 10  # nodes per group


def _group(i: int, groups: int) -> str:
    following = (i + 1) % groups
    return f"""
  menu_{i}:
    type: menu
    say: "Menu {i} of {{{{ company }}}}. For details press 1, to key in your account press 2, to talk to us press 3."
    repeat: "Press 1, 2 or 3, or 9 for the next menu."
    options:
      "1": details_{i}
      "2": account_{i}
      "3": agent_{i}
      "9": next_{i}
    timeout: 5
    no_input: {{say: "Sorry, I didn't hear anything.", tries: 2, then: bye}}
    invalid: {{say: "Sorry, that is not an option.", then: bye}}
  details_{i}:
    type: play
    say:
      - "Here are the details for option {i}, {{{{ caller }}}}."
      - {{text: "Merci.", language: fr, gender: male}}
    next: remember_{i}
  account_{i}:
    type: collect
    say: "Please key in your 8-digit account number."
    into: account_{i}
    min_length: 8
    max_length: 8
    pattern: "[0-9]{{8}}"
    no_input: {{then: bye}}
    invalid: {{say: "That is not a valid account number.", tries: 2, then: bye}}
    next: remember_{i}
  remember_{i}:
    type: set
    values:
      last_choice: "{{{{ digits }}}}"
      visits: "{{{{ visits | int + 1 }}}}"
    next: route_{i}
  route_{i}:
    type: branch
    cases:
      - when: "last_choice == '1'"
        then: lookup_{i}
      - when: "visits | int > 3"
        then: bye
    otherwise: next_{i}
  lookup_{i}:
    type: http
    method: POST
    url: "https://api.example.com/accounts/{{{{ account_{i} | default('') }}}}"
    headers: {{Authorization: "Bearer {{{{ token }}}}"}}
    body: {{menu: "{i}", session: "{{{{ session }}}}"}}
    timeout: 4
    save: {{balance_{i}: account.balance}}
    next: message_{i}
    failed: bye
  message_{i}:
    type: record
    say: "Your balance is {{{{ balance_{i} }}}}. Leave a message after the tone."
    max_duration: 60
    into: message_{i}
    next: bye
  next_{i}:
    type: goto
    to: menu_{following}
  agent_{i}:
    type: transfer
    say: "Connecting you."
    to: "+656158{i:04d}"
    ring_time: 20
    on_failure: continue
    failed: agent_busy_{i}
  agent_busy_{i}:
    type: hangup
    say: "Sorry, everyone is busy. Goodbye."
"""


def make_flow(nodes: int) -> str:
    groups = max(1, nodes // GROUP)
    head = """# yaml-language-server: $schema=../engine/flowfile/flow.schema.json
description: Generated benchmark flow
numbers: ["+6531580000"]
start: menu_0
on_error: sorry
voice: {language: en-US, gender: female}
vars:
  company: Acme
  visits: "0"
  token: secret
nodes:
  bye:
    type: hangup
    say: "Goodbye."
  sorry:
    type: hangup
    say: "Sorry, something went wrong."
"""
    return head + "".join(_group(i, groups) for i in range(groups))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.yaml"
        path.write_text(make_flow(args.nodes), encoding="utf-8")
        findings = check_paths([folder])
        if findings:
            for finding in findings[:10]:
                print(finding)
            print(f"the generated flow has {len(findings)} findings; the benchmark needs a clean flow")
            return 1
        size = path.stat().st_size
        cold, cold_cpu, warm = [], [], []
        for _ in range(args.runs):
            clear_caches()  # a first load: every template parsed
            started, started_cpu = time.perf_counter(), time.process_time()
            check_paths([folder])
            cold.append(time.perf_counter() - started)
            cold_cpu.append(time.process_time() - started_cpu)
            started = time.perf_counter()  # a reload of the same flow: templates come from the cache
            check_paths([folder])
            warm.append(time.perf_counter() - started)
    median = statistics.median(cold)
    print(f"check_paths on a {args.nodes}-node flow ({size // 1024} KiB), {args.runs} runs:")
    print(f"  first load: median {median * 1000:.0f} ms (min {min(cold) * 1000:.0f}, max {max(cold) * 1000:.0f}); "
          f"CPU time median {statistics.median(cold_cpu) * 1000:.0f} ms (wall time above it means a busy machine)")
    print(f"  reload:     median {statistics.median(warm) * 1000:.0f} ms")
    print(f"ratio of the first-load median to the {BUDGET_SECONDS:.0f} s budget: {median / BUDGET_SECONDS:.2f}")
    return 0 if median <= BUDGET_SECONDS else 2


if __name__ == "__main__":
    sys.exit(main())
