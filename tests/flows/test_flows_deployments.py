"""The Prefect deployments in infra/prefect.yaml point at real flows with valid parameters."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "infra" / "prefect.yaml").read_text())["deployments"]


def load_flow(entrypoint: str):
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_each_deployment_names_a_flow_and_parameters_it_accepts(deployment):
    flow = load_flow(deployment["entrypoint"])
    params = {
        key: [v.replace("{{ $SENNFLOW_RAY_ADDRESS }}", "auto") for v in value]
        if key == "overrides"
        else value
        for key, value in deployment.get("parameters", {}).items()
    }
    flow.validate_parameters(params)  # raises on a parameter the flow's schema rejects
    assert set(params) <= set(flow.parameters.properties)


def test_the_nightly_sweep_runs_at_two_utc_with_its_search_method():
    (nightly,) = [d for d in DEPLOYMENTS if d["name"] == "nightly-sweep"]
    assert nightly["entrypoint"] == "flows/sweep.py:sweep"
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC"}]
    options = load_flow(nightly["entrypoint"]).validate_parameters(nightly["parameters"])["options"]
    assert options.method == "asha" and options.num_samples >= 1


def test_a_bad_sweep_parameter_is_rejected_by_the_flow_schema():
    from prefect.exceptions import ParameterTypeError

    flow = load_flow("flows/sweep.py:sweep")
    with pytest.raises(ParameterTypeError, match="method"):
        flow.validate_parameters({"options": {"method": "grid"}})
    with pytest.raises(ParameterTypeError, match="num_samples"):
        flow.validate_parameters({"options": {"num_samples": 0}})


def test_bad_federated_and_continual_parameters_are_rejected_by_the_flow_schema():
    from prefect.exceptions import ParameterTypeError

    federated = load_flow("flows/federated.py:federated")
    with pytest.raises(ParameterTypeError, match="strategies"):
        federated.validate_parameters({"options": {"strategies": ["fedsgd"]}})
    with pytest.raises(ParameterTypeError, match="fraction"):
        federated.validate_parameters({"options": {"fraction": 1.5}})
    continual = load_flow("flows/continual.py:continual")
    with pytest.raises(ParameterTypeError, match="methods"):
        continual.validate_parameters({"options": {"methods": ["ewc"]}})
    with pytest.raises(ParameterTypeError, match="num_tasks"):
        continual.validate_parameters({"options": {"num_tasks": 0}})
