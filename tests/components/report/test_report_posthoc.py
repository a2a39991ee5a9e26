"""The post-hoc part of the "Explanations" section: maps per method, metrics, ranking, surrogate."""

import re
from dataclasses import replace

import numpy as np
import pytest
from matplotlib.figure import Figure

from components.report import ReportData, write_report
from components.report.display import InputScale, draw_sample
from components.report.explanation_figures import attribution_figure
from components.report.posthoc_figures import posthoc_attribution_figure, ranking_figure
from components.report.posthoc_metrics import metric_table

METHODS = [
    "ig",
    "gradients",
    "gradient_x_input",
    "smoothgrad",
    "occlusion",
    "lime",
    "c_lime",
    "kernel_shap",
]
LABELS = {"ig": "Integrated Gradients", "kernel_shap": "Kernel SHAP", "c_lime": "C-LIME"}
CLASS_NAMES = ["zero", "one", "two<3"]
RANKED = ["kernel_shap", "ig", "occlusion", "lime", "smoothgrad", "gradient_x_input"]
RULES = "|--- feature_3 <= 0.5\n|   |--- class: <b>one</b>\n|--- feature_3 >  0.5"
ROW = re.compile(r'<tr(?: class="highlight")?><td class="num">(\d+)</td><td>([^<]*)</td>')
NUM = '<td class="num">{}</td>'


def _post_hoc(feature_shape: tuple[int, ...], num_samples: int = 2) -> dict:
    rng = np.random.default_rng(0)
    shape = (num_samples, *feature_shape)
    ranking_rows = [
        {
            "method": m,
            "mean": 0.5 - 0.05 * r,
            "ci_low": 0.45 - 0.05 * r,
            "ci_high": 0.55 - 0.05 * r,
            "p_best": 0.6 if r == 0 else 0.4 / (len(RANKED) - 1),
            "rank": r + 1,
        }
        for r, m in enumerate(RANKED)
    ]
    return {
        "methods": METHODS,
        "labels": LABELS,
        "sample_indices": [11, 4][:num_samples],
        "inputs": rng.normal(size=shape).tolist(),
        "predicted": [1, 2][:num_samples],
        "true": [1, 0][:num_samples],
        "attributions": {m: rng.normal(size=shape) for m in METHODS},
        "metrics": {
            m: {"pgi": 0.1 * i, "pgu": 1.0 - 0.1 * i, "sparseness": None, "custom": 2.0}
            for i, m in enumerate(METHODS)
        },
        "metric_directions": {"pgu": "lower"},
        "ranking": {
            "metric": "pgi",
            "higher_is_better": True,
            "num_samples": 64,
            "confidence": 0.95,
            "rows": ranking_rows[::-1],  # rendered by rank, whatever the order given
        },
        "recommended": "kernel_shap",
        "surrogate": {
            "kind": "tree",
            "fidelity": 0.93,
            "features": ["pixel 3,4", "pixel 2,2"],
            "rules": RULES,
            "top_k": 2,
        },
        "sp_lime": {"method": "lime", "picked": [12, 40, 7], "coverage": [0.3, 0.5, 0.6]},
        "timings": {m: 0.01 * (i + 1) for i, m in enumerate(METHODS)},
    }


def _data(feature_shape: tuple[int, ...], post_hoc: dict | None) -> ReportData:
    rng = np.random.default_rng(1)
    explanations = {
        "kind": "attribution",
        "samples": [{"index": 3, "true": 0, "predicted": 1}],
        "inputs": rng.normal(size=(1, *feature_shape)).tolist(),
        "attributions": rng.normal(size=(1, *feature_shape)).tolist(),
    }
    if post_hoc is not None:
        explanations["post_hoc"] = post_hoc
    return ReportData(
        title="post-hoc",
        run_id="run-ph",
        headline={},
        metrics={},
        history=[],
        config_yaml="model: mlp\n",
        meta={},
        data_meta={},
        explanations=explanations,
        class_names=CLASS_NAMES,
        feature_shape=feature_shape,
    )


