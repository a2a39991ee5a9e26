"""The layering rules of DESIGN.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)


def imported_roots(path: Path) -> set[str]:
    """Top-level module names imported anywhere in ``path`` (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
