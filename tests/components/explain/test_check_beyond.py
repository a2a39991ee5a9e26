"""The ``beyond`` trust check: its settings, the neighbourhood scores in closed form on a
hand-built model, the threshold rule, the run's own SSL encoder being found, and one seeded run
on a digits slice where PGD inputs must lose label consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from components.data.reader import load_meta, read_split
from components.explain.checks import beyond
from components.explain.checks.beyond.detector import (
    NeighbourScores,
    detection_auroc,
    fit_thresholds,
    neighbour_scores,
)
from components.explain.checks.beyond.encoder import SSLModel, run_ssl_folder, ssl_model
from components.explain.checks.beyond.settings import BeyondSettings, parse_settings
from components.explain.checks.runner import CheckContext
from components.explain.config import ExplainConfig
from components.models import create_model
from components.ssl.checkpoint import save_encoder_checkpoint
from components.ssl.views import ViewConfig
from components.training.checkpoint import ModelSpec, save_checkpoint


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"eps": [1.0]}, "explain.beyond.eps"),
        ({"eps": [1.0, -2.0]}, "explain.beyond.eps"),
        ({"k": 60}, "explain.beyond.k"),
        ({"neighbours": 0}, "explain.beyond.neighbours"),
        ({"alpha": 1.5}, "explain.beyond.alpha"),
        ({"clean_fpr": 0.7}, "explain.beyond.clean_fpr"),
        ({"adaptive_eps": 0}, "explain.beyond.adaptive_eps"),
        ({"views": {"crop_scale": 0}}, "explain.beyond.views"),
        ({"epsilon": 1.0}, "explain.beyond: unknown keys ['epsilon']"),
    ],
)
def test_bad_settings_fail_when_the_explain_config_is_built(block, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
        ExplainConfig(checks=("beyond",), beyond=block)


def test_the_conf_block_lists_every_setting_at_its_default():
    block = OmegaConf.load("conf/explain/default.yaml").beyond
    assert parse_settings(block) == BeyondSettings()
    assert set(block) == set(BeyondSettings.__dataclass_fields__)


class _Sign(nn.Module):
    """Class 1 when the first feature is positive."""

    def forward(self, x):
        return torch.stack([-x[:, 0], x[:, 0]], dim=1)


def test_scores_in_closed_form_with_identity_neighbours():
    # Rows with no noise and no dropout: every neighbour is the input itself, so consistency is
    # exactly [SSL head's label == classifier's label] and every cosine is 1.
    x = torch.tensor([[1.0, 2.0], [-1.0, 1.0], [2.0, -3.0]])
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0, -1.0], [0.0, 1.0]]))  # class 1 when x2 > 0
    ssl = SSLModel(embed=nn.Identity(), head=head, source="hand-built")
    views = ViewConfig(noise_std=0.0, feature_drop=0.0)
    scores = neighbour_scores(_Sign(), ssl, x, views, neighbours=5, k=2, alpha=0.8, seed=0)
    np.testing.assert_array_equal(scores.consistency, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(scores.similarity, [1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(scores.score, [1.0, 0.2, 0.2], atol=1e-6)


def test_thresholds_flag_at_most_the_clean_share_and_catch_lower_scores():
    rng = np.random.default_rng(0)
    clean = NeighbourScores(rng.uniform(0.6, 1, 400), rng.uniform(0.8, 1, 400), np.zeros(400))
    thresholds = fit_thresholds(clean, clean_fpr=0.05)
    assert 0.03 <= thresholds.flags(clean).mean() <= 0.05
    low = NeighbourScores(clean.consistency - 0.5, clean.similarity, np.zeros(400))
    assert thresholds.flags(low).all()
    assert detection_auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0


def test_the_runs_ssl_stage_encoder_is_used(tmp_path, digits_dataset):
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)
    spec = {"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "tiny": True}
    stage = save_encoder_checkpoint(tmp_path / "ssl/checkpoints/best", model, spec, {})
    checkpoint = tmp_path / "checkpoints/best"
    assert run_ssl_folder(checkpoint, None) == stage
    assert run_ssl_folder(tmp_path / "other/checkpoints/best", str(stage)) == stage
    x, y = read_split(digits_dataset, "train", limit=100)
    model_spec = ModelSpec("mlp", (1, 8, 8), 10, tiny=True)
    ssl = ssl_model(stage, model, model_spec, x, y, epochs=1, views=ViewConfig(), seed=0)
    assert "the run's SSL encoder" in ssl.source
    # its encoder is the saved one: the same representation as the model's hidden layers
    rows = torch.as_tensor(x[:4])
    torch.testing.assert_close(ssl.embed(rows), model.net[:-1](rows).flatten(1))


def test_pgd_inputs_lose_label_consistency_on_a_seeded_digits_run(
    tmp_path, digits_dataset, train_model
):
    x, y = read_split(digits_dataset, "train", limit=600)
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)
    train_model(model, x, y, epochs=8, lr=1e-2)
    spec = ModelSpec("mlp", (1, 8, 8), 10, tiny=True)
    checkpoint = save_checkpoint(tmp_path / "run/checkpoints/best", model, spec, {})
    settings = {
        "samples": 120,
        "val_samples": 120,
        "eps": [1.0, 3.0],
        "steps": 15,
        "neighbours": 20,
        "k": 8,
        "adaptive_neighbours": 2,
        "ssl_epochs": 6,
        "ssl_rows": 600,
    }
    context = CheckContext(
        model=model,
        checkpoint=checkpoint,
        dataset_path=digits_dataset,
        meta=load_meta(digits_dataset),
        config=None,
        settings=settings,
    )
    result = beyond.run(context)
    clean = np.mean(result["clean"]["consistency"])
    pgd_small, pgd_large, adaptive = result["attacks"]
    assert "trained here" in result["encoder"]
    assert pgd_large["success_rate"] > 0.8
    # measured on this seed: label consistency 0.62 clean, 0.38 at eps=3; AUROC 0.85 at eps=1
    assert np.mean(pgd_large["consistency"]) < clean - 0.15
    assert pgd_small["auroc"] >= 0.75
    assert result["clean"]["flagged"] <= 0.15
    assert result["verdict"].startswith(("pass", "flag")) and "adaptive attack" in result["verdict"]
    assert set(result["summary"]["attacks"]) == {row["name"] for row in result["attacks"]}
    assert adaptive["eps"] == 3.0
