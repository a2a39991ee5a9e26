"""``history.html``: one figure per metric across the nights, and the nights' configurations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from components.report.history_page import FIGURES, HISTORY_PAGE, write_history_page
from components.search.history import Night, append_night, metric_names


def test_the_page_plots_each_metric_once_and_lists_each_nights_configuration(tmp_path):
    start = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    for day, accuracy in enumerate((0.75, 0.8125, 0.5)):
        headline = {"test_accuracy": accuracy, "best_val_loss": 1 - accuracy}
        if day:
            headline["test_ece"] = 0.0625 * day  # a metric that appears on the second night
        night = Night(
            run_id=f"sweep-{day}",
            method="asha",
            model="protopnet",
            dataset="image_folder",
            dataset_fingerprint="0123456789abcdef",
            best_config={"model.backbone": ["resnet18", "resnet34", "vgg11"][day]},
            headline=headline,
            time=start + timedelta(days=day),
        )
        rows = append_night(tmp_path, night, alert="dropped" if day == 2 else None)
    metrics = metric_names(rows)
    page = write_history_page(tmp_path, rows, metrics).read_text()

    assert page.count("<figure>") == len(metrics) == 3
    assert sorted(p.name for p in (tmp_path / FIGURES).iterdir()) == [
        "history_best_val_loss.png",
        "history_test_accuracy.png",
        "history_test_ece.png",
    ]
    assert (tmp_path / HISTORY_PAGE).is_file()
    for day, backbone in enumerate(["resnet18", "resnet34", "vgg11"]):
        assert f"<td>model.backbone={backbone}</td>" in page
        assert f"<td>2026-12-0{day + 1} 02:00</td>" in page
    # the alerted night is highlighted, and its message shown
    (alerted,) = re.findall(r'<tr class="highlight">(.*?)</tr>', page)
    assert "sweep-2" in alerted and "dropped" in alerted
