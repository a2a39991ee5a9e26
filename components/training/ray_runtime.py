"""Starting or joining Ray with the settings this project relies on."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

# Train v2 paces every ``ray.train.report`` by its health-check interval (2 s by default): with
# one report per epoch, small datasets would spend most of their time waiting.
_RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_DEDUP_LOGS": "0",
}

# Ray binds its core gRPC ports (GCS, raylet, object manager, workers) on every interface and
# offers no setting to change that; the token guards them. What can bind to loopback does.
LOOPBACK = "127.0.0.1"
_STATE_API = "RAY_API_SERVER_ADDRESS"
_PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
# Whether the running Ray is one ensure_ray started (a fixed size), not a joined cluster.
_started_here = False


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (``"auto"``, ``"host:port"``, ``"ray://host:port"``), else to
    ``$RAY_ADDRESS`` (set by ``sennflow stack up`` for its served runs), else start a new local
    Ray with ``num_cpus``.

    A new local Ray is started explicitly (``address="local"``): left to itself ``ray.init()``
    would join whatever cluster ``ray start`` last started on this machine. It always has token
    authentication on (``RAY_AUTH_MODE=token`` even where the environment says otherwise; the
    token is ``$RAY_AUTH_TOKEN``, else ``~/.ray/auth_token``, created if missing) and its
    dashboard on 127.0.0.1. A no-op when Ray is already initialised in this process (tests share
    one instance).

    A new local Ray gets no job ``runtime_env``: its raylet, and so every worker, inherits this
    process's environment, and Ray leases the idle workers it starts for the first driver (one
    per CPU) only to tasks and actors of the default runtime env. With one, even the first
    trials would each start a new process (an actor on a pre-started worker: 0.45 s, on a new
    one: 2.2 s). A joined cluster's workers get the settings through ``runtime_env``.
    """
    import ray

    if ray.is_initialized():
        return
    for key, value in _RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS")
    global _started_here
    _started_here = False
    if address:
        check_reachable(address)
        env_vars = {k: os.environ[k] for k in _RAY_ENV_DEFAULTS}
        ray.init(address=address, runtime_env={"env_vars": env_vars}, log_to_driver=True)
    else:
        _require_token_auth()
        # One node that cannot be preempted: Ray Train's preemption watcher (an actor per training
        # run, for spot nodes) would only cost a process start and log an error about restarts.
        os.environ.setdefault(_PREEMPTION_WATCHER, "0")
        port = _free_loopback_port()
        with _state_api_for_workers(port):
            ray.init(
                address="local",
                num_cpus=num_cpus,
                dashboard_host=LOOPBACK,
                dashboard_port=port,
                log_to_driver=True,
            )
        _started_here = True


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """:class:`ConnectionError` unless something accepts a connection at ``address``'s
    ``host:port`` (``"host:port"`` or ``"ray://host:port"``) within ``timeout_s``: ``ray.init``
    would retry an address where no cluster runs for ever. Addresses without a port
    (``"auto"``, ``"local"``) or of another scheme are Ray's to resolve."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or "://" in host:
        return
    host = host.strip("[]") or LOOPBACK
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else err.strerror or str(err)
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({reason}); start one there (ray start "
            "--head, or ray up cluster.yaml) or give the address ray start printed"
        ) from err


def check_group_fits(num_workers: int, cpus_per_worker: int, use_gpu: bool, key: str) -> None:
    """``ValueError`` when a Ray Train group of ``num_workers`` (each ``cpus_per_worker`` CPUs
    and, with ``use_gpu``, a GPU) cannot fit on the Ray this process started: Ray Train would
    wait for the resources forever. ``key`` is the config group the numbers come from
    (``train``, ``ssl``, ``pfn``), for the message. A joined cluster may grow (an autoscaler),
    so it is not checked. Call after :func:`ensure_ray`."""
    import ray

    if not (_started_here and ray.is_initialized()):
        return
    have = ray.cluster_resources()
    cpus, gpus = num_workers * cpus_per_worker, num_workers if use_gpu else 0
    if cpus > have.get("CPU", 0):
        raise ValueError(
            f"{key}.num_workers={num_workers} needs {cpus} CPUs ({cpus_per_worker} per worker), "
            f"but the local Ray has {have.get('CPU', 0):g} (ray.num_cpus)"
        )
    if gpus > have.get("GPU", 0):
        raise ValueError(
            f"{key}.use_gpu=true with {key}.num_workers={num_workers} needs {gpus} GPU(s), but "
            f"the local Ray has {have.get('GPU', 0):g}: no CUDA GPU is visible to it"
        )


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _state_api_for_workers(dashboard_port: int) -> Iterator[None]:
    """Within the block, ``RAY_API_SERVER_ADDRESS`` names the dashboard of the Ray about to start,
    so its raylet, and every worker the raylet starts, inherit it; this process's environment
    (and so any ``ray start`` or CLI it launches later) is restored afterwards.

    Left to itself, a worker's state-API call (Ray Train's ``PlacementGroupCleaner``, which frees
    a run's CPUs when its controller dies, e.g. when a scheduler stops a trial) looks for its
    cluster among the Ray processes of this machine and fails with "Found multiple active Ray
    instances" while another Ray runs here: the run's placement group then stays reserved and
    later trials wait for CPUs forever.
    """
    before = os.environ.get(_STATE_API)
    os.environ[_STATE_API] = f"http://{LOOPBACK}:{dashboard_port}"
    try:
        yield
    finally:
        if before is None:
            del os.environ[_STATE_API]
        else:
            os.environ[_STATE_API] = before


def _require_token_auth() -> None:
    """Turn token authentication on for the Ray this process starts and for its workers."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    # Ray reads RAY_AUTH_MODE into its config once, on import; setting the variable alone would
    # leave this driver in the old mode and the new head refuses it. Ray's own helper does both.
    _enable_token_auth()
