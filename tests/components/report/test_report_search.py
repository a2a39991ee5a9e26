"""The report's "Search" section: trial table, figures, searched cell; absent without a search."""

import re
from dataclasses import replace

import numpy as np
import pytest

from components.report import ReportData, write_report
from components.report.posthoc_metrics import table as posthoc_table
from components.report.search_figures import (
    alphas_figure,
    edge_labels,
    genotype_figure,
    hyperparameter_figure,
    schedules_figure,
    sort_trials,
    trial_curves_figure,
)

PRIMITIVES = ["none", "skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3"]
GENOTYPE = {
    "normal": [
        ["sep_conv_3x3", 0],
        ["skip_connect", 1],
        ["max_pool_3x3", 0],
        ["sep_conv_3x3", 2],
        ["avg_pool_3x3", 1],
        ["skip_connect", 3],
    ],
    "reduce": [
        ["max_pool_3x3", 0],
        ["max_pool_3x3", 1],
        ["skip_connect", 2],
        ["avg_pool_3x3", 0],
        ["sep_conv_3x3", 3],
        ["max_pool_3x3", 1],
    ],
}
ROW = re.compile(r"<tr(?: class=\"highlight\")?><td>([^<]*)</td><td>([^<]*)</td>")


def _history(epochs: int, floor: float) -> list[dict]:
    return [
        {"epoch": e, "val_loss": floor + 1 / (e + 1), "val_accuracy": 0.9 - floor, "train_loss": 1}
        for e in range(epochs)
    ]


def _trial(name, status, lr, dropout, optimiser, val_loss, epochs, **extra) -> dict:
    return {
        "trial": name,
        "status": status,
        "config": {"train.lr": lr, "model.dropout": dropout, "train.optimizer": optimiser},
        "epochs": epochs,
        "val_loss": val_loss,
        "val_accuracy": None if val_loss is None else 1 - val_loss / 2,
        "history": _history(epochs, val_loss or 0.0),
        **extra,
    }


def _search() -> dict:
    trials = [
        _trial("trial_a", "done", 1e-4, 0.1, "adam", 0.5, 6, exploited=False),
        _trial("trial_b", "failed", 0.5, 0.3, "sgd", None, 0, error="ValueError: boom<1>"),
        _trial("trial_c", "done", 3e-3, 0.2, "sgd", 0.3, 6, exploited=True),
        _trial("trial_d", "stopped early", 0.1, 0.5, "adam", 1.2, 2),
        _trial("trial_e", "done", 1e-2, 0.0, "adam", 0.4, 6),
    ]
    schedules = {
        name: [
            {"epoch": e, "dropout": 0.5 - 0.05 * e, "weight_decay": 1e-4 * 3**e, "noise": 0.1}
            | {"shift": e % 3, "shift_probs": [0.3, 0.7], "scale_dropout": 0.5}
            for e in range(4)
        ]
        for name in ("trial_a", "trial_c")
    }
    weights = np.random.default_rng(0).random((2, 9, len(PRIMITIVES)))  # 9 edges: 3 nodes
    weights /= weights.sum(-1, keepdims=True)
    alphas = {"normal": weights[0].tolist(), "reduce": weights[1].tolist()}
    return {
        "method": "pbt",
        "metric": "val_loss",
        "mode": "min",
        "experiment_path": "/runs/search/exp",
        "trials": trials,
        "best": {"trial": "trial_c", "config": trials[2]["config"], "val_loss": 0.3},
        "schedules": schedules,
        "genotype": GENOTYPE,
        "alphas": alphas,
        "primitives": PRIMITIVES,
    }


def _report_data(search: dict | None) -> ReportData:
    return ReportData(
        title="sweep",
        run_id="run-1",
        headline={"test_accuracy": 0.9},
        metrics={"accuracy": 0.9},
        history=_history(3, 0.2),
        config_yaml="search:\n  method: pbt\n",
        meta={"seed": 0},
        data_meta={"row_counts": {"train": 10}},
        explanations=None,
        class_names=["a", "b"],
        feature_shape=(4,),
        search=search,
    )


def _search_html(page: str) -> str:
    return re.search(r"<section><h2>Search</h2>.*?</section>", page, re.S).group(0)


def test_search_section_lists_trials_best_first_and_failed_last(tmp_path):
    page = write_report(tmp_path, _report_data(_search())).read_text(encoding="utf-8")
    section = _search_html(page)
    assert page.index("<h2>Headline</h2>") < page.index("<h2>Search</h2>")
    assert page.index("<h2>Search</h2>") < page.index("<h2>Data</h2>")
    assert "pbt" in section and "Population Based Training" in section
    assert "/runs/search/exp" in section

    rows = ROW.findall(section.split("<h3>Trials</h3>")[1])
    names = [name for name, _ in rows]
    assert names == ["trial_c (best)", "trial_e", "trial_a", "trial_d", "trial_b"]
    assert dict(rows)["trial_b"] == "failed"
    assert '<tr class="highlight"><td>trial_c (best)</td>' in section
    assert "ValueError: boom&lt;1&gt;" in section  # the error, escaped
    header = re.search(
        r'<h3>Trials</h3><div class="table-scroll"><table><thead>(.*?)</thead>', section
    ).group(1)
    for column in ("train.lr", "model.dropout", "train.optimizer", "epochs", "exploited", "error"):
        assert f"<th>{column}</th>" in header


