"""write_report: a self-contained HTML page with inline figures, escaped text, the metrics."""

import base64
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from components.evaluation.metrics import classification_metrics
from components.evaluation.predict import predict_logits
from components.explain import explain_model
from components.models import create_model
from components.report import ReportData, write_report
from components.report.markup import format_value

CONFIG = "model:\n  name: proto_ae\n  note: <script>alert('x')</script> & more\n"
INLINE_PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _report_data(model_name: str, feature_shape: tuple[int, ...], history: list[dict]):
    torch.manual_seed(0)
    class_names = ["zero", "one", "two<3"]
    model = create_model(model_name, input_shape=feature_shape, num_classes=3, tiny=True)
    x, y = torch.randn(30, *feature_shape), torch.arange(30) % 3
    metrics = classification_metrics(predict_logits(model, x), y, 3, n_bins=5)
    explanations = explain_model(
        model, x, y, num_samples=2, top_k=2, ig_steps=4, class_names=class_names
    )
    return ReportData(
        title="digits & proto_ae",
        run_id="run-1",
        headline={"test_accuracy": metrics["accuracy"], "epochs": len(history)},
        metrics=metrics,
        history=history,
        config_yaml=CONFIG,
        meta={"git_sha": "abc123", "versions": {"torch": torch.__version__}, "seed": 0},
        data_meta={
            "row_counts": {"train": 100, "val": 20, "test": 30},
            "dropped_rows": 3,
            "dropped_by_reason": {"non-finite feature": 2, "label out of range": 1},
            "source": "sklearn:digits",
        },
        explanations=explanations,
        class_names=class_names,
        feature_shape=feature_shape,
    )


HISTORY = [
    {
        "epoch": e,
        "train_loss": 3.0 / e,
        "val_loss": 3.2 / e,
        "val_accuracy": 0.3 * e,
        "lr": 1e-3,
        "train_ce": 1.0 / e,
        "train_reconstruction": 20.0 / e,
    }
    for e in (1, 2, 3)
]


def test_prototype_report_is_self_contained_with_all_sections(tmp_path):
    data = _report_data("proto_ae", (1, 8, 8), HISTORY)
    path = write_report(tmp_path / "run", data)
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / "run" / "report.html"

    figures = {p.stem: p.read_bytes() for p in (tmp_path / "run" / "figures").glob("*.png")}
    assert set(figures) == {
        "learning_curves",
        "confusion_matrix",
        "reliability",
        "prototype_gallery",
        "sample_explanations",
        "attributions",
    }
    inline = [base64.b64decode(b) for b in INLINE_PNG.findall(page)]
    assert sorted(inline) == sorted(figures.values())  # each file is the image shown inline
    assert all(png.startswith(b"\x89PNG") for png in inline)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loaded from elsewhere

    for value in ("accuracy", "macro_f1", "nll", "ece"):
        assert format_value(data.metrics[value]) in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "<script>" not in page
    assert "digits &amp; proto_ae" in page and "two&lt;3" in page
    assert "non-finite feature" in page and "abc123" in page and "versions.torch" in page


def test_tabular_report_without_history_draws_bars_and_skips_curves(tmp_path):
    data = _report_data("mlp", (6,), history=[])
    page = write_report(tmp_path, data).read_text(encoding="utf-8")
    names = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert names == {"confusion_matrix", "reliability", "attributions"}
    assert "No training history." in page
    assert "Prototypes" not in page


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.86398, "0.8640"), (None, "n/a"), (float("nan"), "n/a"), (7, "7"), (2.5e-5, "2.500e-05")],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_report_handles_a_missing_class_in_the_per_class_table(tmp_path):
    data = _report_data("mlp", (6,), history=[])
    logits = np.eye(3)[[0, 1, 0, 1]] * 4.0  # class 2 has no samples
    data = replace(data, metrics=classification_metrics(logits, [0, 1, 0, 1], 3))
    page = write_report(tmp_path, data).read_text(encoding="utf-8")
    assert "<td>two&lt;3</td><td>n/a</td>" in page


NODE_A = "add9c9815ec266413fd28bbf947e7d0c4116d2245fc455241c6b2962"
NODE_B = "5f0e21b7" + "0" * 48


def test_training_section_lists_each_attempt_and_the_checkpoint_it_resumed_from(tmp_path):
    data = _report_data("mlp", (6,), history=HISTORY)
    training = {
        "resumed_at": [1],
        "attempts": [
            {"attempt": 1, "first_epoch": 1, "last_epoch": 1, "nodes": [NODE_A, NODE_B]},
            {"attempt": 2, "first_epoch": 2, "last_epoch": 3, "nodes": [NODE_A, NODE_A]},
        ],
    }
    data = replace(data, training=training)
    page = write_report(tmp_path, data).read_text(encoding="utf-8")
    training = page[page.index("Training") : page.index("Evaluation")]
    assert "Resumed 1 time(s) from a checkpoint, after epoch 1" in training
    rows = re.findall(r"<tr><td[^>]*>(\d)</td><td>([\d-]+)</td><td>([^<]+)</td></tr>", training)
    # as the training log names them: the first 8 of the 56 hex digits
    assert rows == [("1", "1-1", "add9c981, 5f0e21b7"), ("2", "2-3", "add9c981, add9c981")]

    data = replace(data, training={"resumed_at": [], "attempts": []})  # shows neither
    page = write_report(tmp_path, data).read_text(encoding="utf-8")
    assert "Resumed" not in page and "Ray node of each rank" not in page
