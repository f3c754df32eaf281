"""The package's layers: no import from a lower layer to a higher one, and no cycles.

Layers, lowest first: the root's ``errors`` and ``version`` -> ``schemas`` (the
catalog) -> ``connector`` -> ``engine`` -> ``activities`` | ``sqlalchemy_dialect`` -> ``service``
| ``replication`` -> ``cli`` (the activities and the SQLAlchemy dialect are siblings, and so
are the service and replication: neither of a pair imports the other). ``sandbox``
stands aside: it may use the errors and the catalog only, and only the CLI starts it.
Every import counts, those inside functions too (they hide cycles, not remove them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_LIBRARY = {"tests", "bench", "build", ".venv", "generator", "definitions"}

LAYERS = {
    "base": 0,
    "schemas": 1,
    "connector": 2,
    "engine": 3,
    "activities": 4,
    "sqlalchemy_dialect": 4,
    "service": 5,
    "replication": 5,
    "cli": 6,
}
SANDBOX_MAY_USE = {"base", "schemas", "sandbox"}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if NOT_LIBRARY.intersection(rel.parts):
            continue
        parts = ["sagesql", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The library modules ``name`` imports (``from pkg import mod`` resolves to mod)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):  # some names are the module's own
                found.add(target)
    return {m for m in found if m in known and m != name}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "facade"  # sagesql/__init__.py: the public names
    if len(parts) == 2 and parts[1] in ("errors", "version"):
        return "base"
    return parts[1]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_the_walk_sees_the_library() -> None:
    g = graph()
    assert {"sagesql.errors", "sagesql.schemas.catalog", "sagesql.connector.client"} <= set(g)
    assert "sagesql.engine.pipeline" in g["sagesql.engine.dbapi"]  # imports in functions too


def test_no_import_reaches_a_higher_layer() -> None:
    wrong: list[str] = []
    for module, targets in graph().items():
        mine = layer(module)
        for target in sorted(targets):
            theirs = layer(target)
            if theirs == "facade":
                wrong.append(f"{module} -> {target} (import the module, not the package root)")
            elif mine == "sandbox" or theirs == "sandbox":
                if mine == "sandbox" and theirs not in SANDBOX_MAY_USE:
                    wrong.append(f"{module} -> {target} (the sandbox uses errors and catalog)")
                if theirs == "sandbox" and mine not in ("sandbox", "cli"):
                    wrong.append(f"{module} -> {target} (only the CLI starts the sandbox)")
            elif mine != "facade" and LAYERS[theirs] > LAYERS[mine]:
                wrong.append(f"{module} ({mine}) -> {target} ({theirs})")
            elif mine != "facade" and LAYERS[theirs] == LAYERS[mine] and theirs != mine:
                wrong.append(f"{module} ({mine}) -> {target} ({theirs}, a sibling layer)")
    assert not wrong, "imports upward:\n" + "\n".join(wrong)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_module_cycles() -> None:
    # A package's __init__ re-exporting its modules is not a cycle of meaning.
    g = {
        m: {t for t in ts if not (m.startswith(t + ".") and t.count(".") >= 1)}
        for m, ts in graph().items()
    }
    found = cycles(g)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(
    "package",
    [
        "connector",
        "engine",
        "activities",
        "sqlalchemy_dialect",
        "schemas",
        "sandbox",
        "service",
        "replication",
    ],
)
def test_library_layers_import_at_the_top(package: str) -> None:
    """Below the CLI, imports inside functions are only for optional or costly modules."""
    allowed = {
        # `import sagesql` stays cheap: the engine and the HTTP client load on first use.
        ("sagesql.engine.dbapi", "sagesql.engine.pipeline"),
        ("sagesql.engine.dbapi", "sagesql.engine.statement"),
        ("sagesql.engine.dbapi", "sagesql.connector.client"),
    }
    found = modules()
    inside: list[str] = []
    for name, path in found.items():
        if layer(name) != package:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside.extend(
                    f"{name}: from {node.module} import ..."
                    for node in ast.walk(fn)
                    if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("sagesql")
                    and (name, node.module) not in allowed
                )
    assert not inside, "imports inside functions:\n" + "\n".join(inside)


def test_importing_sagesql_loads_neither_the_engine_nor_http() -> None:
    """`import sagesql` stays cheap (CLI start-up, notebooks): the SQL engine and the HTTP
    client load when a statement first runs."""
    import subprocess
    import sys

    probe = (
        "import sys, sagesql; "
        "print(sorted(m for m in ('requests', 'sqlglot', 'sagesql.connector.products') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
