"""Ray Train: data-parallel training, resume from a checkpoint, recovery from a killed worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.training.checkpoint import ModelSpec, load_model, load_state
from components.training.config import TrainConfig
from components.training.ray_trainer import train_with_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPEC = ModelSpec(name="mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)
ROOT = Path(__file__).resolve().parents[3]

# Starts the project's own Ray in a fresh process (the session's shared Ray is already up), then
# asks its GCS for the cluster id the way any gRPC client would: with and without the token.
AUTH_PROBE = """
import json, grpc, ray
from ray._raylet import AuthenticationTokenLoader
from ray.core.generated import gcs_service_pb2 as pb, gcs_service_pb2_grpc as rpc
from components.training.ray_runtime import ensure_ray

ensure_ray(num_cpus=1)
gcs = ray.get_runtime_context().gcs_address
token = AuthenticationTokenLoader.instance().get_token_for_http_header(ignore_auth_mode=True)

def ask(metadata):
    with grpc.insecure_channel(gcs) as channel:
        try:
            rpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                pb.GetClusterIdRequest(), metadata=metadata, timeout=10
            )
            return "OK"
        except grpc.RpcError as err:
            return err.code().name

answers = {"no token": ask(()), "token": ask(tuple(token.items()))}
print(json.dumps({**answers, "dashboard": ray._private.worker.get_dashboard_url()}))
ray.shutdown()
"""


def test_two_cpu_workers_train_and_keep_best_and_last(ray_session, digits_dataset, tmp_path):
    seen: list[dict] = []
    cfg = TrainConfig(epochs=3, lr=0.01, num_workers=2, early_stopping_patience=0)
    outcome = train_with_ray(
        dataset_path=digits_dataset, spec=SPEC, cfg=cfg, run_dir=tmp_path, on_epoch=seen.append
    )
    assert [h["epoch"] for h in outcome.history] == [1, 2, 3]
    assert [m["epoch"] for m in seen] == [1, 2, 3]  # the driver saw every epoch as it happened
    assert outcome.history[-1]["val_accuracy"] >= 0.7  # chance is 0.1
    best_epoch = min(outcome.history, key=lambda h: h["val_loss"])["epoch"]
    assert outcome.best_epoch == best_epoch
    assert load_state(outcome.best_checkpoint)["fit_state"]["epoch"] == best_epoch
    assert load_state(outcome.last_checkpoint)["fit_state"]["epoch"] == 3
    assert load_model(outcome.best_checkpoint)[1] == SPEC


def test_resume_from_continues_the_epoch_count(ray_session, digits_dataset, tmp_path):
    first = train_with_ray(
        dataset_path=digits_dataset,
        spec=SPEC,
        cfg=TrainConfig(epochs=4, lr=0.01, early_stopping_patience=0),
        run_dir=tmp_path / "a",
    )
    # Extend the finished 4-epoch run to 6 epochs from its last checkpoint.
    resumed = train_with_ray(
        dataset_path=digits_dataset,
        spec=SPEC,
        cfg=TrainConfig(
            epochs=6, lr=0.01, early_stopping_patience=0, resume_from=str(first.last_checkpoint)
        ),
        run_dir=tmp_path / "b",
    )
    assert resumed.resumed_at == [4]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert resumed.history[:4] == first.history


def test_a_killed_worker_restarts_from_the_last_checkpoint(ray_session, digits_dataset, tmp_path):
    cfg = TrainConfig(
        epochs=3,
        lr=0.01,
        num_workers=2,
        early_stopping_patience=0,
        max_failures=1,
        kill_worker_at_epoch=1,
    )
    seen = []
    outcome = train_with_ray(
        dataset_path=digits_dataset, spec=SPEC, cfg=cfg, run_dir=tmp_path, on_epoch=seen.append
    )
    assert (tmp_path / ".worker-killed").exists()  # rank 0 really was SIGKILLed
    assert outcome.resumed_at == [1]  # the new worker group continued after epoch 1
    assert [h["epoch"] for h in outcome.history] == [1, 2, 3]
    # the driver saw the restart: a second attempt from epoch 2, both ranks placed each time
    assert [(a["attempt"], a["first_epoch"], a["last_epoch"]) for a in outcome.attempts] == [
        (1, 1, 1),
        (2, 2, 3),
    ]
    assert all(len(a["nodes"]) == 2 and all(a["nodes"]) for a in outcome.attempts)
    assert [m["attempt"] for m in seen] == [1, 2, 2]


def test_the_ray_a_run_starts_for_itself_refuses_a_client_without_the_token():
    # RAY_AUTH_MODE=disabled in the environment must not start a Ray anyone can join.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    probe = subprocess.run(
        [sys.executable, "-c", AUTH_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    answers = json.loads(probe.stdout.strip().splitlines()[-1])
    assert answers["no token"] == "UNAUTHENTICATED"
    assert answers["token"] == "OK"  # the same call with the token is answered
    assert answers["dashboard"].split(":")[0] == "127.0.0.1"