@pytest.mark.parametrize("retrained", [True, False])
def test_the_summary_says_whether_the_pick_was_retrained(tmp_path, retrained):
    search = _search() | {"retrained": retrained}
    section = _search_html(write_report(tmp_path, _report_data(search)).read_text("utf-8"))
    said = "The best configuration was retrained; the sections below describe that model."
    assert (said in section) is retrained
    assert ("was not retrained (search.retrain=false)" in section) is not retrained


def test_a_search_without_retrain_shows_no_training_or_metrics_sections(tmp_path):
    search = _search() | {"retrained": False}
    data = replace(_report_data(search), metrics={}, history=[])
    page = write_report(tmp_path, data).read_text("utf-8")
    assert "<h2>Search</h2>" in page and "<h2>Data</h2>" in page
    assert "<h2>Training</h2>" not in page and "No training history" not in page
    assert "<h2>Evaluation</h2>" not in page and "<h2>Explanations</h2>" not in page


@pytest.mark.parametrize("epoch", [4, 6])
def test_a_best_trial_selected_before_its_last_epoch_is_said_so(tmp_path, epoch):
    search = _search()
    search["best"] |= {"epoch": epoch, "val_loss": 0.28}
    section = _search_html(write_report(tmp_path, _report_data(search)).read_text("utf-8"))
    note = "selected on its best val_loss, at epoch 4 of 6 (the Best trial table)"
    assert (note in section) == (epoch == 4)
    best = section.split("<h3>Best trial</h3>")[1].split("</table>")[0]
    assert f'<td>epoch</td><td class="num">{epoch}</td>' in best


def test_search_figures_are_written_and_inlined(tmp_path):
    write_report(tmp_path, _report_data(_search()))
    names = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    search_figures = {
        "search_hyperparameters",
        "search_trial_curves",
        "search_schedules",
        "search_genotype",
        "search_alphas",
    }
    assert search_figures <= names
    assert all((tmp_path / "figures" / f"{n}.png").read_bytes()[:4] == b"\x89PNG" for n in names)


def test_report_without_search_has_no_search_section(tmp_path):
    page = write_report(tmp_path, _report_data(None)).read_text(encoding="utf-8")
    assert "<h2>Search</h2>" not in page
    assert not list((tmp_path / "figures").glob("search_*.png"))


def test_minimal_search_renders_table_only(tmp_path):
    trials = [{"trial": "t0", "status": "failed", "config": {}, "error": "boom"}]
    page = write_report(tmp_path, _report_data({"method": "random", "trials": trials}))
    section = _search_html(page.read_text(encoding="utf-8"))
    assert "<td>t0</td><td>failed</td>" in section and "boom" in section
    assert not list((tmp_path / "figures").glob("search_*.png"))


def test_every_table_scrolls_sideways_in_its_own_box_not_the_page(tmp_path):
    config = {f"model.params.hyperparameter_{i}": 0.001 * i for i in range(30)}
    trials = [{"trial": f"t{i}", "status": "done", "config": config} for i in range(3)]
    page = write_report(tmp_path, _report_data({"method": "random", "trials": trials}))
    html = page.read_text(encoding="utf-8") + posthoc_table(("method", "a"), [("ig", 0.5)])
    header = re.search(
        r"<h3>Trials</h3><div class=\"table-scroll\"><table><thead>(.*?)</thead>", html
    )
    assert header.group(1).count("<th>model.params.hyperparameter_") == 30
    tables = html.count("<table>")
    assert tables >= 4  # headline, trials, data rows, posthoc
    assert html.count('<div class="table-scroll"><table>') == tables
    assert html.count("</table></div>") == tables
    assert re.search(r"\.table-scroll \{[^}]*overflow-x: auto", html)


def _texts(fig) -> list[str]:
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def test_genotype_figure_labels_every_edge_with_its_op():
    fig = genotype_figure(GENOTYPE)
    labels = [t for t in _texts(fig) if t in PRIMITIVES]
    expected = [op for cell in ("normal", "reduce") for op, _ in GENOTYPE[cell]]
    assert sorted(labels) == sorted(expected)
    # one arrow per labelled edge plus one concat arrow per intermediate node, per cell
    arrows = [t for ax in fig.axes for t in ax.texts if t.get_text() == ""]
    assert len(arrows) == len(expected) + 2 * 3


def test_genotype_figure_draws_only_the_cells_given_and_skips_bad_edges():
    fig = genotype_figure({"normal": [["skip_connect", 0], ["sep_conv_3x3", 5]]})
    assert len(fig.axes) == 1
    assert [t for t in _texts(fig) if t in PRIMITIVES] == ["skip_connect"]
    assert genotype_figure({}) is None


