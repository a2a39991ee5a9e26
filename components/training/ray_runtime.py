"""Starting or joining Ray with the settings this project relies on."""

from __future__ import annotations

import os

# Train v2 paces every ``ray.train.report`` by its health-check interval (2 s by default): with
# one report per epoch, small datasets would spend most of their time waiting.
_RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_DEDUP_LOGS": "0",
}


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (``"auto"``, ``"host:port"``, ``"ray://host:port"``), else to
    ``$RAY_ADDRESS`` (set by ``sennflow stack up`` for its served runs), else start a new local
    Ray with ``num_cpus``.

    A new local Ray is started explicitly (``address="local"``): left to itself ``ray.init()``
    would join whatever cluster ``ray start`` last started on this machine. A no-op when Ray is
    already initialised in this process (tests share one instance).
    """
    import ray

    if ray.is_initialized():
        return
    for key, value in _RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    env_vars = {k: os.environ[k] for k in _RAY_ENV_DEFAULTS}
    kwargs: dict = {"runtime_env": {"env_vars": env_vars}, "log_to_driver": True}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
