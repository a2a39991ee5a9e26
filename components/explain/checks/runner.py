"""Running the trust checks ``explain.checks`` names, after the explanations they may use."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from components.data.reader import DatasetMeta
from components.explain.checks import CHECKS


@dataclass
class CheckContext:
    """What a check may use: the trained model and its checkpoint, the data, the settings, and
    the explanations computed before it (``explanations["post_hoc"]``: the ranked methods).

    Attributes:
        model: the trained model, in eval mode, on the CPU.
        checkpoint: its checkpoint folder.
        dataset_path: the dataset it was trained on; ``meta`` its metadata.
        config: the explain stage's :class:`~components.explain.config.ExplainConfig`;
            ``settings``: the check's own block (``explain.<check>``).
        seed: the run's seed.
        explanations: the stage's result so far.
        log: %-style logging (the Prefect run's logger in a flow).
        ray_address, ray_num_cpus: which Ray to join or start, for a check that fans out.
    """

    model: nn.Module
    checkpoint: Path
    dataset_path: Path
    meta: DatasetMeta
    config: Any
    seed: int = 0
    explanations: dict = field(default_factory=dict)
    log: Callable[..., Any] = lambda *args: None
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    settings: Mapping = field(default_factory=dict)


def check_module(name: str):
    """The module of check ``name``; ``ValueError`` listing the checks for an unknown one."""
    if name not in CHECKS:
        raise ValueError(f"explain.checks: unknown {name!r}; choose from {list(CHECKS)}")
    return importlib.import_module(f"components.explain.checks.{name}")


def validate_checks(names, blocks: Mapping[str, Mapping]) -> None:
    """``ValueError`` naming the key when a named check is unknown or its block is wrong."""
    for name in names:
        check_module(name).validate(dict(blocks.get(name) or {}))


def run_checks(context: CheckContext, names) -> dict[str, dict]:
    """Run each check of ``names`` in order; each result gets ``seconds``. A check's
    ``exclude_methods`` take those methods out of the chooser's recommendation."""
    results = {}
    for name in names:
        start = time.perf_counter()
        context.settings = dict(getattr(context.config, name) or {})
        result = check_module(name).run(context)
        result["seconds"] = time.perf_counter() - start
        context.log("check %s (%.1f s): %s", name, result["seconds"], result["verdict"])
        results[name] = result
    excluded = sorted({m for r in results.values() for m in r.get("exclude_methods", ())})
    if excluded and context.explanations.get("post_hoc"):
        exclude_from_recommendation(context.explanations["post_hoc"], excluded)
    return results


def exclude_from_recommendation(post_hoc: dict, excluded: list[str]) -> None:
    """Recommend the best-ranked method not in ``excluded`` (None when every one is), and
    record what was excluded (``post_hoc["excluded"]``)."""
    rows = post_hoc["ranking"]["rows"]
    post_hoc["excluded"] = excluded
    post_hoc["recommended"] = next((r["method"] for r in rows if r["method"] not in excluded), None)


def check_summaries(checks: Mapping[str, dict]) -> dict:
    """What ``checks.json`` holds: each check's verdict, summary and time."""
    return {
        name: {"verdict": r["verdict"], "summary": r.get("summary", {}), "seconds": r["seconds"]}
        for name, r in checks.items()
    }
