"""Issue 14's security items on the flows: ``run.id`` stays under ``run.root``; ``sennflow explain``
does not let the folder it explains choose output, cache, Ray or data; saved configs hold no
secrets while the run still uses them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from components.tracking.params import to_params
from components.tracking.record import RunRecord
from flows.config import ConfigError, compose, to_settings, to_yaml
from flows.explain import explain_run, load_run_config, recorded_dataset
from flows.run_folder import create_run_dir
from sennflow.cli import main

SECRET_ENV = "SENNFLOW_TEST_SECRET"
SECRET = "s3cr3t-v4lue"


@pytest.mark.parametrize("run_id", ["../escaped", "{tmp}/escaped"])
def test_a_run_id_leaving_the_run_root_exits_2_before_any_folder(tmp_path, run_id, capsys):
    run_id = run_id.format(tmp=tmp_path)
    assert main(["run", f"run.root={tmp_path / 'runs'}", f"run.id={run_id}"]) == 2
    assert f"invalid run.id={run_id!r}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("run_id", ["../../escaped", "a/../../escaped", "..", ".", "", "a\\b"])
def test_create_run_dir_refuses_an_unsafe_id(tmp_path, run_id):
    with pytest.raises(ConfigError, match="invalid run.id"):
        create_run_dir(tmp_path / "runs", "pipeline", run_id)
    assert list(tmp_path.iterdir()) == []


def test_create_run_dir_accepts_a_safe_id(tmp_path):
    made = create_run_dir(tmp_path / "runs", "pipeline", "nightly-2026.12_04")
    assert made == tmp_path / "runs" / "pipeline" / "nightly-2026.12_04" and made.is_dir()


def test_saved_config_masks_credentials_and_keeps_env_unresolved(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    url = f"postgresql://user:{SECRET}@db.example/mlflow"
    cfg = compose(
        [
            "data=csv",
            f"data.path='s3://AKIA:{SECRET}/x@bucket/rows.csv?token={SECRET}&part=1'",
            f"run.root=${{oc.env:{SECRET_ENV}}}/runs",
            "tracking.backend=none",
            f"tracking.uri='{url}'",
        ]
    )
    saved = yaml.safe_load(to_yaml(cfg))
    assert saved["data"]["path"] == "s3://AKIA:***@bucket/rows.csv?token=***&part=1"
    assert saved["run"]["root"] == f"${{oc.env:{SECRET_ENV}}}/runs"
    assert saved["tracking"]["uri"] == "postgresql://user:***@db.example/mlflow"
    assert SECRET not in to_yaml(cfg)
    settings = to_settings(cfg)  # the run itself uses the real values
    assert settings.run.root == f"{SECRET}/runs"
    assert settings.data.path == f"s3://AKIA:{SECRET}/x@bucket/rows.csv?token={SECRET}&part=1"
    assert settings.tracking.uri == url


def test_mlflow_params_mask_credentials(tmp_path):
    (tmp_path / "config.yaml").write_text(
        f"data:\n  path: ${{oc.env:{SECRET_ENV}}}\nray:\n  storage_path: s3://k:{SECRET}@b/p\n"
    )
    params = to_params(RunRecord(flow="pipeline", run_dir=tmp_path).config())
    assert params == {
        "data.path": f"${{oc.env:{SECRET_ENV}}}",
        "ray.storage_path": "s3://k:***@b/p",
    }
    trial = to_params({"uri": f"https://h/x?api_key={SECRET}", "urls": [f"https://{SECRET}@h"]})
    assert trial == {"uri": "https://h/x?api_key=***", "urls": '["https://***@h"]'}


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory, digits_dataset):
    """A finished-looking run folder as a stranger might ship it: its config sends output,
    cache and data elsewhere, joins a foreign Ray and reads an environment variable; its
    metrics record the digits cache by a path of another machine."""
    from components.data.reader import load_meta
    from components.training.checkpoint import ModelSpec, save_checkpoint

    folder = tmp_path_factory.mktemp("shipped")
    elsewhere = folder.parent / "elsewhere"
    cfg = compose(
        [
            "model=mlp",
            "model.tiny=true",
            "data=csv",
            f"data.path={elsewhere / 'private.csv'}",
            f"data.label_column=${{oc.env:{SECRET_ENV}}}",
            f"run.root={elsewhere / 'runs'}",
            f"run.cache_dir={elsewhere / 'cache'}",
            "ray.address=192.0.2.1:6379",
        ]
    )
    (folder / "config.yaml").write_text(to_yaml(cfg))
    meta = load_meta(digits_dataset)
    spec = ModelSpec("mlp", meta.feature_shape, meta.num_classes, tiny=True)
    save_checkpoint(folder / "checkpoints" / "best", spec.build(), spec, {})
    recorded = {"path": f"/home/someone/cache/{Path(digits_dataset).name}"}
    (folder / "metrics.json").write_text(
        json.dumps({"data": {**recorded, "row_counts": meta.raw["row_counts"]}})
    )
    return folder


@pytest.fixture
def downloaded_run(shipped_run, tmp_path, monkeypatch):
    """A copy of :func:`shipped_run` (tests change it) and the folder its config points to, with
    the environment variable its config names set."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    folder = tmp_path / "downloaded"
    shutil.copytree(shipped_run, folder)
    return folder, tmp_path / "elsewhere"


