"""A diverging self-supervised pre-training stops with the supervised fit's DivergedError (stage
``ssl``, naming ``ssl.lr``) through the check the Ray Train workers run, instead of a
linear-algebra error mid-epoch (which failed the Ray worker group with a long traceback)."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits

from components.ssl.config import SSLConfig
from components.ssl.learner import pretrain_encoder
from components.training.fit import DivergedError
from components.training.ssl_ray import divergence_check

# Adam's first step moves every weight by about lr: at 1e20 the tiny encoders' activations
# overflow float32 within the first epoch (measured: 1e8 trains, 1e10 diverges for mlp).
DIVERGING_LR = 1e20


@pytest.fixture(scope="module")
def digits_rows() -> torch.Tensor:
    x = torch.tensor(load_digits().data[:128], dtype=torch.float32)
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


@pytest.mark.parametrize("objective", ["barlow_twins", "directpred"])
def test_a_diverging_lr_raises_diverged_error_naming_the_ssl_stage(digits_rows, objective):
    # directpred: before the fix, eigh of the NaN correlation raised a LinAlgError mid-epoch;
    # barlow_twins: the collapse diagnostics' SVD of NaN embeddings did.
    cfg = SSLConfig(
        objective=objective, projector_width=16, batch_size=32, epochs=3, lr=DIVERGING_LR
    )
    seen = []
    with pytest.raises(DivergedError) as caught:
        pretrain_encoder(
            "mlp", digits_rows, cfg, tiny=True, on_epoch=seen.append, check=divergence_check(cfg)
        )
    err = caught.value
    assert (err.epoch, err.stage, err.lr_key) == (1, "ssl", "ssl.lr")
    assert math.isnan(err.losses["ssl_loss"]) and math.isnan(err.losses["embedding_std"])
    assert [m["epoch"] for m in seen] == [0]  # the diverged epoch was never reported
    message = str(err)
    assert "(stage 'ssl')" in message and "lower ssl.lr (it is 1e+20)" in message
    assert "no checkpoint was kept" in message and "train.grad_clip" not in message


def test_a_finite_run_passes_the_check(digits_rows):
    cfg = SSLConfig(projector_width=16, batch_size=32, epochs=2, lr=1e-3)
    history = pretrain_encoder("mlp", digits_rows, cfg, tiny=True, check=divergence_check(cfg))
    assert [m["epoch"] for m in history.history] == [0, 1, 2]


def test_a_sweep_trials_diverging_pretraining_names_ssl_lr_and_saves_nothing(
    digits_dataset, tmp_path
):
    # A sweep's trial pre-trains in its own process (no Ray Train): the same check applies, so
    # the trial's failure line in the sweep report names the key to lower.
    from components.search.trial_ssl import pretrain_trial_encoder
    from components.training.checkpoint import ModelSpec

    cfg = SSLConfig(projector_width=16, batch_size=32, epochs=2, lr=DIVERGING_LR)
    spec = ModelSpec("mlp", (64,), 10, tiny=True)
    with pytest.raises(DivergedError, match=r"lower ssl.lr \(it is 1e\+20\)"):
        pretrain_trial_encoder(cfg, {}, spec, digits_dataset, tmp_path / "ssl")
    assert not (tmp_path / "ssl").exists()
