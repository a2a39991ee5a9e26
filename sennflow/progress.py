"""Rich progress bars for the CLI: training epochs, the trials of a sweep, federated rounds and
continual tasks.

Each bar appears with its first event, which also carries the bar's total (``epochs``, or
``total``), so the CLI never composes a config to size a bar, and a run that stops before the
first event (bad data, an interrupt during ingest) prints no empty bar.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def _shown_when_used(bar) -> Iterator[Callable[[], bool]]:
    """Yield ``show()``, which starts the rich ``bar`` on first call (and then returns True);
    stop it at the end."""
    started = []

    def show() -> bool:
        if started:
            return False
        bar.start()
        started.append(True)
        return True

    try:
        yield show
    finally:
        if started:
            bar.stop()


def _bar(title: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )


@contextlib.contextmanager
def epoch_progress() -> Iterator[None]:
    """Show an epoch bar (with the latest val accuracy) while training runs inside the flow;
    its total is the ``epochs`` of the first epoch event."""
    from rich.markup import escape

    from tasks.progress import epoch_listener

    bar = _bar("[bold]training")
    task = bar.add_task("train", total=None, status="")
    with _shown_when_used(bar) as show:

        def update(metrics: dict) -> None:
            if show():
                bar.update(task, total=metrics["epochs"])
            status = escape(f"[{metrics['stage']}] val_loss={metrics['val_loss']:.4f}")
            if "val_accuracy" in metrics:
                status += f" val_acc={metrics['val_accuracy']:.4f}"
            bar.update(task, completed=metrics["epoch"], status=status)

        with epoch_listener(update):
            yield
        # Early stopping ends before ``epochs``: show the bar as finished at the epoch reached.
        if bar.tasks[0].completed:
            bar.update(task, total=bar.tasks[0].completed)


@contextlib.contextmanager
def trial_progress() -> Iterator[None]:
    """Show a bar of ended search trials with the best value of the sweep's metric so far and
    the failures, as each trial event says them (a resumed sweep's earlier trials count); its
    total is the ``total`` of the first trial event."""
    from tasks.progress import trial_listener

    bar = _bar("[bold]search trials")
    task = bar.add_task("search", total=None, status="")
    with _shown_when_used(bar) as show:

        def update(info: dict) -> None:
            if show():
                bar.update(task, total=info["total"])
            best = info["best"]
            status = "" if best is None else f"best {info['metric']}={best:.4f}"
            if info["failed"]:
                status += f" failed={info['failed']}"
            bar.update(task, completed=info["done"], status=status)

        with trial_listener(update):
            yield


@contextlib.contextmanager
def step_progress(title: str) -> Iterator[None]:
    """One bar per label (a federated strategy's rounds, a continual method's tasks), each with
    the latest accuracy; a label's bar appears with its first event, sized by its ``total``.
    An event with ``done`` sets how many are finished (a resumed run's earlier rounds count),
    else it advances the bar by one."""
    from tasks.progress import step_listener

    bar = _bar(f"[bold]{title}" + " {task.description}")
    tasks: dict[str, int] = {}
    with _shown_when_used(bar) as show:

        def update(info: dict) -> None:
            show()
            label = info["label"]
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=info["total"], status="")
            accuracy = info.get("accuracy")
            status = "" if accuracy is None else f"accuracy={accuracy:.4f}"
            if "done" in info:
                bar.update(tasks[label], completed=info["done"], status=status)
            else:
                bar.advance(tasks[label])
                bar.update(tasks[label], status=status)

        with step_listener(update):
            yield
