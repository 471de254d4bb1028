"""The import direction of docs/architecture.md, read from the source with `ast`.

features <- models <- training and serving; training and serving do not import each other;
nothing in the product imports the harness (benchmarks, reliability); no import cycles
among the project's modules. Every import counts, including the ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("features", "models", "training", "serving")
HARNESS = ("benchmarks", "reliability")
PACKAGES = PRODUCT + HARNESS

#: Which project packages each package may import (itself included).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "features": frozenset({"features"}),
    "models": frozenset({"features", "models"}),
    "training": frozenset({"features", "models", "training"}),
    "serving": frozenset({"features", "models", "serving"}),
    "benchmarks": frozenset(PRODUCT) | {"benchmarks"},
    "reliability": frozenset(PRODUCT) | {"reliability"},
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of the project's packages under `root`, by dotted name."""
    return {
        module_name(root, path): path
        for package in packages
        if (root / package).is_dir()
        for path in sorted((root / package).rglob("*.py"))
    }


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (`from a import b` counts as `a.b` when that is a module)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # `import serving.audit` and `from serving import audit` both reach serving.audit
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    modules = project_modules(root, packages)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    """`importer -> imported` for every import that breaks MAY_IMPORT."""
    problems = []
    for importer, targets in sorted(graph.items()):
        package = importer.split(".")[0]
        for target in sorted(targets):
            if target.split(".")[0] not in MAY_IMPORT[package]:
                problems.append(f"{importer} -> {target}")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_every_package_is_found() -> None:
    graph = import_graph(ROOT)
    for package in PACKAGES:
        assert package in graph, f"{package}/__init__.py not found under {ROOT}"
    assert len(graph) > 50


def test_imports_flow_one_way() -> None:
    """features <- models <- training, serving; training and serving apart; nobody imports the harness."""
    problems = forbidden_imports(import_graph(ROOT))
    assert not problems, "imports against docs/architecture.md:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph(ROOT))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_catch_a_forbidden_import_and_a_cycle(tmp_path: Path) -> None:
    """The rules above would fail on a tree that breaks them (so they are not vacuous)."""
    _write(
        tmp_path,
        {
            **{f"{package}/__init__.py": "" for package in PACKAGES},
            "features/history.py": "def f():\n    from models import scorer\n",
            "models/scorer.py": "from features.history import f\n",
            "training/cli.py": "from serving.replay import replay_cli\n",
            "serving/replay.py": "replay_cli = None\n",
            "serving/service.py": "import reliability.checks\n",
            "serving/engine.py": "from . import audit\n",
            "serving/audit.py": "from .engine import x\n",
            "reliability/checks.py": "from serving import service\n",
        },
    )
    graph = import_graph(tmp_path)
    assert forbidden_imports(graph) == [
        "features.history -> models.scorer",
        "serving.service -> reliability.checks",
        "training.cli -> serving.replay",
    ]
    assert sorted(import_cycles(graph)) == [
        ["features.history", "models.scorer"],
        ["reliability.checks", "serving.service"],
        ["serving.audit", "serving.engine"],
    ]
