"""The package's dependencies point one way: no import cycle, none hidden in a function, and
each role imports only what its place in the layout allows (README, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "delegation_idp"

# Imports inside functions that are not hiding a cycle, each with its reason.
FUNCTION_LEVEL = {
    # Django's documented place to register checks and connect receivers.
    ("delegation_idp/apps.py", "delegation_idp.checks"),
    ("delegation_idp/apps.py", "delegation_idp.lineage.receivers"),
    ("delegation_idp/apps.py", "delegation_idp.provider.signin"),
    ("delegation_idp/apps.py", "delegation_idp.provider.self_registered"),
    ("delegation_idp/apps.py", "delegation_idp.provider.metrics"),
    ("delegation_idp/apps.py", "delegation_idp.provider.status_lists"),
    ("delegation_idp/apps.py", "delegation_idp.ciba.receivers"),
    # The resource side and the agent client run without Django configured (or installed):
    # the circuit breaker reads its reset time from the settings only if there are any.
    ("delegation_idp/breaker.py", "delegation_idp.conf"),
}

# What each part may import of the package (prefixes); "*" anything.
ALLOWED = {
    "delegation_idp.core": ("delegation_idp.core",),
    # The agent client signs DPoP proofs (RFC 9449) through the JOSE layer, with the pure rfc9449 core.
    "delegation_idp.client": (
        "delegation_idp.client",
        "delegation_idp.core",
        "delegation_idp.jose",
        "delegation_idp.rfc9449",
    ),
    "delegation_idp.resource_server": (
        "delegation_idp.resource_server",
        "delegation_idp.core",
        "delegation_idp.jose",
        "delegation_idp.rfc9449",
        "delegation_idp.statuslist",  # the pure Token Status List core, as rfc9449
        "delegation_idp.breaker",
        "delegation_idp.conf",
        "delegation_idp.__init__",
    ),
    "delegation_idp.lineage": (
        "delegation_idp.lineage",
        "delegation_idp.core",
        "delegation_idp.models",
        "delegation_idp.conf",
        "delegation_idp.audit",
        "delegation_idp.signals",
        "delegation_idp.sql",
        "delegation_idp.breaker",
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def imported(node: ast.AST, known: set[str]) -> set[str]:
    """The package's modules an import statement loads (a ``from x import name`` of a
    submodule counts as that submodule; of an object, as ``x``)."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        found |= {a.name for a in node.names if a.name.startswith("delegation_idp")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("delegation_idp"):
        for alias in node.names:
            sub = f"{node.module}.{alias.name}"
            found.add(sub if sub in known else node.module)
    return found


def graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """Module-level imports between the package's modules, and the function-level ones."""
    known = set(modules())
    edges: dict[str, set[str]] = {}
    inner: list[tuple[str, str]] = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        edges[name] = set()
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges[name] |= imported(node, known)
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    for target in imported(node, known):
                        inner.append((str(path.relative_to(PACKAGE.parent)), target))
        # Importing a module first imports its packages.
        parts = name.split(".")
        edges[name] |= {".".join(parts[:i]) for i in range(1, len(parts))} & known
    return edges, inner


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == node or nxt.startswith(node + "."):
                continue  # a package importing its own submodule (re-exports)
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    edges, _ = graph()
    assert cycle(edges) is None, " -> ".join(cycle(edges) or [])


def test_the_cycle_check_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_level_import_hides_a_dependency():
    _, inner = graph()
    hidden = sorted({(path, target) for path, target in inner} - FUNCTION_LEVEL)
    assert not hidden, hidden


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_role_imports_only_what_the_layout_allows(part):
    edges, _ = graph()
    allowed = ALLOWED[part]
    wrong = {
        (name, target)
        for name, targets in edges.items()
        if name == part or name.startswith(part + ".")
        for target in targets
        if target != "delegation_idp" and not target.startswith(allowed)
    }
    assert not wrong, sorted(wrong)


def test_a_module_over_400_lines_says_why_in_its_docstring():
    long = {}
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > 400:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            long[name] = "Why one module over 400 lines" in docstring
    assert all(long.values()), sorted(name for name, ok in long.items() if not ok)
