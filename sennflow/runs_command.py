"""``sennflow runs``: the runs under a run root, their state and headline, and how to resume
those that stopped (:mod:`flows.run_listing`)."""

from __future__ import annotations

import argparse

from flows.run_folder import COMPLETED, FAILED, INTERRUPTED, KILLED, RUNNING

STATE_STYLES = {COMPLETED: "green", RUNNING: "cyan", INTERRUPTED: "yellow", KILLED: "yellow"}
HEADLINE_SHOWN = 3  # metrics per run; the report has them all


def runs_command(sub) -> None:
    """Add ``sennflow runs [ROOT] [--flow F] [--state S]`` to the subcommands ``sub``."""
    runs = sub.add_parser(
        "runs",
        help="list the runs under a run root: state, what ran, headline metrics, how to resume",
        description=(
            "List the run folders under ROOT (runs/<flow>/<run-id>/), oldest first: when each "
            "started, its state (running, completed, failed, interrupted, or killed: left "
            "running by a process gone from this host), its last training epoch, what it ran "
            "(model and data) and its headline metrics; then the command that resumes each run "
            "that stopped."
        ),
    )
    runs.add_argument(
        "root",
        nargs="?",
        default="runs",
        help="the run root (default: runs), one flow's folder of it, or one run folder",
    )
    runs.add_argument("--flow", help="only this flow's runs (pipeline, sweep, explain, ...)")
    runs.add_argument(
        "--state",
        choices=(RUNNING, COMPLETED, FAILED, INTERRUPTED, KILLED),
        help="only runs in this state",
    )
    runs.set_defaults(handler=_runs)


def _runs(args: argparse.Namespace) -> int:
    from flows.config import ConfigError
    from flows.run_listing import list_runs
    from sennflow.cli import fail

    try:
        rows = list_runs(args.root)
    except ConfigError as err:
        return fail(err)
    flows = sorted({row.flow for row in rows})
    rows = [row for row in rows if args.flow in (None, row.flow)]
    rows = [row for row in rows if args.state in (None, row.state)]
    if not rows:
        found = f"no such runs under {args.root} (flows there: {', '.join(flows)})"
        print(found if flows else f"no runs under {args.root}")
        return 0
    _print_rows(rows)
    for row in rows:
        if row.problem:
            print(f"{row.flow}/{row.run_id}: {row.problem}")
    stopped = [row.resume for row in rows if row.resume]
    if stopped:
        print("to resume:", *stopped, sep="\n  ")
    return 0


def _print_rows(rows) -> None:
    """One line per run, its columns aligned; a line longer than the terminal wraps whole
    rather than being cut, so every run id and metric can be read and grepped."""
    from rich.console import Console
    from rich.text import Text

    header = ("started (UTC)", "run", "state", "epoch", "what", "headline")
    cells = [header] + [
        (
            (row.started or "")[:16].replace("T", " "),
            f"{row.flow}/{row.run_id}",
            row.state,
            "" if row.epoch is None else str(row.epoch),
            row.what or "",
            _headline(row.headline),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    console = Console(highlight=False)
    for n, line in enumerate(cells):
        text = Text()
        for i, (cell, width) in enumerate(zip(line, widths, strict=True)):
            padded = cell.rjust(width) if i == 3 else cell.ljust(width)
            style = "bold" if n == 0 else (STATE_STYLES.get(cell, "red") if i == 2 else "")
            text.append(padded + ("  " if i < len(header) - 1 else ""), style=style)
        text.rstrip()
        console.print(text, soft_wrap=True)


def _headline(headline: dict) -> str:
    return "  ".join(
        f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in list(headline.items())[:HEADLINE_SHOWN]
    )
