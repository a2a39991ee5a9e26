"""Scale-out on a real two-node Ray cluster on loopback, and surviving the loss of a node.

The test starts a Ray head and a second node as separate ``ray start`` processes (custom
resources tell them apart), runs the tiny pipeline through ``sennflow run`` against that cluster
(``RAY_ADDRESS``) with two training workers spread over both nodes, SIGKILLs every process of the
second node mid-training, and checks that Ray Train restarted the worker group on the head from
the last checkpoint and the run finished, with the recovery in the log, ``metrics.json`` and the
report. Both nodes are stopped at the end, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]

BIN = Path(sys.executable).parent
EPOCHS = 30
KILL_AFTER_EPOCH = 4


def ray_env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "token"}


def start_node(name: str, args: list[str], logs: Path) -> subprocess.Popen:
    """``ray start --block`` in its own process group, logging to ``logs/<name>.log``."""
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", *args],
        env=ray_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a node: its ``ray start`` process, the raylet and every worker under it."""
    with contextlib.suppress(psutil.NoSuchProcess):
        tree = psutil.Process(process.pid)
        for child in [*tree.children(recursive=True), tree]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def cluster_nodes(address: str, expected: int, timeout_s: float = 60.0) -> dict[str, str]:
    """``{custom resource: node id}`` once ``expected`` nodes are alive (asked in a separate
    driver: this test process may already hold the session's local Ray)."""
    script = (
        "import json, time, ray\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        f"deadline = time.monotonic() + {timeout_s}\n"
        "while True:\n"
        "    nodes = [n for n in ray.nodes() if n['Alive']]\n"
        f"    if len(nodes) >= {expected} or time.monotonic() > deadline: break\n"
        "    time.sleep(0.5)\n"
        "print(json.dumps({k: n['NodeID'] for n in nodes for k in n['Resources']\n"
        "                  if k.endswith('_node')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=ray_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s + 60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def forget_cluster(head_port: int) -> None:
    """Remove Ray's "current cluster" file if it names our head, as ``ray stop`` would."""
    from ray._common.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    with contextlib.suppress(OSError):
        if path.read_text().strip().endswith(f":{head_port}"):
            path.unlink()


@pytest.fixture
def two_node_cluster(ray_start_lock, tmp_path, loopback):
    """A Ray head (2 CPUs, resource ``head_node``) and a second node (1 CPU, resource
    ``second_node``) on loopback; yields ``(address, {resource: node id}, second node)``."""
    logs = tmp_path / "nodes"
    logs.mkdir()
    free_port = loopback.free_port
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = []
    try:
        nodes.append(
            start_node(
                "head",
                ["--head", "--port", str(port), "--num-cpus", "2",
                 "--resources", '{"head_node": 1}',
                 "--dashboard-host", "127.0.0.1", "--dashboard-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()),
                 "--ray-client-server-port", str(free_port())],
                logs,
            )
        )  # fmt: skip
        cluster_nodes(address, expected=1)
        nodes.append(
            start_node(
                "second",
                ["--address", address, "--num-cpus", "1",
                 "--resources", '{"second_node": 1}',
                 "--dashboard-agent-listen-port", str(free_port())],
                logs,
            )
        )  # fmt: skip
        ids = cluster_nodes(address, expected=2)
        assert set(ids) == {"head_node", "second_node"}, ids
        yield address, ids, nodes[1]
    finally:
        for node in reversed(nodes):
            kill_tree(node)
        forget_cluster(port)


def wait_for_epoch(log: Path, process: subprocess.Popen, epoch: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pattern = re.compile(rf"epoch {epoch}/{EPOCHS}\b")
    while not pattern.search(log.read_text(errors="replace")):
        assert process.poll() is None, f"the run ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no epoch {epoch} yet:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_training_spreads_over_two_nodes_and_survives_losing_one(
    two_node_cluster, prefect_harness, tmp_path
):
    from prefect.settings import PREFECT_API_URL

    address, node_ids, second_node = two_node_cluster
    log = tmp_path / "run.log"
    run = subprocess.Popen(
        [str(BIN / "sennflow"), "run", "experiment=tiny", "model=mlp",
         f"train.epochs={EPOCHS}", "train.num_workers=2", "train.placement_strategy=SPREAD",
         "train.max_failures=3", f"run.root={tmp_path / 'runs'}", "run.id=multinode"],
        env={**ray_env(), "RAY_ADDRESS": address, "PREFECT_API_URL": PREFECT_API_URL.value()},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_epoch(log, run, KILL_AFTER_EPOCH, timeout_s=240)
        kill_tree(second_node)
        assert run.wait(timeout=300) == 0, log.read_text()[-5000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)

    run_dir = tmp_path / "runs" / "pipeline" / "multinode"
    train = json.loads((run_dir / "metrics.json").read_text())["train"]
    head, second = node_ids["head_node"], node_ids["second_node"]
    first, last = train["attempts"][0], train["attempts"][-1]
    assert sorted(first["nodes"]) == sorted([head, second])  # one worker on each node
    assert first["last_epoch"] >= KILL_AFTER_EPOCH
    assert last["nodes"] == [head, head]  # restarted where resources remained
    assert len(train["resumed_at"]) == len(train["attempts"]) - 1 >= 1
    # resumed from the last checkpoint: every epoch ran exactly once, none lost or repeated
    assert [row["epoch"] for row in train["history"]] == list(range(1, EPOCHS + 1))
    assert last["first_epoch"] == train["resumed_at"][-1] + 1

    output = log.read_text()
    assert "worker group restarted (attempt 2): recovered from the checkpoint of epoch" in output
    report = (run_dir / "report.html").read_text()
    assert "time(s) from a checkpoint, after epoch" in report
    assert second[:8] in report and head[:8] in report  # as the training log names them
