"""Security rules of issue 7 that hold for the whole tree.

- Hydra's ``_target_`` instantiation imports and calls whatever a config names, so a config (or a
  command-line override) could run arbitrary code. The project never instantiates from config:
  no config file holds ``_target_`` and no module calls ``hydra.utils.instantiate``/``call``;
  configs become typed dataclasses instead (``flows/config.py``).
- Checkpoints are read without unpickling code (``tests/components/training/
  test_training_checkpoint.py``), and every server the stack starts binds to 127.0.0.1
  (``tests/ops/test_ops_stack.py``).
- Credentials in URLs are masked wherever a config is saved, logged or shown (issue 14;
  ``components/redact.py``; the flows' side in ``tests/flows/test_flows_security.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from components.redact import redact_text

ROOT = Path(__file__).resolve().parent.parent
CODE = [
    p for folder in ("components", "tasks", "flows", "bench") for p in (ROOT / folder).rglob("*.py")
]


def keys(node) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in keys(v)}
    return set()


@pytest.mark.parametrize("path", sorted((ROOT / "conf").rglob("*.yaml")), ids=str)
def test_no_config_instantiates_objects(path):
    assert "_target_" not in keys(yaml.safe_load(path.read_text()) or {})


def instantiating_calls(path: Path) -> list[str]:
    """``instantiate``/``call`` imported from hydra, or ``hydra.utils.instantiate(...)``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hydra"):
            found += [a.name for a in node.names if a.name in ("instantiate", "call")]
        if isinstance(node, ast.Attribute) and node.attr == "instantiate":
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("path", sorted(CODE), ids=str)
def test_no_module_instantiates_from_config(path):
    assert not instantiating_calls(path)


def test_the_check_catches_an_instantiating_module(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from hydra.utils import instantiate\nx = hydra.utils.instantiate(cfg)\n")
    assert instantiating_calls(bad) == ["instantiate", "hydra.utils.instantiate"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://user:pa@ss@db:5432/x", "postgresql://user:***@db:5432/x"),
        ("s3://AKIA:wJal/rXU+tn@bucket/key", "s3://AKIA:***@bucket/key"),
        ("https://ghp_token@github.com/o/r", "https://***@github.com/o/r"),
        ("https://h/f?token=t&x=1&api_key=k", "https://h/f?token=***&x=1&api_key=***"),
        ("gs://b/o?X-Goog-Signature=ab&password=p", "gs://b/o?X-Goog-Signature=***&password=***"),
        (
            "in s3://k:s@b and http://127.0.0.1:5000/x",
            "in s3://k:***@b and http://127.0.0.1:5000/x",
        ),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_credentials_in_urls_are_masked(text, shown):
    assert redact_text(text) == shown


def test_the_dataset_cache_records_its_source_without_credentials():
    import numpy as np

    from components.data.spec import DataSpec
    from components.data.stats import Moments
    from components.data.writer import build_meta

    url = "s3://AKIAKEY:wJal/rXUtn@bucket/data.csv?X-Amz-Signature=abc123"
    meta = build_meta(
        spec=DataSpec(source="csv", path=url),
        fingerprint="f",
        feature_shape=(2,),
        class_names=("a", "b"),
        train_moments=Moments(count=2, mean=np.zeros(2), m2=np.ones(2)),
        row_counts={"train": 2},
        dropped_by_reason={},
    )
    assert meta["source"]["path"] == "s3://AKIAKEY:***@bucket/data.csv?X-Amz-Signature=***"
