"""The flows other than ``sennflow run`` on an image folder (48 generated 16x16 images): a
sweep trains its trials on the images, the array-only search methods refuse them, ``sennflow
explain`` re-explains an image run from the dataset it was trained on, and federated and
continual runs take small image datasets and refuse large ones before writing anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prefect.logging import disable_run_logger

import components.data.decoded_memory as decoded_memory
from components.continual.config import ContinualConfig
from components.continual.experiment import check_stream
from components.data.ingest import ingest
from components.data.parts_folder import write_parts_folder
from components.data.reader import read_split
from components.federated.experiment import FederatedConfig, check_partition
from components.federated.rounds import prototypes_of
from components.training.checkpoint import ModelSpec, save_checkpoint
from flows.config import compose, to_settings, to_yaml
from flows.explain import explain_run
from flows.sweep import sweep
from sennflow.cli import main
from tasks.continual import continual_task
from tasks.federated import federated_task

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]
SIZE = 16


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """``(folder, root)``: an image folder of 48 16x16 ``parts`` images, and a scratch root."""
    root = tmp_path_factory.mktemp("image-flows")
    folder = write_parts_folder(root / "images", num_samples=48, size=SIZE, formats=("png",))
    return folder, root


def image_overrides(folder: Path, root: Path, *extra: str) -> list[str]:
    return [
        "data=image_folder",
        f"data.path={folder}",
        f"data.image_size={SIZE}",
        f"run.root={root / 'runs'}",
        f"run.cache_dir={root / 'cache'}",
        *extra,
    ]


def test_a_random_sweep_trains_each_trial_on_the_images(prefect_harness, ray_session, images):
    folder, root = images
    result = sweep(
        overrides=image_overrides(
            folder,
            root,
            "experiment=tiny",
            "search=random",
            "search.num_samples=2",
            "search.retrain=false",
            "model=cnn",
            "train.batch_size=16",
            "train.decode_workers=1",
            "data.augment=light",
        )
    )
    trials = json.loads((Path(result.run_dir) / "search.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["done", "done"]
    for trial in trials:
        assert [row["epoch"] for row in trial["history"]] == [1, 2]
        assert all(row["val_loss"] > 0 for row in trial["history"])
    assert result.headline["best_val_loss"] == min(t["val_loss"] for t in trials)


@pytest.mark.parametrize(("method", "extra"), [("darts", []), ("stn", ["search.stn.network=mlp"])])
def test_array_only_search_methods_exit_2_on_images_before_the_run_folder(
    prefect_harness, images, capsys, method, extra
):
    """DARTS and the STN MLP hold the splits in memory (an STN of the model reads images)."""
    folder, root = images
    runs = root / f"runs-{method}"
    args = image_overrides(folder, root, f"search={method}", f"run.root={runs}", *extra)
    assert main(["sweep", *args]) == 2
    err = capsys.readouterr().err
    assert f"search={method}" in err and "cannot run on an image dataset" in err
    assert not runs.exists()


def test_an_image_run_is_re_explained_from_its_dataset_after_the_folder_moved(
    prefect_harness, images, tmp_path
):
    folder, root = images
    moved = tmp_path / "images"
    shutil.copytree(folder, moved)
    cfg = compose(image_overrides(moved, root, "experiment=tiny", "model=protopnet"))
    s = to_settings(cfg)
    dataset = ingest(s.data, s.run.cache_dir)
    run_dir = tmp_path / "runs" / "pipeline" / "trained"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    spec = s.model_spec(dataset.meta)
    save_checkpoint(run_dir / "checkpoints" / "best", spec.build(), spec, {})
    metrics = {"test": {"task": "classification"}, "data": {"path": str(dataset.path)}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(moved)  # the run's image folder is gone; its ingested dataset is not
    caches = sorted((root / "cache").iterdir())

    result = explain_run(
        run_dir=str(run_dir),
        overrides=[f"run.root={tmp_path / 'runs'}", "explain.methods=[gradients]"],
    )
    summary = json.loads((Path(result.run_dir) / "explanations.json").read_text())
    assert [row["method"] for row in summary["ranking"]["rows"]] == ["gradients"]
    assert sorted((root / "cache").iterdir()) == caches  # nothing was ingested again
    assert "Recommended for this model and data" in Path(result.report).read_text()


@pytest.fixture(scope="module")
def image_dataset(images):
    folder, root = images
    spec = to_settings(compose(image_overrides(folder, root))).data
    return ingest(spec, root / "cache").path


RUN = SimpleNamespace(ray_address=None, ray_num_cpus=None)


def test_federated_clients_learn_from_the_decoded_images(ray_session, image_dataset, tmp_path):
    config = FederatedConfig(strategies=("prototypes",), num_clients=2, rounds=1, partition="iid")
    check_partition(image_dataset, config)
    spec = ModelSpec("mlp", (3, SIZE, SIZE), 4, tiny=True)
    with disable_run_logger():
        result = federated_task.fn(image_dataset, spec, config, RUN, tmp_path / "states")
    assert (tmp_path / "states" / "prototypes.safetensors").is_file()  # the final state, saved
    x, y = read_split(image_dataset, "train")
    assert sum(c["samples"] for c in result.report["clients"]) == len(y)
    # the MLP has no encoder: the merged prototypes are the class means of the decoded pixels
    means = [x[y == c].reshape((y == c).sum(), -1).mean(0) for c in range(4)]
    np.testing.assert_allclose(prototypes_of(result.global_states["prototypes"]), means, atol=1e-5)


def test_continual_learners_meet_a_stream_of_image_classes(ray_session, image_dataset):
    steps = {"warmup_steps": 1, "cooldown_steps": 1, "anneal_steps": 1}
    config = ContinualConfig(
        methods=("ncm",), num_tasks=2, learner={"epochs": 2, "batch_size": 8, **steps}
    )
    check_stream(image_dataset, config)
    with disable_run_logger():
        result = continual_task.fn(image_dataset, config, RUN)
    assert sorted(c for task in result["tasks"] for c in task) == [0, 1, 2, 3]
    ncm = result["methods"]["ncm"]
    assert ncm["config"]["input_dim"] == 3 * SIZE * SIZE  # the decoded pixels, flattened
    assert np.array(ncm["R"]).shape == (2, 2)


@pytest.mark.parametrize("flow", ["federated", "continual"])
def test_an_image_dataset_over_the_in_memory_limit_exits_2_naming_it(
    prefect_harness, images, capsys, monkeypatch, flow
):
    folder, root = images
    monkeypatch.setattr(decoded_memory, "WHOLE_SPLITS_BYTES", 64 << 10)  # 21 images of 16x16
    runs = root / f"runs-{flow}"
    assert main([flow, *image_overrides(folder, root, f"run.root={runs}")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich may wrap the message
    assert f"{flow} holds the train and test splits in memory" in err
    assert "over its limit of 64.0 KiB; ingest at a smaller data.image_size" in err
    assert not runs.exists()
