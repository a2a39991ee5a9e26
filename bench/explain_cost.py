"""Explain stage vs train stage of the same pipeline run (target: explain <= train).

Two runs of the real pipeline flow (``flows.pipeline.pipeline``, what ``sennflow run`` calls:
Prefect's temporary server, Ray Train, evaluate, explain, report), side by side in one process:

* (a) the default ``parts`` run: ``sennflow run experiment=parts`` (ProtoPNet, 3,000 generated
  32x32 RGB images, 30 epochs; ``explain.budget_s=auto``, the defaults of ``conf/explain``);
* (b) a 224x224 RGB image folder: ``--images`` generated ``parts`` images written as JPEG files
  in class folders (``components.data.parts_folder.write_parts_folder``), then
  ``sennflow run data=image_folder data.path=<folder> model=cnn train.epochs=<--epochs>``.

Each stage time is the wall time (end - start) of the run's ``train`` and ``explain`` task runs,
read back from Prefect after the flow; the explain task's own log line (its budget, the counts
it chose and the seconds per part) is printed with it. Explain includes everything the stage
does: the prototype explanations and, for part-prototype models, the "because" table, then the
post-hoc methods within what is left of the budget.

To measure your own images instead of the generated folder, pass the overrides of (b):

    python bench/explain_cost.py                        # (a) and (b), defaults
    python bench/explain_cost.py --only b --images 300 --epochs 2
    python bench/explain_cost.py --only b --b-overrides data=image_folder \\
        data.path=/data/birds model=protopnet +model.params.backbone=resnet18 train.epochs=5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PARTS = ["experiment=parts"]


def image_overrides(root: Path, images: int, epochs: int, model: str) -> list[str]:
    """Generate the 224x224 JPEG folder of (b) and return its pipeline overrides."""
    from components.data.parts_folder import write_parts_folder

    folder = write_parts_folder(root / "images", num_samples=images, size=224, formats=("jpeg",))
    return ["data=image_folder", f"data.path={folder}", f"model={model}", f"train.epochs={epochs}"]


def stage_times(overrides: list[str], root: Path) -> dict:
    """Run the pipeline with ``overrides``; the train and explain task runs' wall times."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from flows.pipeline import pipeline

    where = [f"run.root={root / 'runs'}", f"run.cache_dir={root / 'cache'}"]
    start = time.perf_counter()
    state = pipeline(overrides=[*overrides, *where], return_state=True)
    wall = time.perf_counter() - start
    result = state.result()
    flow_run = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run]))
        )
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run]))
        )
    seconds = {
        run.name.rsplit("-", 1)[0]: (run.end_time - run.start_time).total_seconds()
        for run in runs
        if run.start_time and run.end_time
    }
    lines = [log.message for log in logs if log.message.startswith("explain stage")]
    return {
        "train": seconds["train"],
        "explain": seconds["explain"],
        "wall": wall,
        "budget": lines[-1] if lines else "(no post-hoc explanations)",
        "headline": result.headline,
    }


def report(name: str, command: str, times: dict) -> None:
    ratio = times["explain"] / times["train"]
    print(f"\n({name}) {command}")
    print(f"  train stage   {times['train']:8.1f} s")
    print(f"  explain stage {times['explain']:8.1f} s")
    print(f"  ratio explain/train {ratio:.2f}  (target <= 1: {'met' if ratio <= 1 else 'NOT met'})")
    print(f"  whole run {times['wall']:.1f} s; recommended explanation: "
          f"{times['headline'].get('recommended_explanation')}")  # fmt: skip
    print(f"  {times['budget']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["a", "b"], help="run one case")
    parser.add_argument("--images", type=int, default=600, help="(b): images generated")
    parser.add_argument("--epochs", type=int, default=3, help="(b): training epochs")
    parser.add_argument("--model", default="cnn", help="(b): model config")
    parser.add_argument("--b-overrides", nargs="+", help="(b): overrides instead of a folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sennflow-explain-cost-") as tmp:
        root = Path(tmp)
        cases = []
        if args.only != "b":
            cases.append(("a", "sennflow run " + " ".join(PARTS), PARTS))
        if args.only != "a":
            overrides = args.b_overrides or image_overrides(
                root, args.images, args.epochs, args.model
            )
            shown = [
                o if not o.startswith("data.path=") else "data.path=<folder>" for o in overrides
            ]
            cases.append(("b", "sennflow run " + " ".join(shown), overrides))
        for name, command, overrides in cases:
            report(name, command, stage_times(overrides, root / name))


if __name__ == "__main__":
    main()
