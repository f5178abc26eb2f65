"""The shape of the tree: imports go one way, and the host runs a model without the gateware."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from conftest import ROOT

PACKAGES = ("golden", "hw", "host", "sim", "tools")


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports():
    """module -> the project modules it imports anywhere in its text (lazy imports too)."""
    graph = {}
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    names = {_module_name(p) for p in files}
    for path in files:
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in names and t != name}
        graph[name] = found
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    assert len(graph) > 40
    cycles = []

    def visit(node, path, on_path):
        for nxt in sorted(graph[node]):
            if nxt in on_path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt], on_path | {nxt})
        done.add(node)

    done = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start})
    # A package's __init__ re-exporting its own modules is not a cycle of jobs.
    cycles = [c for c in cycles if not any(m.count(".") < c[0].count(".") and
                                           c[0].startswith(m + ".") for m in c)]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_golden_imports_nothing_of_the_hardware_or_the_host():
    graph = _imports()
    leaks = {m: sorted(t for t in ts if not t.startswith("golden"))
             for m, ts in graph.items() if m.startswith("golden")}
    assert not {m: t for m, t in leaks.items() if t}


def test_a_model_runs_on_the_golden_device_without_loading_a_hardware_component():
    """Compile the shipped model, upload it to the golden device, classify a digit, and list
    every loaded project module that defines a wiring.Component: there must be none."""
    script = r"""
import json, sys
from golden import numerics as nx
from golden.digits import calibration_set, load_digits_split
from golden.formats import load_model
from golden.quantize import quantize
from host.board import Board
q = quantize(load_model("models/digits-squeezenet.npz"), calibration_set(), 8,
             nx.DEFAULT_VALUE_BITS)
with Board(q, "golden") as board:
    result = board.classify(load_digits_split()[2][0])
components = []
wiring = sys.modules.get("amaranth.lib.wiring")
for name, mod in list(sys.modules.items()):
    if wiring and name.split(".")[0] in ("golden", "hw", "host", "sim", "tools"):
        for value in vars(mod).values():
            if (isinstance(value, type) and issubclass(value, wiring.Component)
                    and value.__module__ == name):
                components.append(f"{name}.{value.__name__}")
print(json.dumps({"cycles": result.cycles, "components": components,
                  "hw": sorted(m for m in sys.modules if m.startswith("hw"))}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cycles"] > 0
    assert report["components"] == [], report
    assert set(report["hw"]) <= {"hw", "hw.config", "hw.layout", "hw.protocol", "hw.timing",
                                 "hw.sdram_chip"}