def _explanations(page: str) -> str:
    return re.search(r"<section><h2>Explanations</h2>.*?</section>", page, re.S).group(0)


def _heat_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "RdBu_r"]


def test_report_shows_every_post_hoc_part(tmp_path):
    page = write_report(tmp_path, _data((1, 8, 8), _post_hoc((1, 8, 8)))).read_text("utf-8")
    section = _explanations(page)
    names = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert names == {"attributions", "posthoc_attributions", "posthoc_ranking"}
    for title in ("Post-hoc attributions", "Explanation metrics", "Choosing a method"):
        assert f"<h3>{title}</h3>" in section
    assert section.index("<h3>Attributions</h3>") < section.index("Post-hoc attributions")

    labels = [LABELS.get(m, m) for m in RANKED]
    assert ROW.findall(section) == [(str(r + 1), label) for r, label in enumerate(labels)]
    assert '<tr class="highlight"><td class="num">1</td><td>Kernel SHAP</td>' in section
    assert (
        "Recommended for this model and data: Kernel SHAP (highest mean PGI, 0.5 (95% CI "
        "[0.45, 0.55]), P(best) 0.6, over 64 test samples)." in section
    )
    assert "<th>95% CI</th>" in section

    assert "<h3>Surrogate model</h3>" in section
    assert "Fidelity (agreement with the model): 0.93" in section
    assert (
        "the model&#x27;s 2 most important features, most important first: pixel 3,4; pixel 2,2"
        in section
    )
    assert "|--- feature_3 &lt;= 0.5\n|   |--- class: &lt;b&gt;one&lt;/b&gt;" in section
    assert "<b>one</b>" not in page
    assert (
        NUM.format(12) + NUM.format(0.3) in section and NUM.format(7) + NUM.format(0.6) in section
    )
    assert "<h3>Time per method</h3>" in section
    assert "<td>C-LIME</td>" + NUM.format(0.07) in section


def test_metric_table_lists_every_method_and_shades_the_best_per_column():
    post_hoc = _post_hoc((1, 8, 8))
    table = metric_table(post_hoc)
    rows = re.findall(r"<tr><td>([^<]*)</td>(.*?)</tr>", table)
    assert [label for label, _ in rows] == [
        LABELS.get(m, m) + " (recommended)" * (m == "kernel_shap") for m in METHODS
    ]
    header = re.findall(r"<th>([^<]*)</th>", table)
    assert header == ["method", "PGI ↑", "PGU ↓", "Sparseness ↑", "custom"]
    shaded = [(label, cells) for label, cells in rows if "background" in cells]
    assert len(shaded) == 1 and shaded[0][0].startswith("Kernel SHAP")  # best PGI and PGU
    assert (
        shaded[0][1].count("background") == 2
    )  # no direction for custom, no values for sparseness
    assert NUM.format("n/a") in table and NUM.format(0.7) in table


def test_attribution_figure_has_one_heat_map_per_sample_and_method():
    fig = posthoc_attribution_figure(_post_hoc((1, 8, 8)), (1, 8, 8), CLASS_NAMES)
    assert len(fig.axes) == 2 * (len(METHODS) + 1)
    assert len(_heat_axes(fig)) == 2 * len(METHODS)
    assert [ax.get_title() for ax in fig.axes[1 : len(METHODS) + 1]] == [
        LABELS.get(m, m) for m in METHODS
    ]
    assert fig.axes[0].get_ylabel() == "#11\ntrue: one\npredicted: one"
    assert fig.axes[len(METHODS) + 1].get_ylabel() == "#4\ntrue: zero\npredicted: two<3"


def test_rgb_maps_sum_the_channels():
    post_hoc = _post_hoc((3, 4, 4), num_samples=1)
    fig = posthoc_attribution_figure(post_hoc, (3, 4, 4), CLASS_NAMES)
    heat = _heat_axes(fig)
    assert len(heat) == len(METHODS) and heat[0].images[0].get_array().shape == (4, 4)
    expected = np.asarray(post_hoc["attributions"]["ig"][0]).sum(axis=0)
    np.testing.assert_allclose(heat[0].images[0].get_array(), expected)


