"""The import graph as the house style wants it, measured by benchmarks/code_shape.py (imports inside
functions counted): no circle, the CLI imported only from the entry point and itself, no family
importing another, and every family importable on its own in a fresh interpreter."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _code_shape():
    spec = importlib.util.spec_from_file_location("code_shape", ROOT / "benchmarks" / "code_shape.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SHAPE = _code_shape()
MODULES = {SHAPE.module_name(p): p for p in sorted(SHAPE.PKG.rglob("*.py"))}
GRAPH = SHAPE.import_graph(MODULES)
FAMILIES = sorted(m for m in MODULES if m.startswith("zoo.models.") and m != "zoo.models")


def test_no_import_circle(capsys):
    assert SHAPE.main([]) in (0, None)
    out = capsys.readouterr().out
    assert "import circles (imports inside functions counted): 0" in out, out


def test_only_the_entry_point_imports_the_cli():
    importers = {m for m, deps in GRAPH.items() if any(d == "zoo.cli" or d.startswith("zoo.cli.") for d in deps)}
    assert importers, "the graph finds no importer of zoo.cli at all: the measurement is broken"
    bad = sorted(m for m in importers if m != "zoo.__main__" and not (m == "zoo.cli" or m.startswith("zoo.cli.")))
    assert not bad, f"modules outside zoo/cli and zoo/__main__.py import zoo.cli: {bad}"


def test_no_family_imports_another():
    assert len(FAMILIES) >= 8
    bad = sorted((m, d) for m in FAMILIES for d in GRAPH[m] if d in FAMILIES)
    assert not bad, f"family modules import other families: {bad}"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_imports_in_a_fresh_interpreter(family):
    r = subprocess.run([sys.executable, "-c", f"import {family}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
