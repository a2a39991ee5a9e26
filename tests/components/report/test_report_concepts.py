"""The report's concept maps for concept models (cct): built from a tiny model's real output,
one panel per concept over each explained image, the maps summing to 1 at every token."""

import numpy as np
import torch

from components.explain import explain_model
from components.models import create_model
from components.report import ReportData, write_report
from components.report.concept_section import concept_maps_figure, shown_concepts
from components.report.page import input_scale

CLASSES = ["red_square", "green_disc", "blue_bar"]


def _explained_cct():
    """A tiny cct (4 concepts, 4x4 token grid on 16x16 RGB images) explained on 3 samples."""
    torch.manual_seed(0)
    model = create_model("cct", input_shape=(3, 16, 16), num_classes=3, tiny=True)
    x = torch.randn(9, 3, 16, 16).numpy()
    y = np.arange(9) % 3
    return model, explain_model(model, x, y, num_samples=3, ig_steps=2, class_names=CLASSES)


def _report_data(explanations) -> ReportData:
    return ReportData(
        title="t",
        run_id="r",
        headline={},
        metrics={},
        history=[],
        config_yaml="",
        meta={},
        data_meta={
            "kind": "image",
            "normalization": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]},
        },
        explanations=explanations,
        class_names=CLASSES,
        feature_shape=(3, 16, 16),
    )


def test_a_cct_report_draws_one_map_per_concept_over_each_explained_image(tmp_path):
    model, result = _explained_cct()
    maps = result["concept_maps"]
    k = model.config.num_concepts
    assert maps.shape == (3, k, *model.grid) == (3, 4, 4, 4)
    with torch.no_grad():
        expected = model.eval().concept_attention(torch.as_tensor(result["inputs"]))
    np.testing.assert_allclose(maps, expected.numpy(), atol=1e-6)

    data = _report_data(result)
    html = write_report(tmp_path, data).read_text(encoding="utf-8")
    section = html.split("<h3>Concepts</h3>", 1)[1]
    assert "the maps sum to 1 at each position" in section.split("</figure>", 1)[0]
    assert (tmp_path / "figures" / "concept_maps.png").is_file()

    scale = input_scale(data)
    fig = concept_maps_figure(result["samples"], result["inputs"], maps, scale, CLASSES)
    axes = np.asarray(fig.axes[: 3 * (1 + k)]).reshape(3, 1 + k)  # the colour bar comes last
    assert [ax.get_title() for ax in axes[0, 1:]] == [f"concept {j}" for j in range(k)]
    for row, sample in enumerate(result["samples"]):
        label = " ".join(axes[row, 0].get_ylabel().split())  # long names wrap
        assert f"predicted: {CLASSES[sample['predicted']]}" in label
        assert f"true: {CLASSES[sample['true']]}" in label
        drawn = np.stack([ax.images[1].get_array() for ax in axes[row, 1:]])
        np.testing.assert_allclose(drawn, maps[row])  # the token-grid maps, before upsampling
        np.testing.assert_allclose(drawn.sum(axis=0), np.ones(model.grid), atol=1e-5)
        natural = result["inputs"][row] * 0.2 + np.array([0.5, 0.4, 0.3])[:, None, None]
        pixels = np.clip(natural, 0, 1).transpose(1, 2, 0)  # de-normalised, as drawn first
        np.testing.assert_allclose(axes[row, 0].images[0].get_array(), pixels, atol=1e-6)
        under = axes[row, 1].images[0].get_array()  # the same image in grey under each map
        np.testing.assert_allclose(under, pixels @ [0.299, 0.587, 0.114], atol=1e-6)
    norm = axes[0, 1].images[1].norm  # one scale, centred on uniform attention 1/K
    assert norm.vcenter == 1 / k and all(ax.images[1].norm is norm for ax in axes[:, 1:].flat)


def test_many_concepts_show_those_with_the_most_attention_in_index_order():
    maps = np.zeros((2, 20, 2, 2))
    maps[:, [3, 17, 5]] = np.array([0.5, 0.3, 0.2])[:, None, None]
    assert shown_concepts(maps, limit=2) == [3, 17]
    assert shown_concepts(maps, limit=20) == list(range(20))
