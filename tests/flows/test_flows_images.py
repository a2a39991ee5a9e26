"""The pipeline on the data users bring: an image folder on a ResNet-18 trunk, trunk weights from
a file, and signals ``(C, L)`` through 1-D convolutions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from components.data.parts_folder import write_parts_folder
from flows.pipeline import pipeline
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]
IMAGES = 240


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """240 generated 32x32 ``parts`` images, PNG and JPEG, one folder per class."""
    root = tmp_path_factory.mktemp("flow-images") / "images"
    return write_parts_folder(root, num_samples=IMAGES, size=32, formats=("png", "jpeg"))


def _weights_file(tmp_path: Path, arch: str) -> Path:
    """A randomly initialised torchvision classifier saved as users download them."""
    path = tmp_path / f"{arch}.pth"
    torch.save(torchvision.models.get_model(arch, weights=None).state_dict(), path)
    return path


def _overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "experiment=tiny",
        "train.epochs=3",  # ProtoPNet: warm-up, joint, push + last layer
        "explain.methods=[gradients]",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        *extra,
    ]


def test_protopnet_on_a_pretrained_resnet18_trunk_from_an_image_folder(
    prefect_harness, ray_session, image_folder, tmp_path
):
    weights = _weights_file(tmp_path, "resnet18")
    result = pipeline(
        overrides=_overrides(
            tmp_path,
            "data=image_folder",
            f"data.path={image_folder}",
            "data.image_size=32",
            "data.augment=protopnet",
            "model=protopnet",
            "+model.params.backbone=resnet18",
            f"+model.params.pretrained={weights}",
        )
    )
    run_dir = Path(result.run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sum(metrics["data"]["row_counts"].values()) == IMAGES  # every generated file, once
    spec = json.loads((run_dir / "checkpoints" / "best" / "model.json").read_text())
    assert spec["kwargs"]["backbone"] == "resnet18" and spec["input_shape"] == [3, 32, 32]
    meta = json.loads((Path(metrics["data"]["path"]) / "meta.json").read_text())
    assert meta["normalization"]["source"] == "imagenet"  # a pretrained trunk: its statistics
    html = (run_dir / "report.html").read_text()
    for name in meta["class_names"]:  # e.g. red_square+green_disc: folder names, not indices
        assert name in html
    assert "on the training sample it was pushed onto" in html  # the push gallery's caption
    assert "<h3>This looks like that</h3>" in html
    # the circuit diagram of the trained model: resnet18's stages collapsed, the prototype layer
    assert "<h2>Model</h2>" in html and "BasicBlock ×2" in html and "prototype layer" in html


def test_trunk_weights_for_another_architecture_exit_2_before_the_run_folder(
    prefect_harness, image_folder, tmp_path, capsys
):
    weights = _weights_file(tmp_path, "resnet34")
    code = main(
        [
            "run",
            *_overrides(tmp_path),
            "data=image_folder",
            f"data.path={image_folder}",
            "data.image_size=32",
            "model=resnet",
            "+model.params.backbone=resnet18",
            f"+model.params.pretrained={weights}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "does not fit a resnet18 trunk" in err and "layer1.2.conv1.weight" in err
    assert not (tmp_path / "runs").exists()


def test_signals_train_protopnet_through_1d_convolutions(prefect_harness, ray_session, tmp_path):
    # (cnn, st_protopnet and resnet on signals: tests/components/models/test_models_trunks.py)
    result = pipeline(
        overrides=_overrides(
            tmp_path,
            "data=synthetic",
            "data.num_samples=600",
            "data.num_features=64",
            "data.feature_shape=[2,32]",
            "model=protopnet",
        )
    )
    run_dir = Path(result.run_dir)
    spec = json.loads((run_dir / "checkpoints" / "best" / "model.json").read_text())
    assert spec["input_shape"] == [2, 32]
    from components.training.checkpoint import load_model

    net, _ = load_model(run_dir / "checkpoints" / "best")
    assert bool(net.pushed.all()) and set(net.push_location[:, 0].tolist()) == {0}
    assert "on the training sample it was pushed onto" in (run_dir / "report.html").read_text()
