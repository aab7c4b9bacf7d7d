"""The package's import graph: no cycles, and dependencies run one way (docs/ARCHITECTURE.md, "Parts").

Every ``import`` of a studyapp module counts, also those inside functions and under TYPE_CHECKING: a lazy import
still couples two parts. Layers, highest first; a module may import its own layer's parts or lower ones only.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "studyapp"

# Part -> layer. A part is the first component under studyapp/ (a subpackage, or a top-level module).
LAYERS: dict[str, int] = {
    # the entry points and the terminal app
    "entry": 6, "__main__": 6, "cli": 5, "ask": 5, "cli_options": 4, "diagnostics": 4, "tui": 4,
    # taking part and a turn
    "participation": 3, "turns": 3, "remind": 3,
    # the stages, the study, privacy and sync
    "personalize": 2, "study": 2, "privacy": 2, "sync": 2, "chat": 2, "context": 2,
    # storage, models and shared definitions (domain: the plain objects the stores return and the screens show)
    "store": 1, "llm": 1, "migrations": 1,
    "domain": 0, "events": 0, "contract": 0, "paths": 0, "private_files": 0, "secrets": 0, "__init__": 0,
    # the researchers' server stands beside the app: it may use the shared definitions and the study protocol
    "server": 5,
    # the researchers' analysis reads the export contract the server writes (and the server reports with it)
    "analysis": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("studyapp")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from this module's package
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            if base.startswith("studyapp"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {i for i in imports(path) if i in modules and i != name} for name, path in modules.items()}


def part(module: str) -> str:
    # Each part's click commands (``studyapp.<part>.commands``) are its front end: they sit with the CLI.
    if module.endswith(".commands"):
        return "cli"
    return module.split(".")[1] if "." in module else "__init__"


def test_every_part_has_a_layer() -> None:
    assert {part(m) for m in graph()} - set(LAYERS) == set()


def test_no_import_cycles() -> None:
    edges = graph()
    seen: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(edges[node]):
            if seen.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in seen:
                visit(nxt, [*stack, nxt])
        seen[node] = 2

    for node in sorted(edges):
        if node not in seen:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(graph()))
def test_dependencies_run_one_way(module: str) -> None:
    upward = sorted(i for i in graph()[module] if part(i) != part(module) and LAYERS[part(i)] > LAYERS[part(module)])
    assert upward == [], f"{module} imports higher layers"
