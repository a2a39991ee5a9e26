"""``sennflow explain``: re-explain a finished run, without retraining and without touching it."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from flows.explain import explain_run, training_seconds
from flows.pipeline import pipeline
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained_run(prefect_harness, ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    result = pipeline(
        overrides=[
            "experiment=tiny",
            "model=mlp",
            "explain.methods=[ig]",
            f"run.root={root / 'runs'}",
            f"run.cache_dir={root / 'cache'}",
        ]
    )
    return Path(result.run_dir), root


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def explain(run_dir: Path, root: Path, *extra: str):
    return explain_run(
        run_dir=str(run_dir),
        overrides=[f"run.root={root / 'runs'}", "explain.eval_samples=16", *extra],
    )


def test_a_finished_run_is_re_explained_into_a_new_folder(trained_run):
    run_dir, root = trained_run
    before = digest(run_dir)
    result = explain(run_dir, root, "explain.methods=[ig,gradients,kernel_shap]")
    assert digest(run_dir) == before  # the trained run is only read
    out = Path(result.run_dir)
    assert out.parent.name == "explain" and out != run_dir
    summary = json.loads((out / "explanations.json").read_text())
    ranked = [row["method"] for row in summary["ranking"]["rows"]]
    assert sorted(ranked) == ["gradients", "ig", "kernel_shap"]
    assert summary["recommended"] == ranked[0] == result.headline["recommended_explanation"]
    html = (out / "report.html").read_text()
    assert "Recommended for this model and data" in html
    assert "<h2>Model</h2>" in html  # the re-explained model's circuit diagram
    assert (out / "figures" / "posthoc_attributions.png").is_file()
    assert json.loads((out / "meta.json").read_text())["source_run"] == str(run_dir.resolve())


# Every trust check, at sizes that take seconds on a tiny mlp.
CHECKS = (
    "explain.checks=[sanity,sae,segmentation,naps,beyond]",
    "explain.sanity.samples=4",
    "explain.sae.l1=[0.03]",
    "explain.sae.epochs=3",
    "explain.sae.samples=300",
    "explain.beyond.samples=32",
    "explain.beyond.val_samples=64",
    "explain.beyond.steps=10",
    "explain.beyond.neighbours=10",
    "explain.beyond.k=4",
    "explain.beyond.ssl_epochs=2",
    "explain.beyond.ssl_rows=300",
)


def test_every_trust_check_runs_on_a_finished_run_and_reports_a_verdict(trained_run):
    run_dir, root = trained_run
    result = explain(run_dir, root, "explain.methods=[gradients,ig]", *CHECKS)
    out = Path(result.run_dir)
    checks = json.loads((out / "checks.json").read_text())
    assert list(checks) == ["sanity", "sae", "segmentation", "naps", "beyond"]
    # digits has no part masks: segmentation says so rather than failing the run
    assert checks["segmentation"]["verdict"].startswith("not applicable")
    # the SAE and the transcoder were fitted (two Ray tasks) and scored
    assert {row["kind"] for row in checks["sae"]["summary"]["frontier"]} == {"sae", "transcoder"}
    summary = json.loads((out / "explanations.json").read_text())
    assert summary["recommended"] in {"gradients", "ig"}
    html = (out / "report.html").read_text()
    assert html.count("<strong>Verdict:</strong>") == 5
    assert "Trust checks" in html and "Neural activation patterns" in html


def chunk_tasks() -> dict:
    """Ray's record (its state API) of every explain chunk task of this Ray, by task id."""
    import ray
    from ray.util.state import list_tasks

    address = ray.get_runtime_context().gcs_address
    found = list_tasks(address, filters=[("name", "=", "_attribute_chunk")], detail=True)
    return {task.task_id: task for task in found}


