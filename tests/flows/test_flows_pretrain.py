"""The pretrain flow (``sennflow pretrain``) on digits over Ray Train, and its checkpoint loaded
into a model through ``model.params.pretrained``; config errors without training."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from components.data.reader import read_split
from components.ssl.checkpoint import load_encoder
from components.training.checkpoint import ModelSpec
from flows.config import ConfigError
from flows.pipeline import pipeline
from flows.pretrain import compose_pretrain, pretrain, ssl_config


@pytest.mark.prefect
@pytest.mark.ray
@pytest.mark.slow
def test_pretrain_saves_an_encoder_that_a_model_loads(
    prefect_harness, ray_session, tmp_path, digits_dataset
):
    handler = signal.getsignal(signal.SIGINT)
    result = pretrain(
        overrides=[
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={Path(digits_dataset).parent}",
            "model=cnn",
            "model.tiny=true",
            "ssl=directpred",
            "ssl.epochs=2",
            "ssl.projector_width=32",
        ]
    )
    # Ray Train installed no SIGINT handler of its own: Ctrl-C stays the CLI's (interrupted)
    assert signal.getsignal(signal.SIGINT) is handler
    run = Path(result.run_dir)
    folder = run / "checkpoints" / "best"
    saved = json.loads((run / "ssl.json").read_text())
    assert [row["epoch"] for row in saved["history"]] == [0, 1, 2]
    assert saved["probes"]["linear_probe"] == result.headline["linear_probe"]
    # the probe fit on the frozen pre-trained trunk is what a linear classifier reads from
    # digits: well above chance (0.1) even after 2 epochs on a 4-channel trunk
    assert result.headline["linear_probe"] > 0.8
    report = (run / "report.html").read_text()
    assert "Self-supervised pre-training" in report and "DirectPred" in report

    spec = ModelSpec.configured("cnn", (1, 8, 8), 10, tiny=True, params={"pretrained": str(folder)})
    model = spec.build()
    x, _ = read_split(digits_dataset, "test", limit=8)
    x = torch.as_tensor(x)
    assert torch.allclose(model.features(x).flatten(1), load_encoder(folder)(x))
    untrained = ModelSpec("cnn", (1, 8, 8), 10, tiny=True).build()
    assert not torch.equal(untrained.features[0].weight, model.features[0].weight)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ssl.objective=simclr", "ssl.objective must be one of barlow_twins, directpred, jepa"),
        ("ssl.projector_width=0", "ssl.projector_width must be >= 1"),
        ("ssl.views.crop_scale=1.5", r"ssl.views.crop_scale must be in \(0, 1\]"),
        ("ssl.predictor=mlp", "ssl.predictor must be one of direct, linear"),
    ],
)
def test_a_bad_ssl_key_is_a_config_error_naming_it(override, message):
    with pytest.raises(ConfigError, match=message):
        ssl_config(compose_pretrain([override]))


@pytest.mark.prefect
@pytest.mark.ray
def test_more_ssl_workers_than_the_local_ray_has_cpus_fail_before_any_run_folder_is_made(
    prefect_harness, ray_session, tmp_path, digits_dataset
):
    # Ray Train would wait for the workers forever, in `sennflow pretrain` and in the pipeline's
    # pre-training stage alike
    overrides = [
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={Path(digits_dataset).parent}",
        "model=cnn",
        "model.tiny=true",
        "ssl=directpred",
        "ssl.num_workers=3",
    ]
    message = "ssl.num_workers=3 needs 3 CPUs.*local Ray has 2"
    with pytest.raises(ConfigError, match=message):
        pretrain(overrides=overrides)
    with pytest.raises(ConfigError, match=message):
        pipeline(overrides=overrides)
    assert not (tmp_path / "runs").exists()
