"""Shared fixtures of the explain tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from components.report import ReportData, write_report


@pytest.fixture
def post_hoc_html(tmp_path) -> Callable[..., str]:
    """``render(post_hoc, class_names, feature_shape)``: the HTML of a report showing only
    ``post_hoc`` (written, with its figures, under ``tmp_path``)."""

    def render(post_hoc: dict, class_names: Sequence[str], feature_shape: tuple) -> str:
        data = ReportData(
            title="post-hoc",
            run_id="r",
            headline={},
            metrics={},
            history=[],
            config_yaml="",
            meta={},
            data_meta={},
            explanations={"post_hoc": post_hoc},
            class_names=list(class_names),
            feature_shape=feature_shape,
        )
        return write_report(tmp_path, data).read_text()

    return render