def finished_chunk_tasks(known: dict, timeout_s: float = 30.0) -> list:
    """The chunk tasks not in ``known``, once Ray reports each finished in a worker (task events
    reach the state API about a second late)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ran = [task for task_id, task in chunk_tasks().items() if task_id not in known]
        finished = ran and all(t.state == "FINISHED" and t.worker_pid for t in ran)
        if finished or time.monotonic() > deadline:
            return ran
        time.sleep(0.5)


def test_fanning_out_over_ray_tasks_gives_the_same_explanations(trained_run):
    run_dir, root = trained_run
    # A budget no loaded machine exhausts: Ray workers starting up must not skip a method.
    methods = ("explain.methods=[ig,gradients]", "explain.budget_s=600")
    known = chunk_tasks()
    local = explain(run_dir, root, *methods)
    fanned_at_ms = time.time() * 1000
    fanned = explain(run_dir, root, *methods, "explain.num_tasks=2")
    metrics = [
        json.loads((Path(r.run_dir) / "explanations.json").read_text())["metrics"]
        for r in (local, fanned)
    ]
    assert metrics[0]["ig"]["pgi"] == pytest.approx(metrics[1]["ig"]["pgi"], rel=1e-6)
    assert metrics[0]["gradients"] == pytest.approx(metrics[1]["gradients"], rel=1e-6)
    # The fanned run explained in Ray tasks, in worker processes: at least two chunks per method.
    # The default run (num_tasks=1) started none.
    ran = finished_chunk_tasks(known)
    assert len(ran) >= 4 and all(t.state == "FINISHED" for t in ran), ran
    assert os.getpid() not in {t.worker_pid for t in ran}
    assert min(t.start_time_ms for t in ran) >= fanned_at_ms


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=cnn"], "cannot change ['model=cnn']"),
        (["explain.methods=[shap]"], "unknown ['shap']"),
        (["explain.nope=1"], "explain.nope=1: explain has no key 'nope' (explain keys: "),
        (["explain.num_sample=3"], "explain.num_sample=3: explain has no key 'num_sample'; did"),
        (["explain.sanity.sample=3"], "did you mean explain.sanity.samples?"),
        (["explain.foo.bar=1"], "explain.foo.bar=1: explain has no key 'foo' (explain keys:"),
        (["explain.rank_by=accuracy"], "explain.rank_by"),
        (["explain.checks=[lie_detector]"], "explain.checks: unknown 'lie_detector'"),
        (["explain.checks=[naps]", "explain.naps.delta=0.3"], "explain.naps.delta"),
        (["explain.checks=[sae]", "explain.sae.nope=1"], "explain.sae has no key 'nope'"),
        (["explain.num_samples=many"], "explain.num_samples='many': expected an integer (from "),
    ],
)
def test_bad_explain_input_exits_2_naming_it(trained_run, args, message, capsys):
    run_dir, root = trained_run
    assert main(["explain", str(run_dir), *args]) == 2
    assert message in capsys.readouterr().err


def test_data_the_model_was_not_built_for_exits_2_before_a_folder(trained_run, tmp_path, capsys):
    run_dir, root = trained_run
    args = [str(run_dir), "data=wine", f"run.root={tmp_path}", f"run.cache_dir={root / 'cache'}"]
    assert main(["explain", *args]) == 2
    assert (
        f"the model of {run_dir} takes inputs of shape [1, 8, 8] and tells 10 classes apart, but "
        "the data named has rows of shape [13] and 3 classes; explain it on the data it was "
        "trained on, as for sennflow run: data=digits"
    ) in capsys.readouterr().err
    assert not (tmp_path / "explain").exists()


def test_the_run_folder_may_follow_the_overrides(trained_run, tmp_path, capsys):
    run_dir, root = trained_run
    # the folder is found after the overrides: the refusal is of the override, not the folder
    assert main(["explain", f"run.root={tmp_path}", "explain.nope=1", str(run_dir)]) == 2
    assert "explain.nope" in capsys.readouterr().err
    assert main(["explain", f"run.root={tmp_path}", "explain.methods=all"]) == 2
    assert "explain takes one run folder (runs/pipeline/<id>), before or after" in (
        capsys.readouterr().err
    )
    assert main(["explain", str(run_dir), str(tmp_path)]) == 2
    assert f"explain takes one run folder (runs/pipeline/<id>); got {run_dir}, {tmp_path}" in (
        capsys.readouterr().err
    )


def test_a_path_inside_a_run_folder_names_the_run_folder(trained_run, capsys):
    run_dir, _ = trained_run
    for inside in (run_dir / "checkpoints" / "best", run_dir / "report.html"):
        assert main(["explain", str(inside)]) == 2
        assert f"did you mean the run folder {run_dir}?" in capsys.readouterr().err


def test_a_folder_that_is_no_run_exits_2(tmp_path, capsys):
    assert main(["explain", str(tmp_path)]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err


def test_a_re_explanation_budgets_by_the_run_s_training_stage_wall_time():
    history = [{"epoch_time_s": 0.5}, {"epoch_time_s": 0.25}]
    assert training_seconds({"train": {"wall_s": 21.5, "history": history}}) == 21.5
    assert training_seconds({"train": {"history": history}}) == 0.75  # a run from before
    assert training_seconds({"test": {"accuracy": 0.9}}) is None  # a sweep without retrain
