"""The sweep flow's architecture searches (``search=darts|random_ws|enas|bossnas``) on digits
with tiny budgets; the hyperparameter methods are in test_flows_sweep.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flows.sweep import sweep

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


def only_trial(result, pattern: str) -> tuple[Path, list[dict]]:
    """The folder of the sweep's one trial and the rows Tune kept in it."""
    experiment = json.loads((Path(result.run_dir) / "search.json").read_text())["experiment_path"]
    (folder,) = Path(experiment).glob(pattern)
    return folder, [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]


def retrained(result) -> tuple[dict, dict]:
    """The sweep's valid genotype and the retrained model's spec."""
    from components.models.nas_ops import Genotype

    run_dir = Path(result.run_dir)
    genotype = json.loads((run_dir / "genotype.json").read_text())
    Genotype.from_dict(genotype)  # raises if invalid
    return genotype, json.loads((run_dir / "checkpoints" / "best" / "model.json").read_text())


def test_darts_moves_architecture_weights_and_retrains_the_genotype(
    prefect_harness, ray_session, tiny_run
):
    result = sweep(
        overrides=tiny_run(
            "search=darts",
            "search.num_samples=1",
            "search.darts.epochs=2",
            "search.darts.sd=true",
            "model.tiny=false",  # the retrain: width 16 learns in a few epochs, width 4 does not
            "train.epochs=4",
        )
    )
    genotype, spec = retrained(result)
    trial_dir, rows = only_trial(result, "darts_trial_*")
    (alphas_file,) = trial_dir.glob("checkpoint_*/alphas.json")
    alphas = np.array(json.loads(alphas_file.read_text())["normal"])
    uniform = np.full_like(alphas, 1.0 / alphas.shape[1])
    assert np.abs(alphas - uniform).max() > 1e-4  # the architecture weights moved
    assert all(row["distill"] > 0 for row in rows)  # SD-DARTS term

    assert spec["name"] == "darts_net" and spec["kwargs"]["genotype"] == genotype
    assert result.headline["test_accuracy"] > 0.7  # seed 0 measured 0.85 after 8 epochs
    assert (Path(result.run_dir) / "figures" / "search_genotype.png").is_file()


def test_random_ws_ranks_sampled_architectures_and_retrains_the_best(
    prefect_harness, ray_session, tiny_run
):
    result = sweep(
        overrides=tiny_run(
            "search=random_ws",
            "search.darts.epochs=2",
            "search.darts.num_candidates=8",
            "model=protopnet",
        )
    )
    genotype, spec = retrained(result)
    assert spec["name"] == "protopnet" and spec["kwargs"]["backbone_genotype"] == genotype
    final = only_trial(result, "random_ws_trial_*")[1][-1]
    assert final["candidates"] == 8 and final["val_loss"] <= final["worst_val_loss"]


def test_enas_trains_its_controller_and_keeps_the_best_ranked_sample(
    prefect_harness, ray_session, tiny_run
):
    result = sweep(
        overrides=tiny_run(
            "search=enas",
            "search.darts.epochs=1",
            "search.darts.num_candidates=4",
            "search.enas.controller_steps=2",
            "search.enas.aggregate=2",
            "search.enas.memory=true",
            "search.enas.memory_start=0",
            "search.enas.probe_samples=0",
            "search.retrain=false",  # the genotype retrains as random_ws's does (tested above)
        )
    )
    from components.models.nas_ops import Genotype

    genotype = json.loads((Path(result.run_dir) / "genotype.json").read_text())
    Genotype.from_dict(genotype).validate()
    final = only_trial(result, "enas_trial_*")[1][-1]
    assert final["candidates"] == 4 and final["val_loss"] <= final["worst_val_loss"]


def test_bossnas_searches_block_by_block_and_retrains_bossnas_net(
    prefect_harness, ray_session, tiny_run
):
    result = sweep(
        overrides=tiny_run(
            "search=bossnas",
            "model=bossnas_net",
            "search.bossnas.epochs=1",
            "search.bossnas.blocks=2",
            "search.bossnas.layers=1",
            "search.bossnas.paths=2",
            "model.tiny=false",  # the retrain: width 16 learns in a few epochs, width 4 does not
            "train.epochs=4",
        )
    )
    run_dir = Path(result.run_dir)
    searched = json.loads((run_dir / "genotype.json").read_text())
    spec = json.loads((run_dir / "checkpoints" / "best" / "model.json").read_text())
    assert spec["name"] == "bossnas_net"
    assert spec["kwargs"]["architecture"]["blocks"] == searched["blocks"]
    assert len(searched["blocks"]) == 2 and all(len(block) == 1 for block in searched["blocks"])
    assert result.headline["test_accuracy"] > 0.3  # chance 0.1; seed 0 measured 0.44 in 4 epochs