def test_tabular_samples_get_bar_charts_of_their_top_features(tmp_path):
    names = ["age", "bmi", "bp", "s1", "s2", "s3"]
    scale = InputScale.from_meta({"feature_names": names}, (6,))
    post_hoc = _post_hoc((6,)) | {"input_scale": scale}
    fig = posthoc_attribution_figure(post_hoc, (6,), CLASS_NAMES)
    assert len(fig.axes) == 2 * (len(METHODS) + 1) and not _heat_axes(fig)
    method_axes = [ax for i, ax in enumerate(fig.axes) if i % (len(METHODS) + 1)]
    assert all(len(ax.patches) == 6 for ax in method_axes)
    method_ax = method_axes[0]
    widths = [abs(p.get_width()) for p in method_ax.patches]
    assert widths == sorted(widths, reverse=True)  # largest magnitude on top
    assert {t.get_text() for t in method_ax.get_yticklabels()} == set(names)

    page = write_report(tmp_path, _data((6,), _post_hoc((6,)))).read_text("utf-8")
    assert (tmp_path / "figures" / "posthoc_attributions.png").exists()
    assert "Each method&#x27;s 10 largest attributions." in page


def test_a_table_s_features_are_named_in_the_data_section_figures_and_rules(tmp_path):
    names = ["age", "bmi", "blood <pressure>", "s1", "s2", "s3"]
    normalization = {"mean": [40.0, 25.0, 80.0, 0.0, 0.0, 0.0], "std": [12.0, 4.0, 9.0, 1, 1, 1]}
    data_meta = {"feature_names": names, "normalization": normalization}
    scale = InputScale.from_meta(data_meta, (6,))
    assert scale.feature_names == tuple(names)
    rng = np.random.default_rng(2)
    samples = [{"index": 1, "true": 0, "predicted": 1}, {"index": 2, "true": 1, "predicted": 1}]
    shown = rng.normal(size=(2, 6))
    shown[0, :3] = [1.0, -0.5, 0.0]  # age 52, bmi 23, blood pressure 80 in the data's units
    shown[0, 3] = np.float32(1e-9)  # float32 round-off of a 0: shown as 0
    fig = attribution_figure(samples, shown, rng.normal(size=(2, 6)), scale, [])
    labels = {t.get_text() for ax in fig.axes[1::2] for t in ax.get_yticklabels()}
    assert labels == set(names)  # Integrated Gradients' bars, by name
    inputs = fig.axes[0::2]
    named = [t.get_text() for t in inputs[0].get_yticklabels()]  # the sample, by name and value
    assert named[:3] == ["age = 52", "bmi = 23", "blood <pressure> = 80"]
    assert named[3] == "s1 = 0"
    assert named[4:] == [f"{n} = {v:.4g}" for n, v in zip(names[4:], shown[0, 4:], strict=True)]
    wide = InputScale.from_meta({"feature_names": [f"g{i}" for i in range(40)]}, (40,))
    ax = Figure().subplots()
    draw_sample(ax, np.ones(40), wide)  # too many to name: one upright bar each, as before
    labels = {t.get_text() for t in [*ax.get_xticklabels(), *ax.get_yticklabels()]}
    assert len(ax.patches) == 40 and "g0" not in labels
    assert InputScale.from_meta(data_meta, (2, 3)).feature_names is None  # not a flat row
    assert InputScale.from_meta({"feature_names": names[:5]}, (6,)).feature_names is None

    post_hoc = _post_hoc((6,))
    post_hoc["surrogate"] |= {"features": ["bmi"], "rules": "|--- bmi <= 31.5", "units": "data"}
    data = replace(_data((6,), post_hoc), data_meta=data_meta)
    page = write_report(tmp_path, data).read_text("utf-8")
    data_part = re.search(r"<section><h2>Data</h2>.*?</section>", page, re.S).group(0)
    assert "<h3>Features (6)</h3>" in data_part
    assert "<td>blood &lt;pressure&gt;</td>" in data_part and NUM.format("80.0000") in data_part
    assert "Its rules, in the data&#x27;s own units:" in _explanations(page)
    assert "Columns of words" not in data_part and "Missing values filled" not in data_part

    assert "Left out" not in data_part
    names[3:] = ["sex=female", "sex=male", "sex=other"]
    data_meta["categories"] = {"sex": ["female", "male", "other"]}
    data_meta["index_columns"] = ["", "__index_level_0__"]
    data_meta["filled_missing"] = {"bmi": 7}
    page = write_report(tmp_path / "words", data).read_text("utf-8")
    assert "Missing values filled (data.fill_missing)" in page
    assert "A column of words is one bar, its 0/1 features summed, named by the word." in page
    assert "<td>bmi</td>" + NUM.format(7) in page
    assert (
        "<p>Left out the column with no name, &#x27;__index_level_0__&#x27;: a saved row index, "
        "not data (name it in data.feature_columns to use it as a feature)</p>"
    ) in page
    assert (
        "<p>Columns of words (sex) are one 0/1 feature per word, named column=word; its train "
        "mean is the share of training rows with that word.</p>"
    ) in page


