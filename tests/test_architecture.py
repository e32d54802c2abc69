"""The package's imports run one way: no module imports, even inside a function, a module
that imports it back (directly or through others). The bottom is ``semibook.checks``. And the
commands start without the imports they do not need."""

import ast
import subprocess
import sys
from pathlib import Path

import semibook

PACKAGE = Path(semibook.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its code (module level or
    inside functions): ``from X import a`` names X, and X.a where that is a module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                if node.level else []
            full = ".".join(base + ([node.module] if node.module else []))
            out |= {m for m in [full] + [f"{full}.{a.name}" for a in node.names] if m in known}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
    return out - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_in_the_package():
    known = modules()
    graph = {m: imports(m, p, known) for m, p in known.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_checks_is_the_bottom():
    known = modules()
    assert imports("semibook.checks", known["semibook.checks"], known) == set()


def test_commands_on_the_embedded_data_start_without_torchvision():
    """torchvision's import costs seconds on the 2-core CPU; only VOC and Cityscapes need it
    (semibook.data.segfiles), so the engine, the commands and the chapters' helpers leave it out."""
    code = ("import sys, semibook.engine.fit, semibook.engine.run, semibook.reproduce, semibook.bench, "
            "semibook.calibration, semibook.viz, semibook.pictures, semibook.widgets, semibook.data.voc, "
            "semibook.data.cityscapes, semibook.__main__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "[]"
    code = "import sys, semibook.data.segfiles; print('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True).stdout.strip() == "True"