def test_alphas_figure_labels_edges_and_primitives():
    weights = np.full((5, 3), 1 / 3)  # 2 + 3 mixed edges: a cell of two nodes
    fig = alphas_figure({"normal": weights.tolist()}, ["none", "skip_connect", "max_pool_3x3"])
    heat_map = fig.axes[0]
    assert [t.get_text() for t in heat_map.get_xticklabels()][-1] == "max_pool_3x3"
    assert [t.get_text() for t in heat_map.get_yticklabels()][-1] == "0 → 1"
    assert edge_labels(4) == [f"edge {i}" for i in range(4)]  # fits no cell
    unnamed = alphas_figure({"reduce": weights.tolist()})
    assert [t.get_text() for t in unnamed.axes[0].get_xticklabels()][0] == "op 0"
    assert alphas_figure({}) is None


def test_sort_trials_by_mode_with_unscored_and_failed_last():
    trials = [
        {"trial": "f", "status": "failed", "val_accuracy": 0.99},
        {"trial": "n", "status": "done"},
        {"trial": "lo", "status": "done", "val_accuracy": 0.5},
        {"trial": "hi", "status": "stopped early", "val_accuracy": 0.9},
    ]
    ranked = [t["trial"] for t in sort_trials(trials, "val_accuracy", "max")]
    assert ranked == ["hi", "lo", "n", "f"]
    ranked = [t["trial"] for t in sort_trials(trials, "val_accuracy", "min")]
    assert ranked == ["lo", "hi", "n", "f"]


def test_hyperparameter_figure_uses_log_axis_for_wide_ranges_and_categories():
    trials = _search()["trials"]
    fig = hyperparameter_figure(trials, "val_loss", best="trial_c")
    scales = {ax.get_xlabel(): ax.get_xscale() for ax in fig.axes if ax.get_visible()}
    assert scales == {"train.lr": "log", "model.dropout": "linear", "train.optimizer": "linear"}
    optimiser = next(ax for ax in fig.axes if ax.get_xlabel() == "train.optimizer")
    assert [t.get_text() for t in optimiser.get_xticklabels()] == ["adam", "sgd"]
    # four scored trials (the failed one is skipped) plus the best trial's star
    assert sum(len(c.get_offsets()) for c in optimiser.collections) == 5
    assert hyperparameter_figure([{"trial": "x", "status": "failed"}], "val_loss") is None


@pytest.mark.parametrize("best", ["trial_c", None])
def test_curves_and_schedules_draw_one_line_per_trial(best):
    search = _search()
    curves = trial_curves_figure(search["trials"], "val_loss", best)
    assert [ax.get_ylabel() for ax in curves.axes] == ["val_loss", "val_accuracy"]
    # 4 trials with history, plus the x that ends the early-stopped one
    assert len(curves.axes[0].lines) == 5
    schedules = schedules_figure(search["schedules"], best)
    titles = [ax.get_title() for ax in schedules.axes if ax.get_visible()]
    assert titles == ["dropout", "weight_decay", "noise", "shift", "scale_dropout"]
    assert all(len(ax.lines) == 2 for ax in schedules.axes if ax.get_visible())
    assert trial_curves_figure([{"trial": "x", "history": []}]) is None
    assert schedules_figure({"x": [{"epoch": 0, "shift_probs": [1.0]}]}) is None


def test_tables_name_a_tune_trial_by_its_index_and_the_best_one_by_its_folder_too(tmp_path):
    from components.report.figure_set import FigureSet
    from components.report.search_section import search_section, trial_table

    folders = [
        f"fit_trial_2958b_0000{i}_{i}_train_lr={lr},train_weight_decay=0.0000_2026-12-05_07-48-32"
        for i, lr in ((0, "0.0043"), (1, "0.0100"))
    ]
    trials = [
        {"trial": name, "status": "done", "config": {"train.lr": lr}, "val_loss": loss}
        | {"exploited": False}
        for name, lr, loss in zip(folders, (0.0043, 0.01), (0.2, 0.5), strict=True)
    ]
    table = trial_table(trials, "val_loss", folders[0])
    names = [name for name, _ in ROW.findall(table)]
    assert names == ["trial 0 (best)", "trial 1"]  # the folder names made the table scroll
    assert "exploited" not in table  # a column of "no": no trial copied another's weights
    search = {"method": "asha", "trials": trials, "best": {"trial": folders[0], "epoch": 3}}
    best = search_section(search, FigureSet(tmp_path)).split("<h3>Trials</h3>")[0]
    assert "<td>trial 0</td>" in best and f"<td>{folders[0]}</td>" in best


def test_legends_name_a_tune_trial_by_its_index_not_its_whole_folder_name():
    from components.report.search_figures import short_trial_name

    folder = "fit_trial_2958b_00005_5_train_lr=0.0043,train_weight_decay=0.0000_2026-12-05_07-48-32"
    assert short_trial_name(folder) == "trial 5"
    assert short_trial_name("t1") == "t1"  # not a Tune folder name: kept