def test_a_word_column_s_attributions_are_one_bar_named_by_the_row_s_word():
    data_meta = {
        "feature_names": ["age", "sex=f", "sex=m", "bmi"],
        "categories": {"sex": ["f", "m"]},
        "normalization": {"mean": [40.0, 0.5, 0.5, 25.0], "std": [10.0, 0.5, 0.5, 5.0]},
    }
    scale = InputScale.from_meta(data_meta, (4,))
    assert scale.categories == (("sex", (1, 2)),)
    male = np.array([1.0, -1.0, 1.0, 0.0])  # age 50, sex m, bmi 25, standardised
    summed, names = scale.by_column([0.1, 0.2, 0.3, -0.4], male)
    np.testing.assert_allclose(summed, [0.1, 0.5, -0.4])
    assert names == ["age", "sex = m", "bmi"]
    unknown = np.array([1.0, -1.0, -1.0, 0.0])  # no word: a missing value filled
    assert scale.by_column(np.zeros(4), unknown)[1][1] == "sex = (none)"

    samples = [{"index": 1, "true": 0, "predicted": 1}]
    fig = attribution_figure(samples, male[None], np.array([[0.1, 0.2, 0.3, -0.4]]), scale, [])
    bars = fig.axes[1]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["sex = m", "bmi", "age"]
    assert [round(p.get_width(), 6) for p in bars.patches] == [0.5, -0.4, 0.1]
    post_hoc = {
        "inputs": male[None],
        "input_scale": scale,
        "attributions": {"lime": [[0.1, 0.2, 0.3, -0.4]]},
    }
    figure = posthoc_attribution_figure(post_hoc, (4,), ["no", "yes"])
    assert "sex = m" in {t.get_text() for t in figure.axes[1].get_yticklabels()}


def test_a_table_row_is_drawn_one_bar_per_column_a_word_column_named_by_its_word():
    words = [f"w{k}" for k in range(20)]  # 20 words: 22 features, 3 columns
    names = ["age", *(f"job={w}" for w in words), "income"]
    mean = np.array([40.0, *[0.05] * 20, 40000.0])
    std = np.array([10.0, *[0.2] * 20, 9000.0])
    data_meta = {
        "feature_names": names,
        "categories": {"job": words},
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
    }
    scale = InputScale.from_meta(data_meta, (22,))
    natural = np.zeros(22)
    natural[[0, 4, 21]] = [52.0, 1.0, 37390.2]  # age 52, job w3, income 37390
    row = ((natural - mean) / std).astype(np.float32)
    ax = Figure().subplots()
    draw_sample(ax, row, scale)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["age = 52", "job = w3", "income = 37390"]  # not 3.739e+04
    np.testing.assert_allclose([p.get_width() for p in ax.patches], row[[0, 4, 21]], rtol=1e-6)

    decoded = natural.copy()
    decoded[[4, 7]] = [0.3, 0.6]  # a decoded prototype: a mix of two words
    ax = Figure().subplots()
    draw_sample(ax, (decoded - mean) / std, scale)
    assert ax.get_yticklabels()[1].get_text() == "job = w6 (0.60)"
    decoded[[4, 7]] = 0.0  # no word at all
    assert scale.columns((decoded - mean) / std)[1][1] == "job = (none)"


