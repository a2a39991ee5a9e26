"""Ray Train: data-parallel training, resume from a checkpoint, recovery from a killed worker."""

from __future__ import annotations

import signal

import pytest

from components.training.checkpoint import ModelSpec, load_model, load_state
from components.training.config import TrainConfig
from components.training.ray_trainer import train_with_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPEC = ModelSpec(name="mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)


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
    handler = signal.getsignal(signal.SIGINT)
    first = train_with_ray(
        dataset_path=digits_dataset,
        spec=SPEC,
        cfg=TrainConfig(epochs=4, lr=0.01, early_stopping_patience=0),
        run_dir=tmp_path / "a",
    )
    # without an epoch listener too, Ray Train installed no SIGINT handler of its own (a
    # pruning round's fit): Ctrl-C stays the CLI's, which marks the run interrupted
    assert signal.getsignal(signal.SIGINT) is handler
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


def test_the_ray_a_run_starts_for_itself_refuses_a_client_without_the_token(ray_session):
    # ray_session is ensure_ray(num_cpus=2): the Ray `sennflow run` starts for itself. Ask its GCS
    # for the cluster id the way any gRPC client would, with and without the token.
    import grpc
    import ray
    from ray._raylet import AuthenticationTokenLoader
    from ray.core.generated import gcs_service_pb2 as pb
    from ray.core.generated import gcs_service_pb2_grpc as rpc

    gcs = ray.get_runtime_context().gcs_address
    loader = AuthenticationTokenLoader.instance()
    token = loader.get_token_for_http_header(ignore_auth_mode=True)

    def ask(metadata) -> str:
        with grpc.insecure_channel(gcs) as channel:
            try:
                stub = rpc.NodeInfoGcsServiceStub(channel)
                stub.GetClusterId(pb.GetClusterIdRequest(), metadata=metadata, timeout=10)
                return "OK"
            except grpc.RpcError as err:
                return err.code().name

    assert ask(()) == "UNAUTHENTICATED"
    assert ask(tuple(token.items())) == "OK"  # the same call with the token is answered
    assert ray._private.worker.get_dashboard_url().split(":")[0] == "127.0.0.1"


def test_workers_find_their_own_ray_while_another_runs_on_the_machine(ray_session):
    # Ray Train's PlacementGroupCleaner asks the state API whether a run's controller is alive
    # (is_actor_alive) and frees the run's CPUs when it is not; with a second Ray on this machine
    # the call used to fail with "Found multiple active Ray instances" and the CPUs stayed taken.
    import os
    import subprocess
    import sys

    import ray

    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, ray; ray.init(address='local', num_cpus=0, include_dashboard=False); "
            "print('up', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == "up"

        @ray.remote(num_cpus=0)
        class Probe:
            def alive(self, actor_id: str) -> bool:
                from ray.train.v2._internal.state.util import is_actor_alive

                return is_actor_alive(actor_id, timeout=30)

        probe = Probe.remote()
        actor_id = probe._actor_id.hex()
        assert ray.get(probe.alive.remote(actor_id), timeout=120) is True
        # only the Ray's own processes carry its address: a `ray start` launched from here must
        # not point its workers at this dashboard
        assert "RAY_API_SERVER_ADDRESS" not in os.environ
    finally:
        other.communicate("", timeout=60)
