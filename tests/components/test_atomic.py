"""Atomic writes: the report and the best/last checkpoint copies replace old files whole."""

from __future__ import annotations

import os

import pytest
import torch
from ray.train import Checkpoint

from components.evaluation.metrics import classification_metrics
from components.report import ReportData, write_report
from components.training.ray_trainer import _copy_checkpoint


def _report(title: str) -> ReportData:
    y = torch.arange(12) % 3
    metrics = classification_metrics(torch.eye(3)[y] * 4, y, 3, n_bins=5)
    return ReportData(
        title=title,
        run_id="run-1",
        headline={"test_accuracy": metrics["accuracy"]},
        metrics=metrics,
        history=[{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2}],
        config_yaml="seed: 0\n",
        meta={},
        data_meta={},
        explanations=None,
        class_names=["a", "b", "c"],
        feature_shape=(4,),
    )


def test_a_rewritten_report_replaces_page_and_figures_whole(tmp_path):
    page = write_report(tmp_path, _report("first title"))
    figure = tmp_path / "figures" / "learning_curves.png"
    with page.open(encoding="utf-8") as old_page, figure.open("rb") as old_figure:
        old_bytes = figure.read_bytes()
        write_report(tmp_path, _report("second title"))
        # A reader that opened the old files reads them whole: the new ones were renamed in,
        # not written over the old ones in place.
        assert "first title" in old_page.read()
        assert old_figure.read() == old_bytes
    assert "second title" in page.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "report.html"]
    assert not [p for p in (tmp_path / "figures").iterdir() if p.name.startswith(".")]


def _checkpoint(folder, weights: bytes) -> Checkpoint:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(weights)
    return Checkpoint.from_directory(str(folder))


def test_a_failed_checkpoint_copy_leaves_the_previous_copy_intact(tmp_path):
    dest = tmp_path / "checkpoints" / "last"
    dest.parent.mkdir()
    _copy_checkpoint(_checkpoint(tmp_path / "epoch1", b"epoch 1"), dest)

    broken = tmp_path / "epoch2"
    _checkpoint(broken, b"epoch 2")
    os.symlink(tmp_path / "gone", broken / "optimizer.pt")  # copytree fails on it
    with pytest.raises(OSError):
        _copy_checkpoint(Checkpoint.from_directory(str(broken)), dest)
    assert (dest / "model.safetensors").read_bytes() == b"epoch 1"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["last"]  # no half copy left

    _copy_checkpoint(_checkpoint(tmp_path / "epoch3", b"epoch 3"), dest)
    assert (dest / "model.safetensors").read_bytes() == b"epoch 3"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["last"]
