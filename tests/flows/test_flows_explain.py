"""``sennflow explain``: re-explain a finished run, without retraining and without touching it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from flows.cli import main
from flows.explain import explain_run
from flows.pipeline import pipeline

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
    assert summary["recommended"] == ranked[0] == result.headline["recommended_method"]
    html = (out / "report.html").read_text()
    assert "Recommended for this model and data" in html
    assert (out / "figures" / "posthoc_attributions.png").is_file()
    assert json.loads((out / "meta.json").read_text())["source_run"] == str(run_dir.resolve())


def test_fanning_out_over_ray_tasks_gives_the_same_explanations(trained_run):
    run_dir, root = trained_run
    methods = "explain.methods=[ig,gradients]"
    local = explain(run_dir, root, methods)
    fanned = explain(run_dir, root, methods, "explain.num_tasks=2")
    metrics = [
        json.loads((Path(r.run_dir) / "explanations.json").read_text())["metrics"]
        for r in (local, fanned)
    ]
    assert metrics[0]["ig"]["pgi"] == pytest.approx(metrics[1]["ig"]["pgi"], rel=1e-6)
    assert metrics[0]["gradients"] == pytest.approx(metrics[1]["gradients"], rel=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=cnn"], "cannot change ['model=cnn']"),
        (["explain.methods=[shap]"], "unknown ['shap']"),
        (["explain.nope=1"], "explain.nope"),
        (["explain.rank_by=accuracy"], "explain.rank_by"),
    ],
)
def test_bad_explain_input_exits_2_naming_it(trained_run, args, message, capsys):
    run_dir, root = trained_run
    assert main(["explain", str(run_dir), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_that_is_no_run_exits_2(tmp_path, capsys):
    assert main(["explain", str(tmp_path)]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err
