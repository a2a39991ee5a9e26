"""Epoch listeners: how a front end (the CLI's progress bar) follows training inside a flow.

Flow parameters must be serialisable, so a progress bar cannot be passed in; the CLI registers a
listener here for the duration of a run instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_LISTENERS: list[Callable[[dict], None]] = []


@contextlib.contextmanager
def epoch_listener(listener: Callable[[dict], None]) -> Iterator[None]:
    """Call ``listener(metrics)`` after every training epoch while the context is open."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def notify_epoch(metrics: dict) -> None:
    """Tell every registered listener about one finished epoch."""
    for listener in list(_LISTENERS):
        listener(metrics)