@pytest.mark.parametrize(
    ("used", "said"),
    [
        (["pixel 2,2"], "It uses 1 of them: pixel 2,2."),
        (["pixel 3,4", "pixel 2,2"], "It uses all of them."),
        ([], "It uses none of them: it predicts one class everywhere."),
    ],
)
def test_the_surrogate_section_says_which_given_features_the_fit_uses(tmp_path, used, said):
    post_hoc = _post_hoc((1, 8, 8))
    post_hoc["surrogate"]["used"] = used
    page = write_report(tmp_path, _data((1, 8, 8), post_hoc)).read_text("utf-8")
    section = _explanations(page)
    assert "most important first: pixel 3,4; pixel 2,2.</p>" in section
    assert f"<p>{said}</p>" in section


def test_report_without_post_hoc_is_unchanged(tmp_path):
    plain = write_report(tmp_path / "a", _data((1, 8, 8), None)).read_text("utf-8")
    names = {p.stem for p in (tmp_path / "a" / "figures").glob("*.png")}
    assert names == {"attributions"}
    assert "Post-hoc" not in plain and "Recommended" not in plain
    with_post_hoc = write_report(tmp_path / "b", _data((1, 8, 8), _post_hoc((1, 8, 8))))
    # the model's own explanations come first, byte for byte as without post_hoc
    assert _explanations(with_post_hoc.read_text("utf-8")).startswith(
        _explanations(plain)[: -len("</section>")]
    )


def test_partial_post_hoc_renders_what_exists(tmp_path):
    full = _post_hoc((1, 8, 8))
    post_hoc = {k: full[k] for k in ("methods", "inputs", "attributions")}
    data = _data((1, 8, 8), post_hoc)
    # post-hoc only: no model-specific samples
    data = replace(data, explanations={"post_hoc": post_hoc})
    page = write_report(tmp_path, data).read_text("utf-8")
    names = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert names == {"posthoc_attributions"}
    assert "Post-hoc attributions" in page and "Choosing a method" not in page
    assert (
        "#0\ntrue: ?\npredicted: ?"
        in posthoc_attribution_figure(post_hoc, (1, 8, 8), CLASS_NAMES).axes[0].get_ylabel()
    )


@pytest.mark.parametrize(
    "post_hoc",
    [
        {"methods": ["ig"], "inputs": None, "attributions": {}},
        {"methods": ["ig"], "inputs": [[1.0] * 5], "attributions": {"ig": [[0.0] * 5]}},
        {"recommended": "ig", "ranking": {"rows": [{"method": "ig", "mean": None}]}},
        {"surrogate": {"kind": "tree"}, "sp_lime": {"picked": [3, 5], "coverage": 0.8}},
        {"metrics": {"ig": {"pgi": float("nan")}, "lime": {"pgi": "x"}}, "timings": {"ig": None}},
    ],
)
def test_odd_or_missing_parts_never_crash(tmp_path, post_hoc):
    page = write_report(tmp_path, _data((1, 8, 8), post_hoc)).read_text("utf-8")
    assert "<h2>Explanations</h2>" in page
    assert not (tmp_path / "figures" / "posthoc_ranking.png").exists()


def test_ranking_figure_marks_the_recommended_method():
    post_hoc = _post_hoc((1, 8, 8))
    fig = ranking_figure(post_hoc["ranking"], post_hoc)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [LABELS.get(m, m) for m in RANKED]
    assert "higher is better" in ax.get_xlabel()
    colours = [bars.lines[0].get_color() for bars in ax.containers]
    assert colours[0] == "#c0392b" and set(colours[1:]) == {"#4c8bc9"}
    assert ranking_figure({"rows": []}, post_hoc) is None
