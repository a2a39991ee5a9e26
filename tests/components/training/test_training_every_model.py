"""Every registered model trains through the generic fit loop on digits and on `parts`.

The loop knows no model: it runs each model's declared stages (and pushes where a stage asks).
After training, every prototype model's explanation still decomposes its logit exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.explain.prototypes import explain_samples
from components.models import PrototypeModel, list_models
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, digits_dataset):
    cache = tmp_path_factory.mktemp("parts-cache")
    parts = ingest(DataSpec(source="parts", num_samples=240, num_classes=4), cache).path
    return {"digits": digits_dataset, "parts": parts}


@pytest.mark.parametrize("data", ["digits", "parts"])
@pytest.mark.parametrize("name", list_models())
def test_model_trains_through_its_stages(name, data, datasets):
    x, y = read_split(datasets[data], "train")
    vx, vy = read_split(datasets[data], "val")
    spec = ModelSpec(name, tuple(x.shape[1:]), int(y.max()) + 1, tiny=True)
    torch.manual_seed(0)
    model = spec.build()
    cfg = TrainConfig(epochs=4, batch_size=64, lr=3e-3, early_stopping_patience=0)
    reports: list[dict] = []
    state = fit(
        model,
        ShardBatches(x, y, batch_size=64, shuffle=True),
        ShardBatches(vx, vy, batch_size=256, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=lambda metrics, _: reports.append(metrics),
    )
    planned = sum(stage.epochs for stage in model.training_stages(cfg.epochs))
    assert len(reports) == planned == len(state.history)
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in reports)
    if hasattr(model, "pushed"):  # every stage that asked for a push got one
        assert bool(model.pushed.all())
    if isinstance(model, PrototypeModel):
        rows = explain_samples(model, vx[:16], vy[:16], top_k=2)
        assert max(r["decomposition_error"] for r in rows) < 1e-4 * max(
            1.0, max(abs(r["logit"]) for r in rows)
        )
    assert np.isfinite(model(torch.as_tensor(vx[:4])).logits.detach().numpy()).all()
