"""Search over pretrained torchvision trunks on an image folder: the trunk and its learning-rate
scale are search dimensions, and ``pretrained`` names a folder of per-trunk weights files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from components.data.ingest import ingest
from components.data.parts_folder import write_parts_folder
from components.data.spec import DataSpec
from components.search.sweep_config import SweepConfig
from components.search.tune_sweep import run_sweep
from components.training.checkpoint import ModelSpec, load_spec, load_state, load_weights
from components.training.config import TrainConfig
from components.training.pretrained import PretrainedError

TRUNKS = ("resnet18", "resnet34")
SHAPE = (3, 32, 32)


def _trunk_weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Randomly initialised torchvision classifiers saved as users download them, one file per
    trunk named for it (one ``.pth``, one ``.safetensors``)."""
    folder.mkdir()
    states = {}
    for seed, (arch, suffix) in enumerate(zip(TRUNKS, (".pth", ".safetensors"), strict=True)):
        torch.manual_seed(seed)
        states[arch] = torchvision.models.get_model(arch, weights=None).state_dict()
        if suffix == ".pth":
            torch.save(states[arch], folder / f"{arch}{suffix}")
        else:
            save_file(
                {k: v.contiguous() for k, v in states[arch].items()}, folder / f"{arch}{suffix}"
            )
    return states


def _last_checkpoints(experiment: str) -> list[Path]:
    trials = [p for p in Path(experiment).iterdir() if p.is_dir()]
    return [max(t.glob("checkpoint_*"), key=lambda p: p.name) for t in trials]


def test_each_trial_trains_the_trunk_it_drew_from_that_trunks_file(ray_session, tmp_path):
    images = write_parts_folder(tmp_path / "images", num_samples=40, size=32)
    dataset = ingest(DataSpec(source="image_folder", path=str(images), image_size=32), tmp_path)
    states = _trunk_weights(tmp_path / "trunks")
    space = {
        "model.backbone": {"type": "choice", "values": list(TRUNKS)},
        "model.features_lr_scale": {"type": "loguniform", "low": 1e-6, "high": 1e-5},
    }
    outcome = run_sweep(
        dataset_path=dataset.path,
        spec=ModelSpec(
            "resnet", SHAPE, 4, tiny=True, kwargs={"pretrained": str(tmp_path / "trunks")}
        ),
        train=TrainConfig(epochs=1, batch_size=64, decode_workers=0, early_stopping_patience=0),
        space=space,
        sweep=SweepConfig(method="random", num_samples=2, max_concurrent=1, seed=1),
        storage_path=tmp_path / "tune",
        images=True,
    )
    assert {t["config"]["model.backbone"] for t in outcome.trials} == set(TRUNKS)
    for folder in _last_checkpoints(outcome.experiment_path):
        spec = load_spec(folder)
        arch, scale = spec.kwargs["backbone"], spec.kwargs["features_lr_scale"]
        model = spec.build(load_pretrained=False)
        load_weights(folder, model)
        for name, value in model.features.named_parameters():
            # One Adam step at lr * scale <= 1e-8 moved the file's weights by no more than that;
            # a trunk not loaded from the file (seeded otherwise) differs by orders of magnitude.
            torch.testing.assert_close(value, states[arch][name], rtol=0, atol=1e-6)
        trunk, head = load_state(folder)["optimizer"]["param_groups"]
        assert trunk["initial_lr"] == pytest.approx(1e-3 * scale) and head["initial_lr"] == 1e-3


def test_a_folder_without_the_drawn_trunks_file_names_the_file_it_needs(tmp_path):
    _trunk_weights(tmp_path / "trunks")
    kwargs = {"backbone": "resnet50", "pretrained": str(tmp_path / "trunks")}
    with pytest.raises(PretrainedError, match=r"no weights file for the resnet50 trunk") as info:
        ModelSpec("resnet", SHAPE, 4, tiny=True, kwargs=kwargs).build()
    assert "resnet50.pth" in str(info.value) and str(tmp_path / "trunks") in str(info.value)
