"""The Prefect deployments of infra/prefect.yaml, as ops/serve.py builds them, point at real
flows with valid parameters."""

from __future__ import annotations

import pytest

from ops.serve import deployment_entries, load_flow, resolve_parameters, runner_deployments

DEPLOYMENTS = deployment_entries()


@pytest.fixture(scope="module")
def served() -> dict:
    """The deployments ``sennflow stack up`` serves, by name, with a Ray address set."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SENNFLOW_RAY_ADDRESS", "auto")
        return {deployment.name: deployment for deployment in runner_deployments()}


# What a deployment leaves to the run form: the flow's parameters without a default.
FORM_FILLED = {"predict-new-data": {"run_dir": "runs/pipeline/r1", "input_path": "new.csv"}}


@pytest.mark.parametrize("entry", DEPLOYMENTS, ids=lambda d: d["name"])
def test_each_deployment_names_a_flow_and_parameters_it_accepts(served, entry):
    deployment, flow = served[entry["name"]], load_flow(entry["entrypoint"])
    assert deployment.flow_name == flow.name and deployment.enforce_parameter_schema
    form = FORM_FILLED.get(entry["name"], {})
    assert set(flow.parameters.required or []) == set(form)
    # raises on a parameter the schema rejects
    flow.validate_parameters({**form, **deployment.parameters})
    assert set(deployment.parameters) <= set(flow.parameters.properties)
    assert "{{" not in str(deployment.parameters)  # every placeholder was filled in


def test_the_nightly_sweep_runs_at_two_utc_with_its_search_method(served):
    (entry,) = [d for d in DEPLOYMENTS if d["name"] == "nightly-sweep"]
    assert entry["entrypoint"] == "flows/sweep.py:sweep"
    nightly = served["nightly-sweep"]
    assert [(s.schedule.cron, s.schedule.timezone) for s in nightly.schedules] == [
        ("0 2 * * *", "UTC")
    ]
    parameters = load_flow(entry["entrypoint"]).validate_parameters(nightly.parameters)
    assert (parameters["options"].method, parameters["options"].num_samples) == ("asha", 16)
    # it keeps the nightly history and fails on a test-accuracy drop of more than 0.02
    assert "search.history=true" in parameters["options"].to_overrides()
    assert "search.alert_drop=0.02" in parameters["options"].to_overrides()
    assert parameters["overrides"] == ["ray.address=auto"]


def test_the_ray_address_placeholder_is_filled_in_or_dropped(monkeypatch):
    (entry,) = [d for d in DEPLOYMENTS if d["name"] == "nightly-pipeline"]
    monkeypatch.delenv("SENNFLOW_RAY_ADDRESS", raising=False)
    assert resolve_parameters(entry["parameters"]) == {"overrides": []}  # each run starts a Ray
    monkeypatch.setenv("SENNFLOW_RAY_ADDRESS", "10.0.0.5:6379")
    assert resolve_parameters(entry["parameters"]) == {"overrides": ["ray.address=10.0.0.5:6379"]}


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


def test_without_a_deployments_file_serving_is_refused_naming_it(tmp_path, monkeypatch):
    # an installed wheel has no infra/: serving then reads the working folder's, if any
    from ops.stack import StackConfig, StackError, up

    missing = tmp_path / "infra" / "prefect.yaml"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        deployment_entries(missing)
    monkeypatch.setattr("ops.stack.PREFECT_FILE", missing)
    with pytest.raises(StackError, match="--no-serve"):
        up(StackConfig(state_dir=tmp_path / "stack"))
    assert not (tmp_path / "stack").exists()  # refused before anything started
