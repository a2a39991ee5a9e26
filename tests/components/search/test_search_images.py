"""Search trials on image datasets: the pipeline's trials read images as a training worker does
(decoded and augmented in loader processes), the array-only methods refuse them up front.
A whole sweep on an image folder runs in tests/flows/test_flows_images_other_flows.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from components.data import reader
from components.search import trials
from components.search.sweep_config import HYPERPARAMETER_METHODS, SweepConfig
from components.search.tune_sweep import check_data, run_sweep
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig


class FakeTune:
    """What :func:`trials.fit_trial` uses of ``ray.tune``, recording the reports in-process."""

    def __init__(self) -> None:
        self.reports: list[dict] = []
        self.Checkpoint = SimpleNamespace(from_directory=lambda folder: folder)

    def get_context(self):
        return SimpleNamespace(get_trial_id=lambda: "trial_0")

    def get_checkpoint(self):
        return None

    def report(self, metrics: dict, checkpoint=None) -> None:
        assert Path(checkpoint, trials.TRIAL_FILE).is_file()
        self.reports.append(metrics)


def fit_trial(dataset: Path, augment: str, monkeypatch) -> list[dict]:
    tune = FakeTune()
    monkeypatch.setattr(trials, "tune", tune)
    train = TrainConfig(epochs=2, batch_size=128, early_stopping_patience=0, decode_workers=0)
    base = {
        "dataset_path": str(dataset),
        "spec": ModelSpec("cnn", (3, 32, 32), 4, tiny=True),
        "train": train,
        "augment": augment,
    }
    trials.fit_trial({"train.lr": 3e-3}, base)
    return tune.reports


def test_a_trial_trains_on_decoded_and_augmented_images(parts_image_dataset, monkeypatch):
    decoded_by_reader = []
    real_decode = reader._decode_images

    def spy(values, *args):
        decoded_by_reader.append(len(values))
        return real_decode(values, *args)

    monkeypatch.setattr(reader, "_decode_images", spy)
    plain = fit_trial(parts_image_dataset, "none", monkeypatch)
    light = fit_trial(parts_image_dataset, "light", monkeypatch)
    assert decoded_by_reader == []  # the trial's image loader decoded them, not read_split
    assert [r["epoch"] for r in plain] == [r["epoch"] for r in light] == [1, 2]
    assert all(r["val_loss"] > 0 for r in plain + light)
    # Same seed and weights: only the augmentation tells the two trials' training apart; the
    # first epoch's validation comes after training on different crops, so it differs too.
    assert plain[0]["train_loss"] != light[0]["train_loss"]
    assert plain[0]["val_loss"] != light[0]["val_loss"]


@pytest.mark.parametrize("method", ["darts", "random_ws"])
def test_array_only_methods_refuse_image_datasets_naming_the_method(method, tmp_path):
    with pytest.raises(ValueError, match=f"search={method} cannot run on an image dataset"):
        check_data(method, images=True)
    check_data(method, images=False)
    with pytest.raises(ValueError, match=f"search={method}"):  # before Ray is even needed
        run_sweep(
            dataset_path=tmp_path,
            spec=ModelSpec("mlp", (3, 16, 16), 4, tiny=True),
            train=TrainConfig(),
            space={},
            sweep=SweepConfig(method=method),
            storage_path=tmp_path,
            images=True,
        )
    assert not any(tmp_path.iterdir())


def test_hyperparameter_methods_take_image_datasets():
    for method in HYPERPARAMETER_METHODS:
        check_data(method, images=True)
