"""The layering rules of DESIGN.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)


@cache
def syntax_tree(path: Path) -> ast.Module:
    """``path`` parsed once per session: every rule below walks the same files."""
    return ast.parse(path.read_text())


def imported_roots(path: Path) -> set[str]:
    """Top-level module names imported anywhere in ``path`` (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(syntax_tree(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("components/models"), ids=str)
def test_models_import_only_torch_and_numpy(path):
    # torchvision: the architectures of the ImageNet trunks (components/models/trunks.py)
    allowed = {"torch", "torchvision", "numpy", "components"}
    bad = {n for n in imported_roots(path) if n.split(".")[0] not in STDLIB | allowed}
    bad |= {
        n
        for n in imported_roots(path)
        if n.startswith("components.") and not n.startswith("components.models")
    }
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", modules("components"), ids=str)
def test_components_never_import_prefect_or_hydra(path):
    forbidden = {"prefect", "hydra", "omegaconf", "tasks", "flows"}
    bad = {n for n in imported_roots(path) if n.split(".")[0] in forbidden}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", modules("tasks"), ids=str)
def test_tasks_never_import_flows(path):
    bad = {n for n in imported_roots(path) if n.split(".")[0] == "flows"}
    assert not bad, f"{path} imports {bad}"


def test_the_rules_see_every_layer():
    assert modules("components/models") and modules("components") and modules("tasks")


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[str, str]]:
    """``(module, name)`` of every import in ``path`` (lazy and ``TYPE_CHECKING`` ones included):
    ``from a.b import c`` gives ``("a.b", "c")``, ``import a.b`` gives ``("a.b", "")``; relative
    imports are resolved against ``path``'s package under ``root``."""
    package = list(path.relative_to(root).parent.parts)
    found = []
    for node in ast.walk(syntax_tree(path)):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [(module, alias.name) for alias in node.names]
    return found


def component_node(dotted: str, root: Path = ROOT) -> str | None:
    """The node of the component graph a dotted name belongs to: ``components/<pkg>`` for a
    package, ``components/<name>.py`` for a top-level module (e.g. ``components/atomic.py``)."""
    parts = dotted.split(".")
    if parts[0] != "components" or len(parts) < 2 or parts[1] in ("", "__init__"):
        return None
    return f"components/{parts[1]}" + ("" if (root / "components" / parts[1]).is_dir() else ".py")


def module_node(dotted: str, root: Path = ROOT) -> str | None:
    """The file a dotted name lives in: its longest prefix that is a module (``a/b.py``) or a
    package (``a/b/__init__.py``) under ``root``, so ``components.models.create_model`` is
    ``components/models/__init__.py``; None for a name from outside ``root``."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:end])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return str(path.relative_to(root))
    return None


Node = Callable[[str, Path], str | None]


def import_graph(
    root: Path = ROOT, *, folder: str = "components", node: Node = component_node
) -> dict[str, dict[str, set[str]]]:
    """node -> imported node -> the files of ``node`` that import it, over the modules of
    ``folder`` and the imports that stay inside it (self-imports left out). ``node`` maps a
    dotted name to its node: :func:`component_node` (packages) or :func:`module_node` (files)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted((root / folder).rglob("*.py")):
        relative = path.relative_to(root)
        source = node(".".join(relative.with_suffix("").parts), root)
        if source is None:  # components/__init__.py belongs to no package node
            continue
        for module, name in imported_modules(path, root):
            target = node(f"{module}.{name}" if name else module, root)
            if target is not None and target != source and target.startswith(f"{folder}/"):
                graph.setdefault(source, {}).setdefault(target, set()).add(str(relative))
    return graph


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or [] when it has none (depth-first)."""
    state: dict[str, str] = {}  # node -> "open" while on the path, "done" once explored

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = "open"
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return []


def describe_cycle(graph: dict[str, dict[str, set[str]]], cycle: list[str]) -> str:
    """Each edge of ``cycle`` with the modules that make it."""
    return "\n".join(f"  {a} -> {b}: {', '.join(sorted(graph[a][b]))}" for a, b in pairwise(cycle))


def test_no_import_cycle_between_component_packages():
    graph = import_graph()
    assert "components/models" in graph.get("components/training", {})  # the graph sees edges
    cycle = find_cycle(graph)
    assert not cycle, "import cycle between components:\n" + describe_cycle(graph, cycle)


@pytest.mark.parametrize("folder", ["components", "tasks", "flows"])
def test_no_import_cycle_between_modules(folder):
    graph = import_graph(folder=folder, node=module_node)
    assert graph, f"the graph sees no import between the modules of {folder}/"
    cycle = find_cycle(graph)
    assert not cycle, f"import cycle between modules of {folder}/:\n" + describe_cycle(graph, cycle)


def test_the_checks_find_a_lazy_cycle_and_a_private_import(tmp_path):
    files = {
        "components/a/__init__.py": "",
        "components/a/one.py": "from components.b.two import f\nfrom .three import _g\n",
        "components/a/three.py": "if TYPE_CHECKING:\n    from components.a import one\n",
        "components/b/__init__.py": "",
        "components/b/two.py": "def f():\n    from components.a.one import _h\n",
        "components/atomic.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert find_cycle(graph) == ["components/a", "components/b", "components/a"]
    assert describe_cycle(graph, find_cycle(graph)).splitlines() == [
        "  components/a -> components/b: components/a/one.py",
        "  components/b -> components/a: components/b/two.py",
    ]
    modules_graph = import_graph(tmp_path, node=module_node)  # a cycle inside one package
    assert find_cycle(modules_graph) == [
        "components/a/one.py",
        "components/a/three.py",
        "components/a/one.py",
    ]
    assert private_imports(tmp_path / "components/b/two.py", tmp_path) == ["components.a.one._h"]
    assert private_imports(tmp_path / "components/a/one.py", tmp_path) == []  # its own package


def private_imports(path: Path, root: Path = ROOT) -> list[str]:
    """``module.name`` of each private name (``_name``) ``path`` imports from another node of
    the component graph."""
    source = component_node(".".join(path.relative_to(root).with_suffix("").parts), root)
    return [
        f"{module}.{name}"
        for module, name in imported_modules(path, root)
        if name.startswith("_") and component_node(module, root) not in (None, source)
    ]


def test_no_module_imports_a_private_name_of_another_component_package():
    offenders = {str(p.relative_to(ROOT)): private_imports(p) for p in modules("components")}
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"private names imported across component packages: {offenders}"


FRONT_ENDS = {"sennflow", "ops"}  # the CLI and the stack/serving: above flows/, never below


def front_end_imports(path: Path) -> set[str]:
    """The imports of ``path`` that reach into the CLI (``sennflow``) or ``ops``."""
    return {n for n in imported_roots(path) if n.split(".")[0] in FRONT_ENDS}


def test_flows_tasks_and_components_never_import_the_cli_or_ops(tmp_path):
    paths = [*modules("flows"), *modules("tasks"), *modules("components")]
    offenders = {str(p.relative_to(ROOT)): front_end_imports(p) for p in paths}
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"imports of sennflow/ops below them: {offenders}"
    assert modules("flows") and modules("sennflow") and modules("ops")
    lazy = tmp_path / "lazy.py"  # the rule sees a lazy import, as the CLI's would be
    lazy.write_text("def f():\n    from sennflow.cli import main\n    import ops.stack\n")
    assert front_end_imports(lazy) == {"sennflow.cli", "ops.stack"}
