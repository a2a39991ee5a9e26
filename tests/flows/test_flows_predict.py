"""``sennflow predict``: a trained run's model on inputs it has not seen, through the CLI.

The invariant behind the first tests: predicting the files the run's test split came from
scores exactly what the evaluate stage scored on that split."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.data.parts_folder import write_parts_folder
from flows.pipeline import pipeline
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _predict(run_dir: Path, root: Path, inputs: Path | str, *extra: str) -> int:
    return main(["predict", str(run_dir), str(inputs), f"run.root={root / 'runs'}", *extra])


def _only_run(root: Path, flow: str = "predict") -> Path:
    (folder,) = (root / "runs" / flow).iterdir()
    return folder


@pytest.fixture(scope="module")
def image_run(prefect_harness, ray_session, tmp_path_factory):
    """ProtoPNet (tiny) trained on a generated image folder with a fixed test/ split."""
    root = tmp_path_factory.mktemp("predict-images")
    images = write_parts_folder(
        root / "images", num_samples=160, size=32, formats=("png", "jpeg"), layout="split_folders"
    )
    result = pipeline(
        overrides=[
            "experiment=tiny",
            "train.epochs=3",
            "explain.methods=[gradients]",
            "data=image_folder",
            f"data.path={images}",
            "data.image_size=32",
            "model=protopnet",
            f"run.root={root / 'runs'}",
            f"run.cache_dir={root / 'cache'}",
        ]
    )
    return Path(result.run_dir), root, images


def test_a_held_out_image_folder_is_predicted_scored_and_explained(image_run, tmp_path, capsys):
    run_dir, root, images = image_run
    before = _digest(run_dir)
    held = tmp_path / "held"
    shutil.copytree(images / "test", held)
    (held / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (40, 20)).save(held / "thumbnail.png")  # under the 32 px input: refused
    (held / "notes.txt").write_text("a stray file")

    assert _predict(run_dir, tmp_path, held) == 2  # unusable files: nothing written
    err = capsys.readouterr().err
    assert "2 image file(s) are not usable images: broken.jpg: " in err
    assert "thumbnail.png: 40x20 pixels, smaller than the model's 32x32 input" in err
    assert not (tmp_path / "runs" / "predict").exists()

    assert _predict(run_dir, tmp_path, held, "predict.skip_invalid=true") == 0
    out = _only_run(tmp_path)
    assert _digest(run_dir) == before  # the trained run is only read
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["labelled"] == test["num_samples"] == summary["rows"]  # class folders: labels
    assert summary["metrics"]["accuracy"] == test["accuracy"]  # the evaluate stage's, exactly
    assert summary["metrics"]["nll"] == pytest.approx(test["nll"], rel=1e-5)
    assert [f["path"] for f in summary["bad_files"]] == ["broken.jpg", "thumbnail.png"]
    headline = json.loads((out / "status.json").read_text())["headline"]  # `sennflow runs`
    assert headline["accuracy"] == test["accuracy"] and headline["files_skipped"] == 2
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == test["num_samples"]
    names = json.loads((out / "meta.json").read_text())
    assert names["source_run"] == str(run_dir.resolve()) and names["input"] == str(held)
    correct = [r["predicted"] == r["true"] for r in rows]
    assert np.mean(correct) == pytest.approx(test["accuracy"])
    assert all(r["prototype_1"].startswith("P") for r in rows)  # the prototypes behind each
    html = (out / "report.html").read_text()
    for expected in ("<h2>Predictions</h2>", "Skipped files (2)", "This looks like that"):
        assert expected in html
    assert "Inputs (true and predicted class)" not in html  # these inputs name their class


@pytest.fixture(scope="module")
def table_run(prefect_harness, ray_session, tmp_path_factory):
    """An MLP trained on a Parquet folder with fixed train/val/test files and a word column."""
    root = tmp_path_factory.mktemp("predict-table")
    folder = root / "table"
    folder.mkdir()
    for seed, split in enumerate(("train", "val", "test")):
        rng = np.random.default_rng(seed)
        size, colour = rng.normal(size=120), rng.choice(["red", "blue"], 120)
        label = np.where(size + (colour == "red") > 0.5, "yes", "no")
        frame = pd.DataFrame({"size": size, "colour": colour, "label": label})
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    result = pipeline(
        overrides=[
            "experiment=tiny",
            "model=mlp",
            "explain.methods=[]",
            "data=parquet",
            f"data.path={folder}",
            f"run.root={root / 'runs'}",
            f"run.cache_dir={root / 'cache'}",
        ]
    )
    return Path(result.run_dir), root, folder


def test_new_rows_are_predicted_and_the_test_file_scores_as_evaluated(table_run, tmp_path):
    run_dir, root, folder = table_run
    new = tmp_path / "new.csv"
    pd.read_parquet(folder / "test.parquet").drop(columns="label").to_csv(new, index=False)
    cache = f"run.cache_dir={root / 'cache'}"
    assert _predict(run_dir, tmp_path, new, cache, "run.id=new", "predict.top_k=1") == 0
    out = tmp_path / "runs" / "predict" / "new"
    header = (out / "predictions.csv").read_text().splitlines()[0]
    assert header == '"input","predicted","probability"'  # no label column: nothing to score
    assert "metrics" not in json.loads((out / "predictions.json").read_text())
    assert "<h2>Evaluation</h2>" not in (out / "report.html").read_text()

    assert _predict(run_dir, tmp_path, folder / "test.parquet", cache, "run.id=test") == 0
    summary = json.loads((tmp_path / "runs" / "predict" / "test" / "predictions.json").read_text())
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert summary["metrics"]["accuracy"] == test["accuracy"]
    assert summary["metrics"]["nll"] == pytest.approx(test["nll"], rel=1e-5)


def test_inputs_the_model_cannot_take_exit_2_before_a_run_folder(
    table_run, tmp_path, flow_run_count, capsys
):
    run_dir, root, folder = table_run
    cache = f"run.cache_dir={root / 'cache'}"
    purple = tmp_path / "purple.csv"
    frame = pd.read_parquet(folder / "test.parquet")
    frame.assign(colour="purple").to_csv(purple, index=False)
    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "red").save(image)
    cases = [  # (arguments, message, whether the CLI refuses them before a flow run starts)
        ([purple, cache], "column 'colour', 120 rows (first at lines 2, 3, 4, 5, 6): holds words"),
        ([tmp_path / "nothing.csv", cache], "nothing.csv: does not exist", True),
        (
            [folder / "test.parquet", cache, "model.name=cnn"],
            "cannot change ['model.name=cnn']",
            True,
        ),
        ([folder / "test.parquet", cache, "predict.top_k=0"], "predict.top_k must be >= 1", True),
        ([folder / "test.parquet", "data=wine", cache], "is not the dataset"),
        ([image, cache], "holds images, but the model takes a CSV or Parquet"),
    ]
    for args, expected, *before_flow in cases:
        flow_runs = flow_run_count()
        assert _predict(run_dir, tmp_path, *args) == 2, args
        assert expected in capsys.readouterr().err, args
        assert (flow_run_count() == flow_runs) == bool(before_flow), args
    assert not (tmp_path / "runs").exists()
