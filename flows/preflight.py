"""Checks of a run's inputs that read none of its data: the CLI runs them before the Prefect
server starts, so a mistyped path or cluster address is one message within seconds instead of
an error after the server, the ingest and the model build (or, for the address, a wait without
end); the pipeline flow runs them before it ingests, for a run started from a deployment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows.config import ConfigError

if TYPE_CHECKING:
    from flows.config import FlowSettings


def check_inputs(settings: FlowSettings) -> None:
    """The files a run of ``settings`` reads are there: the data's file or folder, the
    checkpoint of ``train.resume_from`` (complete) and the weights file of
    ``model.params.pretrained``; and a Ray cluster answers at ``ray.address``.

    Raises:
        DataError, CheckpointError, PretrainedError: as the stage that reads it would.
        ConfigError: nothing answers at ``ray.address``.
    """
    from components.data.ingest import check_source
    from components.training.checkpoint import load_spec
    from components.training.pretrained import check_weights_file
    from components.training.ray_runtime import check_reachable

    if settings.run.ray_address:
        try:
            check_reachable(settings.run.ray_address)
        except ConnectionError as err:
            raise ConfigError(f"ray.address={settings.run.ray_address}: {err}") from err
    check_source(settings.data)
    if settings.train.resume_from:
        load_spec(settings.train.resume_from)
    if pretrained := settings.model.params.get("pretrained"):
        check_weights_file(str(pretrained))
