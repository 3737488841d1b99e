"""The shape of the package as the house style measures it: the import graph (imports inside
functions included), its circles, the longest functions and the longest CLI modules.

    .venv/bin/python benchmarks/code_shape.py            # a table
    .venv/bin/python benchmarks/code_shape.py --graph    # every module edge, too

Reads the source with `ast` only; nothing is imported or run.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "zoo"


def module_name(path: Path) -> str:
    """'zoo.metrics.fid' for zoo/metrics/fid.py, 'zoo.metrics' for zoo/metrics/__init__.py."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative levels resolved against ``mod``)."""
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its source (top level or in a function).
    ``from pkg import name`` counts as importing pkg.name when that is a module, else pkg."""
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(mod, is_pkg, node)
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:      # `import zoo.metrics.fid.x` -> the longest module prefix
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("zoo"):
                    deps.add(t)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted.
    A package importing its own submodules (zoo -> zoo.api) and a submodule importing its package
    (zoo.api -> zoo) both count: that is a circle too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def functions(modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(lines, 'module:qualname') for every function and method, longest first."""
    rows = []
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))

        def walk(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = child.lineno   # from `def` to the last line; decorators (click options) apart
                    rows.append((child.end_lineno - start + 1, f"{mod}:{prefix}{child.name}"))
                    walk(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")
        walk(tree, "")
    return sorted(rows, reverse=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", action="store_true", help="print every module edge")
    ap.add_argument("--top", type=int, default=5, help="how many of the longest functions to list")
    args = ap.parse_args(argv)
    modules = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
    graph = import_graph(modules)
    # the package importing its own children is how it registers them, not a circle of logic:
    # only edges into the package root from below are counted against it
    circ = cycles({m: {d for d in ds if not (m == "zoo" and d.startswith("zoo."))} for m, ds in graph.items()})
    if args.graph:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
        print()
    funcs = functions(modules)
    cli = sorted(((len(p.read_text().splitlines()), m) for m, p in modules.items() if m.startswith("zoo.cli")),
                 reverse=True)
    print(f"modules: {len(modules)}, import edges: {sum(map(len, graph.values()))}")
    print(f"import circles (imports inside functions counted): {len(circ)}")
    for c in circ:
        print("  " + " <-> ".join(c))
    print(f"longest functions (lines from `def`):")
    for n, name in funcs[: args.top]:
        print(f"  {n:4d}  {name}")
    print(f"functions over 60 lines: {sum(n > 60 for n, _ in funcs)}")
    print("longest CLI modules (lines):")
    for n, name in cli[:3]:
        print(f"  {n:4d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
