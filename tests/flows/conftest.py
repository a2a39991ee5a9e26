"""Fixtures shared by the flow tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_run(tmp_path):
    """Hydra overrides for a run of the ``tiny`` experiment whose run folders and dataset cache
    are in the test's ``tmp_path``, followed by the ``extra`` ones given."""

    def overrides(*extra: str) -> list[str]:
        return [
            "experiment=tiny",
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={tmp_path / 'cache'}",
            *extra,
        ]

    return overrides
