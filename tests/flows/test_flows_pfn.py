"""The pfn-train flow (``sennflow pfn-train``) through Ray Train at the smallest size: its weights
file is what model=pfn loads; a bad prior or key is a config error before anything runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from components.pfn.weights import load_pfn_network
from components.report import write_report
from components.report.figures import history_axis, learning_curves_figure
from components.training.checkpoint import ModelSpec
from flows.config import ConfigError
from flows.pfn import compose_pfn, pfn_config, pfn_report_data, pfn_train
from flows.run import OpenRun
from sennflow.cli import main

SMALL = ["pfn.d_model=8", "pfn.nhead=2", "pfn.layers=1", "pfn.d_ff=16", "pfn.seq_len=16"]


@pytest.mark.prefect
@pytest.mark.ray
@pytest.mark.slow
def test_pfn_train_writes_weights_that_model_pfn_loads(prefect_harness, ray_session, tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    result = pfn_train(
        overrides=[
            "prior=bnn",
            f"run.root={tmp_path}",
            *SMALL,
            "pfn.steps=4",
            "pfn.checkpoint_every=2",
            "pfn.batch_size=4",
            "pfn.eval_tasks=4",
            "pfn.bnn.max_features=6",
        ]
    )
    assert signal.getsignal(signal.SIGINT) is handler  # Ray Train installed none of its own
    run = Path(result.run_dir)
    saved = json.loads((run / "pfn.json").read_text())
    assert [row["step"] for row in saved["history"]] == [2, 4]
    assert result.headline["held_out_loss"] == saved["history"][-1]["val_loss"]
    html = (run / "report.html").read_text()
    assert "pfn-train" in html and "learning rate per step" in html
    net, metadata, _ = load_pfn_network(run)
    assert metadata["prior"] == "bnn" and metadata["task"] == "classification"
    params = {"d_model": 8, "nhead": 2, "layers": 1, "d_ff": 16, "max_features": 6}
    model = ModelSpec("pfn", (4,), 3, kwargs={**params, "pretrained": str(run)}).build()
    for key, value in net.state_dict().items():
        assert torch.equal(value, model.net.state_dict()[key])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prior=mcmc"], "prior=mcmc: unknown prior, choose one of bnn, gp"),
        (["pfn.seq_len=1"], "pfn.seq_len must be >= 2"),
        (["pfn.gp.noise=[0,1]"], r"pfn.gp.noise must be \[low, high\] with 0 < low"),
        (["prior=bnn", "pfn.bnn.task=ranking"], "pfn.bnn.task must be one of"),
        (["prior=bnn", "pfn.bnn.depth=3"], "pfn.bnn.*depth"),
    ],
)
def test_a_bad_prior_or_key_is_a_config_error_naming_it(overrides, message):
    with pytest.raises(ConfigError, match=message):
        pfn_config(compose_pfn(overrides))


def test_the_cli_refuses_an_unknown_prior_before_running(capsys):
    assert main(["pfn-train", "prior=mcmc"]) == 2
    assert "prior=mcmc: unknown prior" in capsys.readouterr().err


def test_the_pfn_report_plots_its_losses_per_optimiser_step_not_per_epoch(tmp_path):
    config = pfn_config(compose_pfn(["prior=bnn"]))
    steps = [50, 100, 150]
    outcome = {"history": [{"step": s, "train_loss": 2 / s, "val_loss": 3 / s} for s in steps]}
    run = OpenRun(flow="pfn", run_dir=tmp_path, meta={}, config_yaml="")
    data = pfn_report_data(run, config, outcome, {"steps": 150})
    html = write_report(tmp_path, data).read_text(encoding="utf-8")
    assert "learning rate per step" in html and "per epoch" not in html
    assert history_axis(data.history) == "step"
    (ax,) = learning_curves_figure(data.history, history_axis(data.history)).axes
    assert ax.get_xlabel() == "step"
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [steps, steps]


@pytest.mark.prefect
@pytest.mark.ray
def test_more_pfn_workers_than_the_local_ray_has_cpus_fail_before_any_run_folder_is_made(
    prefect_harness, ray_session, tmp_path
):
    # Ray Train would wait for the workers forever (measured: still waiting after 90 s)
    overrides = [f"run.root={tmp_path / 'runs'}", *SMALL, "pfn.num_workers=3"]
    with pytest.raises(ConfigError, match="pfn.num_workers=3 needs 3 CPUs.*local Ray has 2"):
        pfn_train(overrides=overrides)
    assert not (tmp_path / "runs").exists()
