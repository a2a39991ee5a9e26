"""Inputs and prototypes drawn in their natural scale, prototype regions on images and signals,
class names in every figure and table, the data table of the source used."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle
from sklearn.datasets import load_digits

from components.data.spec import DataSpec
from components.explain import explain_model
from components.models import create_model
from components.report import ReportData, prototype_figures, prototype_section, write_report
from components.report.display import InputScale, draw_sample
from components.report.figures import confusion_matrix_figure, wrap_label
from components.report.page import input_scale
from components.report.posthoc_figures import posthoc_attribution_figure
from components.report.prototype_figures import gallery_pages, sample_explanations_figure
from components.report.prototype_section import gallery_parts

LONG_NAMES = ["red_square+green_disc", "Black_footed_Albatross", "c"]


def _texts(fig: Figure) -> str:
    """Every piece of text drawn in ``fig``: titles, axis labels, tick labels."""
    parts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return "\n".join(p for p in parts if p)


def _report_data(data_meta: dict, explanations=None, class_names=("a", "b"), shape=(1, 8, 8)):
    return ReportData(
        title="t",
        run_id="r",
        headline={},
        metrics={},
        history=[],
        config_yaml="",
        meta={},
        data_meta=data_meta,
        explanations=explanations,
        class_names=list(class_names),
        feature_shape=shape,
    )


@pytest.fixture(scope="module")
def digits():
    """Raw digits (0..16), standardised per pixel as ingest does, and a proto_ae explained."""
    raw = load_digits().data[:80].astype(np.float32)
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    std[std == 0] = 1.0
    x = ((raw - mean) / std).reshape(-1, 1, 8, 8)
    y = load_digits().target[:80]
    torch.manual_seed(0)
    model = create_model("proto_ae", input_shape=(1, 8, 8), num_classes=10, tiny=True)
    result = explain_model(model, x, y, num_samples=3, top_k=2, ig_steps=2)
    meta = {"normalization": {"mean": mean.tolist(), "std": std.tolist()}}
    return raw, mean, std, result, meta


def test_digits_inputs_and_decoded_prototypes_are_drawn_in_grey_levels_0_to_16(digits):
    raw, mean, std, result, meta = digits
    scale = input_scale(_report_data(meta, result, [str(k) for k in range(10)]))
    shown = raw[result["indices"]]
    assert (shown.min(), shown.max()) == (0.0, 16.0)
    assert scale.value_range == pytest.approx((0.0, 16.0), abs=1e-5)

    page = gallery_pages(result["gallery"], scale, [str(k) for k in range(10)])[0][0]
    prototype = result["gallery"]["images"][int(page.figure.axes[0].get_title()[1:])]
    natural = prototype.reshape(64) * std + mean
    drawn = page.figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(drawn, np.clip(natural / 16, 0, 1).reshape(8, 8), atol=1e-6)

    fig = sample_explanations_figure(
        result["samples"], result["inputs"], result["gallery"], scale, []
    )
    np.testing.assert_allclose(
        fig.axes[0].images[0].get_array(), shown[0].reshape(8, 8) / 16, atol=1e-5
    )


def test_rgb_images_are_de_normalised_per_channel_and_clipped_to_0_1():
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.1])
    pixels = np.random.default_rng(0).uniform(0, 1, (3, 4, 4))
    pixels[0, 0, 0] = 1.4  # brighter than white after a colour jitter: clipped
    x = (pixels - mean[:, None, None]) / std[:, None, None]
    meta = {"kind": "image", "normalization": {"mean": mean.tolist(), "std": std.tolist()}}
    scale = InputScale.from_meta(meta, (3, 4, 4))
    ax = Figure().subplots()
    draw_sample(ax, x, scale)
    expected = np.transpose(np.clip(pixels, 0, 1), (1, 2, 0))
    np.testing.assert_allclose(ax.images[0].get_array(), expected, atol=1e-6)


def test_the_data_table_shows_the_used_source_keys_and_the_dropped_image_files(tmp_path):
    digits_meta = {"source": DataSpec().to_dict(), "feature_shape": [1, 8, 8]}
    page = write_report(tmp_path / "d", _report_data(digits_meta)).read_text()
    assert "<td>source</td><td>digits</td>" in page
    assert "<td>feature_shape</td><td>1, 8, 8</td>" in page
    for key in ("image_size", "path", "num_features", "class_sep", "label_column"):
        assert f"<td>{key}</td>" not in page
    assert "Rows dropped during validation: 0" in page
    assert "<td>test_fraction</td>" in page  # a seeded split: both fractions were used

    spec = DataSpec(
        source="image_folder", path="/data/birds", drop_invalid=True, normalization="imagenet"
    ).to_dict()
    image_meta = {
        "source": spec,
        "kind": "image",
        "layout": "split folders",
        "fixed_splits": ["train", "test"],  # val/ absent: carved out of train
        "image_size": 224,
        "normalization": {"mean": [0.4, 0.5, 0.6], "std": [0.2] * 3, "source": "imagenet"},
        "ignored_files": 3,
        "dropped_rows": 2,
        "dropped_files": [
            {"path": "wren/broken.jpg", "reason": "truncated JPEG"},
            {"path": "jay/empty.png", "reason": "zero-byte file"},
        ],
    }
    page = write_report(tmp_path / "i", _report_data(image_meta)).read_text()
    for row in (
        "<td>path</td><td>/data/birds</td>",
        "<td>layout</td><td>split folders</td>",
        '<td>image_size</td><td class="num">224</td>',
        "<td>normalization</td><td>imagenet</td>",
        '<td>ignored_files</td><td class="num">3</td>',
        "<tr><td>wren/broken.jpg</td><td>truncated JPEG</td></tr>",
        "<tr><td>jay/empty.png</td><td>zero-byte file</td></tr>",
    ):
        assert row in page
    assert "<td>num_classes</td>" not in page and "Dropped files (2)" in page
    assert "<td>test_fraction</td>" not in page and "<td>val_fraction</td>" in page
    assert "<td>normalization.source</td>" not in page  # the same as normalization: once
    assert "Image files dropped during validation: 2" in page
    assert "Duplicate images" not in page

    image_meta["duplicates"] = {
        "across_splits": 1,
        "across_splits_examples": [["test/jay/a.jpg", "train/jay/b.jpg"]],
        "across_classes": 1,
        "across_classes_examples": [["train/jay/c.jpg (jay)", "train/wren/c.jpg (wren)"]],
    }
    page = write_report(tmp_path / "dup", _report_data(image_meta)).read_text()
    section = page[page.index("<h3>Duplicate images</h3>") :]
    assert "<p>1 val/test image is byte-identical to an image of an earlier split" in section
    assert "<tr><td>test/jay/a.jpg</td><td>train/jay/b.jpg</td></tr>" in section
    assert "<tr><td>train/jay/c.jpg (jay); train/wren/c.jpg (wren)</td></tr>" in section


def test_long_class_names_wrap_on_two_lines_and_name_the_confusion_matrix_axes():
    assert wrap_label("red_square+green_disc") == "red_square+\ngreen_disc"
    assert wrap_label("a" * 40) == "a" * 16 + "\n" + "a" * 15 + "\u2026"
    texts = _texts(confusion_matrix_figure([[3, 1, 0], [0, 2, 2], [1, 0, 4]], LONG_NAMES))
    for name in LONG_NAMES:
        assert wrap_label(name) in texts


def _signal_explanations():
    """A hand-made explanation of a 2-prototype model on 2-channel signals of length 40."""
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((2, 2, 40))
    prototype = {"index": 1, "class": 1, "distance": 0.5, "similarity": 2.0, "contribution": 1.5}
    samples = [
        {
            "index": 7 + row,
            "true": 1,
            "predicted": 1,
            "logit": 1.5,
            "bias": 0.0,
            "total_contribution": 1.5,
            "decomposition_error": 0.0,
            "prototypes": [{**prototype, "box": [0, 10 + row, 1, 8]}],
        }
        for row in range(2)
    ]
    gallery = {
        "images": rng.standard_normal((2, 2, 40)),
        "classes": [0, 1],
        "samples": [3, 4],
        "boxes": [(0, 0, 1, 12), (0, 20, 1, 12)],
        "maps": rng.standard_normal((2, 1, 10)),
    }
    return {"kind": "prototype", "samples": samples, "inputs": inputs, "gallery": gallery}


def test_signals_are_drawn_as_lines_with_the_prototype_segments_highlighted():
    explanations = _signal_explanations()
    scale = input_scale(_report_data({}, explanations, LONG_NAMES, shape=(2, 40)))
    fig = sample_explanations_figure(
        explanations["samples"], explanations["inputs"], explanations["gallery"], scale, LONG_NAMES
    )
    sample_ax, this_ax, that_ax = [a for a in fig.axes if a.axison][:3]
    assert len(sample_ax.lines) == 2  # one line per channel
    (band,) = [p for p in sample_ax.patches if isinstance(p, Polygon | Rectangle)]
    assert band.get_x() == 9.5 and band.get_width() == 8  # positions 10..17
    np.testing.assert_allclose(this_ax.lines[0].get_xdata(), np.arange(10, 18))
    np.testing.assert_allclose(
        that_ax.lines[0].get_ydata(), explanations["gallery"]["images"][1, 0, 20:32]
    )
    (page,), _ = gallery_pages(explanations["gallery"], scale, LONG_NAMES)
    source_ax = page.figure.axes[2]  # prototype 1: its source signal, then its segment
    (band,) = [p for p in source_ax.patches if isinstance(p, Polygon | Rectangle)]
    assert (band.get_x(), band.get_width()) == (19.5, 12)


def test_a_large_gallery_is_paged_by_whole_classes_and_capped(monkeypatch):
    monkeypatch.setattr(prototype_figures, "PAGE_LINES", 3)
    rng = np.random.default_rng(0)
    names = [f"Species_{k:03d}_of_the_northern_hemisphere" for k in range(20)]
    gallery = {
        "images": rng.standard_normal((200, 3, 8, 8)),
        "classes": np.repeat(np.arange(20), 10).tolist(),
        "boxes": [(1, 2, 3, 4)] * 200,
        "maps": rng.standard_normal((200, 2, 2)),
    }
    pages, shown = gallery_pages(gallery, InputScale((3, 8, 8)), names, limit=35)
    assert shown == 30  # whole classes: a fourth would pass the limit
    # 5 prototypes (source and crop) per line, 2 lines per class, 3 lines per page
    assert [p.num_prototypes for p in pages] == [15, 15]
    assert [len(p.figure.axes) for p in pages] == [30, 30]
    assert [p.classes for p in pages] == [names[0:2], names[2:3]]
    texts = _texts(pages[0].figure)
    assert wrap_label(names[0]) in texts and wrap_label(names[1]) + "\n(cont.)" not in texts
    boxes = [p for p in pages[0].figure.axes[0].patches if isinstance(p, Rectangle)]
    assert [(b.get_y(), b.get_x(), b.get_height(), b.get_width()) for b in boxes] == [
        (0.5, 1.5, 3, 4)
    ]

    class Captions:
        def add(self, name, fig, caption):
            return f"{name}: {caption}"

    monkeypatch.setattr(prototype_section, "GALLERY_LIMIT", 35)
    parts = gallery_parts(gallery, InputScale((3, 8, 8)), names, Captions())
    assert "showing 30 of 200 prototypes" in parts[1]
    assert parts[2].startswith("prototype_gallery_2: ") and "Page 2 of 2" in parts[2]


def test_class_names_appear_in_the_explanation_figures_and_tables(tmp_path):
    torch.manual_seed(0)
    model = create_model("protopnet", input_shape=(3, 16, 16), num_classes=3, tiny=True)
    x, y = torch.randn(12, 3, 16, 16), torch.arange(12) % 3
    model.pushed[:] = True
    model.push_sample[:] = torch.arange(len(model.pushed))
    result = explain_model(
        model, x, y, num_samples=3, top_k=2, ig_steps=2, pushed_images=x[model.push_sample]
    )
    result["post_hoc"] = {
        "methods": ["ig"],
        "inputs": result["inputs"],
        "attributions": {"ig": result["attributions"]},
        "true": [s["true"] for s in result["samples"]],
        "predicted": [s["predicted"] for s in result["samples"]],
        "sample_indices": result["indices"],
    }
    data = _report_data({}, result, LONG_NAMES, shape=(3, 16, 16))
    tables_only = {**result, "attributions": None, "gallery": None, "post_hoc": None}
    page = write_report(
        tmp_path, _report_data({}, tables_only, LONG_NAMES, (3, 16, 16))
    ).read_text()
    assert all(f"<td>{name}</td>" in page for name in LONG_NAMES[:2])
    scale = input_scale(data)
    gallery_text = _texts(gallery_pages(result["gallery"], scale, LONG_NAMES)[0][0].figure)
    samples_text = _texts(
        sample_explanations_figure(
            result["samples"], result["inputs"], result["gallery"], scale, LONG_NAMES
        )
    )
    posthoc_text = _texts(posthoc_attribution_figure(result["post_hoc"], (3, 16, 16), LONG_NAMES))
    for name in LONG_NAMES:
        assert wrap_label(name) in gallery_text
    shown = {LONG_NAMES[s["predicted"]] for s in result["samples"]}
    shown |= {LONG_NAMES[p["class"]] for s in result["samples"] for p in s["prototypes"]}
    for name in shown:
        assert wrap_label(name) in samples_text.replace("\n  ", "\n")
    for sample in result["samples"]:
        assert wrap_label(LONG_NAMES[sample["true"]]) in posthoc_text.replace("\n  ", "\n")


def test_federated_clients_and_continual_tasks_list_class_names(tmp_path):
    federated = {"partition": "iid", "clients": [{"client": 0, "samples": 5, "classes": [0, 1]}]}
    continual = {"dataset": "parts", "tasks": [[0, 1], [2]], "methods": {}}
    data = _report_data({}, class_names=LONG_NAMES)
    data = replace(data, federated=federated, continual=continual)
    page = write_report(tmp_path, data).read_text()
    assert "<td>red_square+green_disc, Black_footed_Albatross</td>" in page
    assert "task 0: red_square+green_disc, Black_footed_Albatross; task 1: c" in page
