"""The report's "Continual learning" section: scenario, metrics, R heat maps, schedule, FCL."""

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from components.continual.metrics import summary
from components.report import ReportData, write_report
from components.report.continual_figures import (
    accuracy_matrices_figure,
    as_matrix,
    learning_rate_figure,
)
from components.report.continual_section import continual_section
from components.report.figure_set import FigureSet

INLINE_PNG = re.compile(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"')
TASKS = [[3, 7], [0, 9], [1, 2]]
FINETUNE_R = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
NCM_R = [[0.99, 0.1, 0.0], [0.95, 0.9, 0.2], [0.9, 0.85, 0.95]]


def _method(R, wall_s, lrs=None, forward=None) -> dict:
    return {
        "R": R,
        "summary": summary(np.asarray(R)) | {"forward_transfer": forward},
        "wall_s": wall_s,
        "lrs": lrs,
    }


def _continual(federated: bool = True) -> dict:
    merged = [[0.98, 0.0, 0.0], [0.97, 0.93, 0.0], [0.95, 0.9, 0.92]]
    return {
        "dataset": "digits",
        "num_tasks": 3,
        "tasks": TASKS,
        "schedule": {"max_lr": 0.1, "const_lr": 0.05, "warmup_steps": 10},
        "methods": {
            "finetune": _method(FINETUNE_R, 3.2, lrs=[0.01, 0.1, 0.05, 0.05]),
            "ncm": _method(NCM_R, 1.5, lrs=[0.02, 0.08, 0.05], forward=-0.12),
        },
        "federated": {
            "num_clients": 2,
            "method": "ncm",
            "R_merged": merged,
            "R_clients": {
                "0": NCM_R,
                "1": [[0.9, None, None], [0.8, 0.7, math.nan], [0.7, 0.6, 0.5]],
                "2": [[0.9, 0.0, 0.0], [None, 0.7, 0.0], [0.7, 0.6, 0.5]],
            },
            "summary_merged": summary(np.asarray(merged)),
            "bytes_per_merge": [1200, 1400],
        }
        if federated
        else None,
    }


def _report_data(continual) -> ReportData:
    return ReportData(
        title="continual",
        run_id="run-cl",
        headline={},
        metrics={"accuracy": 0.9},
        history=[],
        config_yaml="continual:\n  tasks: 3\n",
        meta={},
        data_meta={},
        explanations=None,
        class_names=[str(k) for k in range(10)],
        feature_shape=(64,),
        continual=continual,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple:
    """The report of the full continual data, written once: (folder, page, section)."""
    folder = tmp_path_factory.mktemp("continual")
    page = write_report(folder, _report_data(_continual())).read_text(encoding="utf-8")
    return folder, page, _section(page)


def _section(page: str) -> str:
    return re.search(r"<section><h2>Continual learning</h2>.*?</section>", page, re.S).group(0)


def _cells(table: str, first: str) -> list[str]:
    row = re.search(rf"<tr[^>]*><td>{re.escape(first)}</td>(.*?)</tr>", table).group(1)
    return re.findall(r"<td[^>]*>([^<]*)</td>", row)


def test_section_names_the_scenario_and_defines_the_metrics(rendered):
    section = rendered[2]
    assert "Class-incremental learning on digits: 3 tasks" in section
    assert "task 0: 3, 7; task 1: 0, 9; task 2: 1, 2" in section
    assert "single head" in section and "no task id" in section
    assert "mean of the last row of R" in section
    assert "Chaudhry et al. 2018" in section and "b_j" in section


def test_metric_table_marks_the_best_method_and_renders_missing_values_as_na(rendered):
    section = rendered[2]
    table = re.search(
        r'<h3>Metrics per method</h3><div class="table-scroll">(<table>.*?</table>)', section
    ).group(1)
    ncm, finetune = _cells(table, "ncm"), _cells(table, "finetune")
    ncm_summary = _continual()["methods"]["ncm"]["summary"]
    assert ncm[0] == f"{ncm_summary['average_accuracy']:.4f} (best)"
    assert ncm[3] == "-0.1200 (best)"  # the only measured forward transfer
    assert ncm[4] == f"{ncm_summary['forgetting']:.4f} (best)"  # lowest forgetting
    assert ncm[5] == "1.5000 (best)"  # fastest
    assert finetune[0] == "0.3333" and finetune[3] == "n/a"  # forward transfer not measured
    assert '<tr class="highlight"><td>ncm</td>' in table
    assert "(best)" not in "".join(finetune)


def test_federated_table_compares_merged_and_clients(rendered):
    section = rendered[2]
    fcl = section.split("<h3>Federated continual learning</h3>")[1]
    assert "2 merges, 1300 bytes per merge on average, 2600 bytes in all." in fcl
    merged = _continual()["federated"]["summary_merged"]
    assert _cells(fcl, "merged")[0] == f"{merged['average_accuracy']:.4f}"
    assert _cells(fcl, "client 0")[0] == f"{summary(np.asarray(NCM_R))['average_accuracy']:.4f}"
    # unmeasured cells above the diagonal (tasks not yet trained) do not enter the metrics
    client_1 = summary(np.asarray([[0.9, 0.0, 0.0], [0.8, 0.7, 0.0], [0.7, 0.6, 0.5]]))
    assert _cells(fcl, "client 1")[:3] == [
        f"{client_1[k]:.4f}"
        for k in ("average_accuracy", "average_incremental_accuracy", "backward_transfer")
    ]
    assert set(_cells(fcl, "client 2")) == {"n/a"}  # R[1, 0], which the metrics read, is missing


def test_figures_are_written_and_inlined(rendered):
    folder, _, section = rendered
    names = {p.stem for p in (folder / "figures").glob("continual_*.png")}
    assert names == {"continual_accuracy_matrix", "continual_lr", "continual_federated_matrix"}
    assert all((folder / "figures" / f"{n}.png").read_bytes()[:4] == b"\x89PNG" for n in names)
    assert len(INLINE_PNG.findall(section)) == 3
    assert "max_lr" in section


def test_heat_maps_share_the_scale_and_leave_nan_cells_blank():
    fig = accuracy_matrices_figure({"a": FINETUNE_R, "b": [[0.5, None], [math.nan, 0.25]]}, TASKS)
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b")]
    assert [image.get_clim() for ax in panels for image in ax.images] == [(0.0, 1.0)] * 2
    assert [t.get_text() for t in panels[1].texts] == ["0.50", "0.25"]
    assert len(panels[0].texts) == 9
    assert panels[0].get_xticklabels()[0].get_text() == "0\n(3,7)"
    assert panels[1].get_xticklabels()[0].get_text() == "0"  # 2 columns: classes do not fit
    assert accuracy_matrices_figure({"a": [], "b": None}) is None
    assert as_matrix([[1.0], [0.5, None]]).shape == (2, 2)


def test_learning_rate_figure_draws_one_line_per_method_with_a_schedule():
    ax = learning_rate_figure({"a": [0.1, 0.05], "b": None, "c": [0.1, 1e-4, 1e-5]}).axes[0]
    assert [line.get_label() for line in ax.lines] == ["a", "c"]
    assert ax.get_yscale() == "log"  # spans four decades
    assert learning_rate_figure({"a": None}) is None


def test_minimal_continual_leaves_optional_parts_out(tmp_path):
    data = _continual(federated=False)
    data["schedule"] = None
    for result in data["methods"].values():
        result["lrs"] = None
    html = continual_section(data, FigureSet(tmp_path))
    assert "<h3>Metrics per method</h3>" in html
    assert "<h3>Learning-rate schedule</h3>" not in html
    assert "<h3>Federated continual learning</h3>" not in html
    assert {p.stem for p in tmp_path.glob("*.png")} == {"continual_accuracy_matrix"}


@pytest.mark.parametrize("continual", [None, {}])
def test_section_is_empty_without_data(tmp_path, continual):
    assert continual_section(continual, FigureSet(tmp_path)) == ""
    page = write_report(tmp_path, _report_data(continual)).read_text(encoding="utf-8")
    assert "<h2>Continual learning</h2>" not in page


def test_report_with_both_flows_has_both_sections(tmp_path):
    data = _report_data({"dataset": "digits", "tasks": TASKS, "methods": {}})
    federated = {"partition": "iid", "num_clients": 2, "rounds": 1, "strategies": {}}
    data = replace(data, federated=federated)
    page = write_report(tmp_path, data).read_text(encoding="utf-8")
    assert page.index("<h2>Federated learning</h2>") < page.index("<h2>Continual learning</h2>")
    assert page.index("<h2>Continual learning</h2>") < page.index("<h2>Data</h2>")
    # no single model was trained: no empty Training / Evaluation sections
    assert "<h2>Training</h2>" not in page and "<h2>Evaluation</h2>" not in page
