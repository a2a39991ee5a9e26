"""The pipeline flow end to end under Prefect's test harness, and its typed parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.config import ConfigError
from flows.pipeline import PipelineOptions, pipeline

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


def tiny_overrides(tmp_path) -> list[str]:
    return [
        "experiment=tiny",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={tmp_path / 'cache'}",
    ]


def test_tiny_pipeline_writes_a_complete_run_folder(prefect_harness, ray_session, tmp_path):
    from prefect import get_client

    result = pipeline(overrides=tiny_overrides(tmp_path))

    run_dir = tmp_path / "runs" / "pipeline" / result.run_dir.rsplit("/", 1)[-1]
    assert run_dir.is_dir()
    for name in ("config.yaml", "meta.json", "metrics.json", "report.html"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best" / "model.safetensors").is_file()
    assert any((run_dir / "figures").glob("*.png"))

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(result.headline["test_accuracy"])
    assert len(metrics["train"]["history"]) == 2  # experiment=tiny runs two epochs
    epochs_s = sum(h["epoch_time_s"] for h in metrics["train"]["history"])
    assert metrics["train"]["wall_s"] > epochs_s  # the stage: Ray Train's start-up too
    assert sum(metrics["data"]["row_counts"].values()) == 1797  # every digits sample, once
    meta = json.loads((run_dir / "meta.json").read_text())
    assert {"git_sha", "packages", "seeds", "device"} <= set(meta)
    assert "tiny: true" in (run_dir / "config.yaml").read_text()

    from components.explain.config import POST_HOC_METHODS

    assert result.headline["recommended_explanation"] in POST_HOC_METHODS
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert "Recommended for this model and data" in html
    assert f"{result.headline['test_accuracy']:.4f}" in html

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    # this run's artifacts (the session's shared server holds every test's)
    run_key = ArtifactFilterKey(like_=run_dir.name.lower())
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=run_key))}
    assert {f"report-{run_dir.name.lower()}", f"metrics-{run_dir.name.lower()}"} <= keys
    status = json.loads((run_dir / "status.json").read_text())  # for `sennflow runs`
    assert status["headline"]["test_accuracy"] == result.headline["test_accuracy"]
    # the UI lists the flow run by the run folder's name, and meta.json names the flow run
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(meta["prefect_flow_run"]).name == run_dir.name


def test_a_bad_override_fails_before_any_run_folder_is_made(prefect_harness, tmp_path):
    with pytest.raises(ConfigError, match="train.epochz"):
        pipeline(overrides=[*tiny_overrides(tmp_path), "train.epochz=3"])
    assert not (tmp_path / "runs").exists()


def test_shap_backprop_on_data_without_part_masks_fails_before_any_run_folder_is_made(
    prefect_harness, tmp_path, digits_dataset
):
    overrides = [
        "experiment=tiny",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={digits_dataset.parent}",  # the session's ingested digits
        "train.xnesyl.enabled=true",
    ]
    with pytest.raises(ConfigError, match="train.xnesyl"):
        pipeline(overrides=overrides)
    assert not (tmp_path / "runs").exists()


@pytest.mark.ray
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.num_workers=3",
            r"train.num_workers=3 needs 3 CPUs \(1 per worker\), but the local Ray has 2",
        ),
        ("train.use_gpu=true", "needs 1 GPU.*the local Ray has 0: no CUDA GPU"),
    ],
)
def test_a_training_group_the_local_ray_cannot_hold_fails_before_any_run_folder_is_made(
    prefect_harness, ray_session, tmp_path, digits_dataset, override, message
):
    # Ray Train would wait for the workers forever (measured: still waiting after 240 s)
    overrides = [
        "experiment=tiny",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={digits_dataset.parent}",
        override,
    ]
    with pytest.raises(ConfigError, match=message):
        pipeline(overrides=overrides)
    assert not (tmp_path / "runs").exists()


def test_pipeline_options_become_hydra_overrides():
    options = PipelineOptions(data="wine", model="mlp", epochs=3, use_gpu=False, num_workers=2)
    assert options.to_overrides() == [
        "data=wine",
        "model=mlp",
        "train.epochs=3",
        "train.num_workers=2",
        "train.use_gpu=false",
    ]


@pytest.mark.parametrize(
    "path",
    ["/data/Vögel 2024", "/data/birds, cleaned (v2)", "/data/it's #1 = [best]", "/data/a\\", "5"],
)
def test_a_form_path_of_any_text_reaches_the_config_as_written(path):
    # the Prefect UI form takes any text: quoted where Hydra would not read it back as it is
    from flows.config import compose

    options = PipelineOptions(data="image_folder", data_path=path, backbone="resnet18")
    cfg = compose(options.to_overrides())
    assert (cfg.data.path, cfg.model.params.backbone) == (path, "resnet18")


def test_pipeline_options_reject_invalid_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="epochs"):
        PipelineOptions(epochs=0)
    with pytest.raises(ValidationError, match="data"):
        PipelineOptions(data="imagenet")


PARTS_TINY = [
    "data=parts",
    "data.num_samples=240",
    "model=protopnet",
    "model.tiny=true",
    "train.epochs=4",
    # the explain counts of experiment=tiny: this test is about the prototype analyses
    "explain.num_samples=2",
    "explain.ig_steps=8",
    "explain.eval_samples=16",
    "explain.perturbation_samples=64",
    "explain.robustness_samples=2",
]


@pytest.mark.parametrize(
    ("overrides", "headline_key", "sections"),
    [
        (["experiment=tiny", "model=cbc"], "test_certified_accuracy_l2_0.25", ["Certified"]),
        (["experiment=tiny", "model=prob_psenn"], "test_accuracy", ["Predictive uncertainty"]),
        (["experiment=tiny", "model=tell"], "test_clustering_accuracy", ["Prototypes"]),
        (PARTS_TINY, "consistency_trained", ["consistency and stability", "because", "pushed"]),
    ],
    ids=["cbc", "prob_psenn", "tell", "protopnet-parts"],
)
def test_each_model_kind_gets_its_own_analysis_in_the_report(
    overrides, headline_key, sections, prefect_harness, ray_session, tmp_path
):
    run_root, cache = f"run.root={tmp_path / 'runs'}", f"run.cache_dir={tmp_path / 'cache'}"
    result = pipeline(overrides=[*overrides, run_root, cache])
    assert headline_key in result.headline
    text = (tmp_path / "runs" / "pipeline" / Path(result.run_dir).name / "report.html").read_text()
    for section in sections:
        assert section in text, section
