"""The CLI's progress bars take their totals from the first event (the CLI composes no config)."""

from __future__ import annotations

from sennflow.progress import epoch_progress, step_progress, trial_progress
from tasks.progress import notify_epoch, notify_step, notify_trial


def epoch(n: int) -> dict:
    return {"epoch": n, "epochs": 30, "stage": "joint", "val_loss": 0.5, "val_accuracy": 0.9}


def test_each_bar_is_sized_by_its_events(capsys):
    with trial_progress():
        accuracy = {"total": 4, "metric": "val_accuracy", "mode": "max"}
        notify_trial({"trial": "t0", "done": 1, "failed": 0, "best": 0.75, **accuracy})
        notify_trial({"trial": "t1", "done": 2, "failed": 1, "best": 0.75, **accuracy})
        notify_trial({"trial": "t2", "done": 3, "failed": 1, "best": 0.75, **accuracy})
    with step_progress("rounds"):
        notify_step({"label": "fedavg", "accuracy": 0.5, "total": 5})
        notify_step({"label": "prototypes", "accuracy": 0.75, "total": 7})
        notify_step({"label": "fedavg", "accuracy": 0.625, "total": 5})
    out = capsys.readouterr().out
    assert "3/4" in out and "best val_accuracy=0.7500 failed=1" in out
    assert "rounds fedavg" in out and "2/5" in out and "1/7" in out


def test_the_epoch_bar_ends_at_the_epoch_reached(capsys):
    with epoch_progress():
        assert capsys.readouterr().out == ""  # no bar before the first event
        notify_epoch(epoch(1))
        notify_epoch(epoch(2))
        notify_epoch(epoch(3))  # then early stopping: 3 of 30
    assert "3/3" in capsys.readouterr().out


def test_a_resumed_run_counts_its_earlier_rounds_as_done(capsys):
    with step_progress("rounds"):  # a prune run resumed after 3 of its 7 rounds
        for done in (4, 5):
            notify_step({"label": "ticket", "accuracy": 0.5, "done": done, "total": 7})
    assert "5/7" in capsys.readouterr().out
