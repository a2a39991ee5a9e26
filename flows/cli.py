"""The ``sennflow`` command line: parses arguments, then hands over to the flows.

Heavy frameworks (torch, Ray, Prefect) are imported only once a command really runs, so
``--help`` answers instantly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from flows.config import CONF_DIR, GROUPS

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sennflow`` console script."""
    # Prefect's temporary server would try to send usage telemetry (and log an error offline).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    return args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sennflow",
        description="Train, evaluate and explain self-explaining neural networks.",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser(
        "run",
        help="run the pipeline: ingest -> train -> evaluate -> explain -> report",
        description="Run the pipeline flow. Arguments are Hydra overrides (key=value).",
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=mlp train.epochs=5")
    run.add_argument(
        "--show-config", action="store_true", help="print the composed config and exit"
    )
    run.set_defaults(handler=_run)
    return parser


def config_help() -> str:
    """The config groups, their options and every key with its default (read from conf/)."""
    lines = ["config groups (choose with group=option):"]
    for group in GROUPS:
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if p.stem != "base")
        lines.append(f"  {group:<11} {', '.join(options)}")
    root = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    defaults = {k: v for d in root["defaults"] if isinstance(d, dict) for k, v in d.items()}
    lines.append("\noptions (override with key=value; defaults shown):")
    model_file = CONF_DIR / "model" / f"{defaults['model']}.yaml"
    model_train = (yaml.safe_load(model_file.read_text()) or {}).get("train", {})
    for group in ("data", "model", "train", "explain"):
        values = _group_values(group, defaults.get(group))
        if group == "train":  # the default model sets its own training defaults
            values.update(model_train)
        lines += [f"  {group}.{k}={_show(v)}" for k, v in values.items()]
    for section in ("run", "ray"):
        lines += [f"  {section}.{k}={_show(v)}" for k, v in root[section].items()]
    lines.append(f"  seed={root['seed']}")
    lines.append(
        "\nexamples:\n  sennflow run\n  sennflow run model=mlp data=breast_cancer "
        "train.epochs=5 train.num_workers=2\n  sennflow run experiment=tiny"
    )
    return "\n".join(lines)


def _group_values(group: str, option: str | None) -> dict:
    values: dict = {}
    for name in ("base", option):
        path = CONF_DIR / group / f"{name}.yaml"
        if name and path.exists():
            text = path.read_text()
            loaded = yaml.safe_load(text) or {}
            if text.startswith("# @package _global_"):
                loaded = loaded.get(group, {})
            values.update({k: v for k, v in loaded.items() if k != "defaults"})
    return values


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _run(args: argparse.Namespace) -> int:
    from flows.config import ConfigError, compose, to_settings, to_yaml

    try:
        cfg = compose(args.overrides)
        settings = to_settings(cfg)
    except ConfigError as err:
        return _fail(err)
    if args.show_config:
        print(to_yaml(cfg))
        return 0
    return _run_pipeline(args.overrides, settings.train.epochs)


def _run_pipeline(overrides: list[str], epochs: int) -> int:
    from components.data.errors import DataError
    from components.training.checkpoint import CheckpointError, ModelSpecError
    from flows.config import ConfigError
    from flows.pipeline import pipeline
    from flows.progress import epoch_progress

    try:
        with epoch_progress(epochs):
            result = pipeline(overrides=overrides)
    except (ConfigError, DataError, CheckpointError, ModelSpecError, FileExistsError) as err:
        return _fail(err)
    _print_result(result)
    return 0


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="headline metrics", show_header=False)
    for key, value in result.headline.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    console.print(f"run folder: {result.run_dir}")
    console.print(f"report:     {Path(result.report).resolve()}")


def _fail(err: Exception) -> int:
    print(f"sennflow: error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
