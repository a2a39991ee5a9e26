"""Rich progress bars for the CLI: training epochs, and the trials of a sweep.

Each bar appears with its first event, so a run that stops before it (bad data, an interrupt
during ingest) prints no empty bar.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def _shown_when_used(bar) -> Iterator[Callable[[], None]]:
    """Yield ``show()``, which starts the rich ``bar`` on first call; stop it at the end."""
    started = []

    def show() -> None:
        if not started:
            bar.start()
            started.append(True)

    try:
        yield show
    finally:
        if started:
            bar.stop()


@contextlib.contextmanager
def epoch_progress(epochs: int) -> Iterator[None]:
    """Show an epoch bar (with the latest val accuracy) while training runs inside the flow."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tasks.progress import epoch_listener

    bar = Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        transient=False,
    )
    with _shown_when_used(bar) as show:
        task = bar.add_task("train", total=epochs, status="")

        def update(metrics: dict) -> None:
            show()
            status = escape(f"[{metrics['stage']}] val_loss={metrics['val_loss']:.4f}")
            if "val_accuracy" in metrics:
                status += f" val_acc={metrics['val_accuracy']:.4f}"
            bar.update(task, completed=metrics["epoch"], status=status)

        with epoch_listener(update):
            yield
        # Early stopping ends before ``epochs``: show the bar as finished at the epoch reached.
        bar.update(task, total=bar.tasks[0].completed or epochs)


@contextlib.contextmanager
def trial_progress(num_trials: int) -> Iterator[None]:
    """Show a bar of finished search trials (with the best validation loss so far)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tasks.progress import trial_listener

    best = {"val_loss": float("inf"), "failed": 0}
    bar = Progress(
        TextColumn("[bold]search trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with _shown_when_used(bar) as show:
        task = bar.add_task("search", total=num_trials, status="")

        def update(info: dict) -> None:
            show()
            best["val_loss"] = min(best["val_loss"], info.get("val_loss", float("inf")))
            best["failed"] += info["status"] == "failed"
            status = f"best val_loss={best['val_loss']:.4f}" if best["val_loss"] < 1e308 else ""
            if best["failed"]:
                status += f" failed={best['failed']}"
            bar.advance(task)
            bar.update(task, status=status)

        with trial_listener(update):
            yield


@contextlib.contextmanager
def step_progress(title: str, totals: dict[str, int]) -> Iterator[None]:
    """One bar per label (a federated strategy's rounds, a continual method's tasks), each with
    the latest accuracy."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tasks.progress import step_listener

    bar = Progress(
        TextColumn(f"[bold]{title}" + " {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with _shown_when_used(bar) as show:
        tasks = {label: bar.add_task(label, total=n, status="") for label, n in totals.items()}

        def update(info: dict) -> None:
            task = tasks.get(info["label"])
            if task is None:
                return
            show()
            accuracy = info.get("accuracy")
            status = "" if accuracy is None else f"accuracy={accuracy:.4f}"
            bar.advance(task)
            bar.update(task, status=status)

        with step_listener(update):
            yield