def test_explain_takes_run_ray_and_cache_from_the_invocation(
    downloaded_run, digits_dataset, tmp_path
):
    folder, _ = downloaded_run
    cache = str(Path(digits_dataset).parent)
    overrides = [f"run.root={tmp_path / 'mine'}", f"run.cache_dir={cache}"]
    s = to_settings(load_run_config(folder, overrides))
    assert (s.run.root, s.run.cache_dir, s.run.ray_address) == (str(tmp_path / "mine"), cache, None)
    assert s.data.label_column == f"${{oc.env:{SECRET_ENV}}}"  # the folder's text, unresolved


def test_explain_finds_the_recorded_cache_by_name_and_checks_it(downloaded_run, digits_dataset):
    folder, elsewhere = downloaded_run
    path, meta = recorded_dataset(folder, Path(digits_dataset).parent)
    assert path == Path(digits_dataset) and path.name == f"digits-{meta.fingerprint[:16]}"
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["data"]["row_counts"]["test"] += 1
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ConfigError, match="row counts"):
        recorded_dataset(folder, Path(digits_dataset).parent)


def test_explain_refuses_a_folder_whose_recorded_data_is_no_dataset_cache(
    downloaded_run, tmp_path, capsys
):
    folder, elsewhere = downloaded_run
    (folder / "metrics.json").write_text(json.dumps({"data": {"path": str(tmp_path)}}))
    mine = tmp_path / "mine"
    assert main(["explain", str(folder), f"run.root={mine}"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "the run's dataset cannot be used" in said
    # the data as the run named it, to type again; the label column would read the environment
    private = yaml.safe_load((folder / "config.yaml").read_text())["data"]["path"]
    again = f"data=csv data.path={private} data.label_column=<label_column>"
    assert f"as for sennflow run: {again}" in said and "oc.env" not in said
    assert not mine.exists() and not elsewhere.exists()


def test_an_explicit_data_override_replaces_the_folders_data(downloaded_run):
    folder, _ = downloaded_run
    (folder / "metrics.json").unlink()  # no recorded dataset: the override alone names the data
    s = to_settings(load_run_config(folder, ["data=digits"]))
    assert (s.data.source, s.data.path) == ("digits", None)


@pytest.mark.prefect
def test_explain_writes_only_where_the_invocation_says_and_logs_its_data(
    prefect_harness, downloaded_run, digits_dataset, tmp_path, caplog
):
    folder, elsewhere = downloaded_run
    flow_logger = logging.getLogger("prefect.flow_runs")
    flow_logger.addHandler(caplog.handler)
    try:
        result = explain_run(
            run_dir=str(folder),
            overrides=[
                f"run.root={tmp_path / 'mine'}",
                f"run.cache_dir={Path(digits_dataset).parent}",
                "explain.methods=[gradients]",
                "explain.eval_samples=8",
                "explain.num_samples=1",
                "explain.robustness_samples=0",
                "explain.perturbation_samples=16",
                "explain.surrogate_samples=64",
            ],
        )
    finally:
        flow_logger.removeHandler(caplog.handler)
    out = Path(result.run_dir)
    assert out.parent == tmp_path / "mine" / "explain" and not elsewhere.exists()
    assert f"data: {digits_dataset}, the fingerprinted dataset cache" in caplog.text
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["ray"]["address"] is None and saved["run"]["root"] == str(tmp_path / "mine")
    for name in ("config.yaml", "report.html"):
        assert SECRET not in (out / name).read_text()
