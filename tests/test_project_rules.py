"""Project conventions that are easy to break silently, the layer contract among them.

The layer contract (docs/architecture.md) is checked by walking every import statement with
``ast``, imports inside functions included:

    shells (app.py, pages/, healthmon/ui, healthmon/cli, healthmon/api) -> services -> domain -> core
                                                               services -> storage -> core

Domain packages never import storage, services or a shell; shells never import storage (they
reach the database through services); only app.py, pages/ and healthmon/ui import streamlit;
and no healthmon module imports itself back through others, however indirectly.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from healthmon.config import Settings

from conftest import ROOT

CORE = {"healthmon", "healthmon.config", "healthmon.errors", "healthmon.types", "healthmon.escaping"}
DOMAIN = {"ingest", "model", "training", "explain", "vitals", "advice", "demo", "report", "figures"}
SHELLS = {"ui", "cli", "api", "__main__", "reference"}
ALLOWED = {  # layer -> the layers it may import
    "core": {"core"},
    "storage": {"core", "storage"},
    "domain": {"core", "domain"},
    "services": {"core", "storage", "domain", "services"},
    "shell": {"core", "domain", "services", "shell"},
}
MAX_MODULE_LINES = 600


@dataclass(frozen=True)
class Import:
    importer: str  # module name (app, pages.1_Notes, healthmon.vitals.news2, ...)
    path: Path
    line: int
    target: str  # the healthmon module (or package) imported
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    return sorted([*(ROOT / "healthmon").rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"])


def _resolve(module: str, name: str, known: set[str]) -> str:
    """``from module import name``: the submodule when ``name`` is one, else the module."""
    return f"{module}.{name}" if f"{module}.{name}" in known else module


def imports_of(path: Path, known: set[str], *, source: str | None = None) -> list[Import]:
    """Every healthmon import in a file (or in ``source`` read as that file), at module level
    or inside functions and methods."""
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"), filename=str(path))
    function_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                      for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [_resolve(base, alias.name, known) for alias in node.names]
        else:
            continue
        found += [Import(importer, path, node.lineno, t, id(node) in function_nodes)
                  for t in targets if t == "healthmon" or t.startswith("healthmon.")]
    return found


def layer(module: str) -> str:
    if module in ("app",) or module.startswith("pages."):
        return "shell"
    if module in CORE:
        return "core"
    top = module.split(".")[1]
    if top == "storage":
        return "storage"
    if top == "services":
        return "services"
    if top in DOMAIN:
        return "domain"
    if top in SHELLS:
        return "shell"
    raise AssertionError(f"{module}: no layer; add its package to a layer in tests/test_project_rules.py "
                         "and docs/architecture.md")


def all_imports() -> list[Import]:
    files = project_files()
    known = {module_name(p) for p in files}
    return [imp for path in files for imp in imports_of(path, known)]


def layer_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        source, target = layer(imp.importer), layer(imp.target)
        if target not in ALLOWED[source]:
            problems.append(f"{imp.path.relative_to(ROOT)}:{imp.line}: {imp.importer} ({source}) imports "
                            f"{imp.target} ({target}){' inside a function' if imp.in_function else ''}")
        elif target == "shell" and imp.target.startswith("healthmon.ui") and not (
                imp.importer in ("app",) or imp.importer.startswith(("pages.", "healthmon.ui"))):
            problems.append(f"{imp.path.relative_to(ROOT)}:{imp.line}: only app.py, pages/ and healthmon/ui use "
                            f"healthmon.ui; {imp.importer} imports {imp.target}")
    return problems


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), imports inside functions included."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_import_walker_sees_imports_inside_functions_and_resolves_relative_ones():
    news2 = ROOT / "healthmon" / "vitals" / "news2.py"
    source = ("from healthmon.storage import db\n"
              "def f():\n    from healthmon.services import vitals\n    from . import bp\n    import healthmon.ui\n")
    known = {module_name(p) for p in project_files()}
    found = imports_of(news2, known, source=source)  # read as if it were healthmon/vitals/news2.py
    assert [(i.target, i.in_function) for i in found] == [
        ("healthmon.storage.db", False), ("healthmon.services.vitals", True), ("healthmon.vitals.bp", True),
        ("healthmon.ui", True)]
    assert [p.split(": ")[1].split(" imports ")[1] for p in layer_violations(found)] == [
        "healthmon.storage.db (storage)", "healthmon.services.vitals (services) inside a function",
        "healthmon.ui (shell) inside a function"]


def test_every_import_follows_the_layer_contract():
    problems = layer_violations(all_imports())
    assert not problems, "imports that break the layer contract (docs/architecture.md):\n" + "\n".join(problems)


def test_no_module_imports_itself_back():
    cycles = import_cycles(all_imports())
    assert not cycles, "import cycles (imports inside functions count too):\n" + "\n".join(
        " <-> ".join(group) for group in cycles)


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    a, b, c = (Import(m, ROOT / "app.py", 1, t, inner) for m, t, inner in (
        ("healthmon.explain.integrated", "healthmon.explain.faithfulness", True),
        ("healthmon.explain.faithfulness", "healthmon.explain.words", False),
        ("healthmon.explain.words", "healthmon.explain.integrated", False)))
    assert import_cycles([a, b, c]) == [sorted([a.importer, b.importer, c.importer])]
    assert import_cycles([a, b]) == []


def test_only_app_pages_and_ui_import_streamlit():
    offenders = []
    for path in project_files():
        name = module_name(path)
        if name == "app" or name.startswith(("pages.", "healthmon.ui")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "streamlit"]
    assert not offenders, offenders


@pytest.mark.parametrize("call", ["transaction", "unit_of_work", "require", "audit", "session_factory", "make_engine"])
def test_only_services_open_sessions_check_permissions_and_audit(call):
    offenders = []
    for path in project_files():
        name = module_name(path)
        if name.startswith(("healthmon.services", "healthmon.storage")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if called == call:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"{call}() outside healthmon/services: {offenders}"


def test_no_library_module_is_longer_than_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "healthmon").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these by what they do: {long}"


def test_settings_read_the_environment_and_keywords(monkeypatch, tmp_path):
    monkeypatch.setenv("HEALTHMON_MAX_LENGTH", "128")
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.max_length == 128
    assert settings.resolved_models_dir == tmp_path / "models"
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert Settings(max_length=64).max_length == 64
    assert Settings().resolved_base_model.endswith("model")
