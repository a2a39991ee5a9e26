"""What Prefect adds to the pipeline: plain function calls vs a Prefect flow (issue 7, item 9).

The same pipeline (``make run``'s by default, ``--preset tiny`` for the seconds-long one) three
ways, each in a fresh Python process, timed inside it from the first pipeline call to its return
(interpreter start and imports excluded):

- ``plain``: the pipeline's stages called one after the other as plain functions (the tasks'
  ``.fn`` bodies, the report written directly), no Prefect engine, no API;
- ``temp-new``: ``flows.pipeline.pipeline(...)`` with no ``PREFECT_API_URL``: Prefect starts
  its temporary server, as ``make run`` does, here on a new ``PREFECT_HOME`` (the first run on a
  machine: the server creates and migrates its SQLite database, about 6 s more);
- ``temporary``: the same again on that ``PREFECT_HOME``: every later ``make run``;
- ``server``: the same flow against an already running Prefect server on 127.0.0.1.

Per mode: the whole-flow wall time and its ratio to ``plain``; per task, Prefect's added time is
``(mode wall - plain wall) / number of task runs``; the task runs' own durations as Prefect
recorded them are printed next to the plain ones. Target (issue 7): Prefect adds < 10 % to the
default pipeline.

    python bench/orchestration_overhead.py                  # make run's pipeline (a few minutes)
    python bench/orchestration_overhead.py --preset tiny    # experiment=tiny
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {"default": [], "tiny": ["experiment=tiny"]}


def plain(overrides: list[str]) -> dict:
    """The pipeline's stages as plain calls, as ``flows/pipeline.py`` chains them."""
    from prefect.logging import disable_run_logger

    from components.report import write_report
    from flows.config import compose, to_settings
    from flows.pipeline import metrics_json
    from flows.run import explanation_headline, headline_metrics, open_run, report_data
    from flows.run_folder import write_json
    from tasks.evaluate import evaluate_task
    from tasks.explain import explain_task
    from tasks.ingest import ingest_task
    from tasks.train import train_task

    times: dict[str, float] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        times[name] = time.perf_counter() - start
        return out

    start = time.perf_counter()
    cfg = compose(overrides)
    settings = to_settings(cfg)
    with disable_run_logger():
        run = open_run("pipeline", settings, cfg)
        dataset = timed("ingest", ingest_task.fn, settings.data, settings.run.cache_dir)
        spec = settings.model_spec(dataset.meta)
        outcome = timed(
            "train", train_task.fn, dataset.path, spec, settings.train, run.run_dir, settings.run
        )
        test = timed(
            "evaluate", evaluate_task.fn, outcome.best_checkpoint, dataset.path, settings.seed
        )
        explanations = timed(
            "explain",
            explain_task.fn,
            outcome.best_checkpoint,
            dataset.path,
            settings.explain,
            settings.seed,
        )
        headline = {**headline_metrics(test, outcome), **explanation_headline(explanations)}
        write_json(run.run_dir / "metrics.json", metrics_json(test, outcome, dataset))
        data = report_data(
            run,
            dataset,
            title="sennflow pipeline",
            headline=headline,
            metrics=test,
            history=outcome.history,
            explanations=explanations,
        )
        timed("report", write_report, run.run_dir, data)
    return {"wall_s": time.perf_counter() - start, "tasks": times}


def flow(overrides: list[str]) -> dict:
    """The Prefect flow; the task runs' durations read back from the API it used."""
    from prefect import get_client

    from flows.pipeline import pipeline

    start = time.perf_counter()
    pipeline(overrides=overrides)
    wall = time.perf_counter() - start
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(limit=1, sort="START_TIME_DESC")
        task_runs = client.read_task_runs()
        tasks = {
            t.name.rsplit("-", 1)[0]: t.total_run_time.total_seconds()
            for t in task_runs
            if t.flow_run_id == run.id
        }
    return {"wall_s": wall, "tasks": tasks, "task_runs": len(tasks)}


def run_mode(mode: str, overrides: list[str], env: dict) -> dict:
    """One mode in a fresh interpreter; returns its JSON result."""
    code = (
        "import json, sys; from bench.orchestration_overhead import plain, flow; "
        f"print('RESULT ' + json.dumps({'plain' if mode == 'plain' else 'flow'}({overrides!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    """A Prefect server on a free loopback port, with its own SQLite database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    prefect = Path(sys.executable).with_name("prefect")
    process = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the Prefect server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        overrides = [*PRESETS[args.preset], f"run.root={tmp / 'runs'}"]
        base = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        base.pop("PREFECT_API_URL", None)
        # ingest once so no mode pays for building the dataset cache
        run_mode("plain", [*overrides, "train.epochs=1"], base)
        results = {"plain": run_mode("plain", overrides, base)}
        temporary = {**base, "PREFECT_HOME": str(tmp / "prefect-temporary")}
        results["temp-new"] = run_mode("temp-new", overrides, temporary)
        results["temporary"] = run_mode("temporary", overrides, temporary)
        server, url = prefect_server(tmp / "prefect-server")
        try:
            results["server"] = run_mode("server", overrides, {**base, "PREFECT_API_URL": url})
        finally:
            server.terminate()
            server.wait(timeout=30)
    report(results, args.preset)


def report(results: dict, preset: str) -> None:
    plain_wall = results["plain"]["wall_s"]
    print(f"\npipeline preset: {preset}")
    print(f"{'mode':<10} {'wall s':>8} {'vs plain':>9} {'added ms/task':>14}")
    for mode, result in results.items():
        n = result.get("task_runs") or len(result["tasks"])
        added = (result["wall_s"] - plain_wall) / n * 1000 if mode != "plain" else 0.0
        print(
            f"{mode:<10} {result['wall_s']:8.2f} {result['wall_s'] / plain_wall:9.3f} {added:14.0f}"
        )
    print("\ntask durations (s): plain calls vs the task runs as Prefect recorded them")
    names = list(results["plain"]["tasks"])
    print(f"{'task':<10}" + "".join(f"{m:>11}" for m in results))
    for name in names:
        row = "".join(f"{results[m]['tasks'].get(name, float('nan')):11.2f}" for m in results)
        print(f"{name:<10}{row}")


if __name__ == "__main__":
    main()
