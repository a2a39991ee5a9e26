"""Progress listeners: how a front end (the CLI's progress bars) follows work inside a flow.

Flow parameters must be serialisable, so a progress bar cannot be passed in; the CLI registers a
listener here for the duration of a run instead. Three kinds of events: a finished training epoch
(its metrics and ``epochs``, the epochs to run), a finished search trial (its id, status, last
metrics and ``total``, the trials to run), and a finished step of a federated or continual run (a
round or a task: its ``label``, accuracy and ``total``, the steps of that label). Each event
carries its total, so a listener needs no config to size a progress bar.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_LISTENERS: dict[str, list[Callable[[dict], None]]] = {"epoch": [], "trial": [], "step": []}


@contextlib.contextmanager
def _listening(kind: str, listener: Callable[[dict], None]) -> Iterator[None]:
    _LISTENERS[kind].append(listener)
    try:
        yield
    finally:
        _LISTENERS[kind].remove(listener)


def epoch_listener(listener: Callable[[dict], None]):
    """Call ``listener(metrics)`` after every training epoch while the context is open."""
    return _listening("epoch", listener)


def trial_listener(listener: Callable[[dict], None]):
    """Call ``listener(info)`` after every finished or failed search trial while open."""
    return _listening("trial", listener)


def notify_epoch(metrics: dict) -> None:
    """Tell every registered listener about one finished epoch."""
    for listener in list(_LISTENERS["epoch"]):
        listener(metrics)


def notify_trial(info: dict) -> None:
    """Tell every registered listener about one finished or failed trial."""
    for listener in list(_LISTENERS["trial"]):
        listener(info)


def step_listener(listener: Callable[[dict], None]):
    """Call ``listener(info)`` after every federated round or continual task while open."""
    return _listening("step", listener)


def notify_step(info: dict) -> None:
    """Tell every registered listener about one finished round or task."""
    for listener in list(_LISTENERS["step"]):
        listener(info)
