"""The ``sennflow`` command line: parses arguments, then hands over to the flows.

Each command checks its config first, through the flow module's own functions, and a
``ConfigError`` is exit 2 before any server or cluster starts; the flow then composes the same
config again, from memory (:func:`flows.config.reused_compositions`), so Hydra composes once.
Heavy frameworks (torch, Ray, Prefect) are imported only once a command really runs, and help
composes the config only when printed, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from flows.config import DEFAULT_SEARCH, reused_compositions
from sennflow import help as helps
from sennflow.runs_command import runs_command
from sennflow.stack_command import stack_command

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1
SHOW_CONFIG = "print the composed config and exit"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sennflow`` console script."""
    # Prefect's temporary server would try to send usage telemetry (and log an error offline).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Ray's native crash handler in the driver also takes SIGTERM and ends the process on the
    # spot; without it, SIGTERM reaches Python and the run is marked interrupted (exit 143).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    parser = _parser()
    args = _parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    with reused_compositions():
        return args.handler(args)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with overrides on both sides of a flag (``sennflow sweep a=1 --resume
    b=2``): argparse takes only the first run of positionals, and its intermixed parsing does
    not work with subcommands. Anything else it cannot place is its usual error (exit 2)."""
    args, extra = parser.parse_known_args(argv)
    unknown = extra if not hasattr(args, "overrides") else [e for e in extra if e[:1] == "-"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # exits 2
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def _parser() -> argparse.ArgumentParser:
    parser = helps.HelpParser(
        prog="sennflow",
        description="Train, evaluate and explain self-explaining neural networks.",
    )
    sub = parser.add_subparsers(dest="command")
    run = _command(
        sub,
        "run",
        help="run the pipeline: ingest -> train -> evaluate -> explain -> report",
        description="Run the pipeline flow. Arguments are Hydra overrides (key=value).",
        epilog=helps.run_help,
        example="model=mlp train.epochs=5",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue the interrupted, killed or failed run of run.id=<id> in its run folder "
            "from its newest checkpoint (its config.yaml; only run.*, ray.* and train.epochs "
            "may change)"
        ),
    )
    run.set_defaults(handler=_run)
    sweep = _command(
        sub,
        "sweep",
        help="search hyperparameters or architectures, retrain the best, evaluate, explain, report",
        description=(
            "Run the sweep flow: a Ray Tune sweep with the method of search=<method> (default "
            f"{DEFAULT_SEARCH}), then the best configuration through the pipeline. "
            "Arguments are Hydra overrides (key=value)."
        ),
        epilog=helps.sweep_help,
        example="search=pbt model=mlp",
    )
    sweep.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue the interrupted, killed or failed sweep of run.id=<id> in its run folder "
            "(its config.yaml; only run.id, run.root, ray.address and ray.num_cpus may change)"
        ),
    )
    sweep.set_defaults(handler=_sweep)
    explain = sub.add_parser(
        "explain",
        help="re-explain a trained run: post-hoc attributions, their scores, the best method",
        description=(
            "Run the explain flow on a finished run folder (runs/pipeline/<id> or "
            "runs/sweep/<id>) without retraining; results go to a new runs/explain/<id>/."
        ),
        epilog=(
            "overrides: explain.* (see 'sennflow run --help'), run.*, ray.*, seed\n\n"
            "examples:\n  sennflow explain runs/pipeline/<id> explain.methods=all\n"
            "  sennflow explain runs/pipeline/<id> 'explain.methods=[ig,kernel_shap]' "
            "explain.eval_samples=256 explain.num_tasks=4"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("run_dir", help="a finished run folder")
    explain.add_argument("overrides", nargs="*", default=[], help="e.g. explain.methods=all")
    explain.set_defaults(handler=_explain)
    predict = sub.add_parser(
        "predict",
        help="predict new inputs with a trained run: a table's rows or image files",
        description=(
            "Run the predict flow: the best checkpoint of a finished run folder on inputs it "
            "has not seen (a CSV or Parquet file with the run's columns, an image file, or a "
            "folder of images), read as the run's data was. Results go to a new "
            "runs/predict/<id>/: predictions.csv (top classes, probabilities, prototypes) and "
            "a report; inputs that name their class are scored."
        ),
        epilog=(
            "overrides: predict.* (conf/predict/default.yaml), run.*, seed (which inputs are "
            "explained), data.* (the run's own data, to rebuild its dataset cache "
            "elsewhere)\n\n"
            "examples:\n  sennflow predict runs/pipeline/<id> new_customers.csv\n"
            "  sennflow predict runs/pipeline/<id> ~/photos/unsorted predict.top_k=5\n"
            "  sennflow predict runs/pipeline/<id> held_out/ predict.skip_invalid=true"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("run_dir", help="a finished run folder")
    predict.add_argument("input", help="a CSV/Parquet file, an image file or a folder of images")
    predict.add_argument("overrides", nargs="*", default=[], help="e.g. predict.top_k=5")
    predict.set_defaults(handler=_predict)
    runs_command(sub)
    stack_command(sub)
    federated = _command(
        sub,
        "federated",
        help="federated learning on Ray client actors: prototype averaging vs FedAvg/FedProx",
        description=(
            "Run the federated flow: the training split partitioned among client actors, every "
            "strategy of federated.strategies for federated.rounds rounds, one report. "
            "Arguments are Hydra overrides (key=value)."
        ),
        epilog=lambda: helps.group_help(
            "federated",
            "sennflow federated\n  sennflow federated federated.partition=dirichlet "
            "federated.alpha=0.1 federated.num_clients=10 federated.fraction=0.5\n"
            "  sennflow federated 'federated.strategies=[fedavg,fedprox]' federated.rounds=20",
        ),
        example="federated.seed=1",
    )
    federated.set_defaults(handler=_group_flow)
    continual = _command(
        sub,
        "continual",
        help="continual learning on Ray learner actors: one class-incremental stream, all methods",
        description=(
            "Run the continual flow: every method of continual.methods (one Ray actor each) "
            "meets the same class-incremental stream; R, its metrics and heat maps in one "
            "report. Arguments are Hydra overrides (key=value)."
        ),
        epilog=lambda: helps.group_help(
            "continual",
            "sennflow continual\n  sennflow continual 'continual.methods=[ncm,prd]' "
            "continual.num_tasks=5\n  sennflow continual continual.federated_clients=3",
        ),
        example="continual.seed=1",
    )
    continual.set_defaults(handler=_group_flow)
    prune = _command(
        sub,
        "prune",
        help="lottery tickets: iterative magnitude pruning with rewinding, a Ray Train fit a round",
        description=(
            "Run the prune flow: train the dense model, then prune.rounds rounds of magnitude "
            "pruning, rewinding and retraining (plus re-initialised controls); accuracy vs "
            "remaining weights in one report. Arguments are Hydra overrides (key=value); "
            "method=, rounds=, rate=, ... mean prune.method=, prune.rounds=, prune.rate=, ..."
        ),
        epilog=lambda: helps.group_help(
            "prune",
            "sennflow prune method=imp\n  sennflow prune method=imp model=cnn rounds=10 "
            "train.epochs=30\n  sennflow prune method=imp rewind_epoch=2 scope=global",
        ),
        example="method=imp rounds=10",
    )
    prune.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted prune run of run.id=<id> at its next unfinished round "
        "(its config.yaml; only run.*, ray.* and prune.rounds, which may grow, may change)",
    )
    prune.set_defaults(handler=_prune)
    pretrain = _command(
        sub,
        "pretrain",
        help="self-supervised pre-training of a model's encoder: Barlow Twins, DirectPred, JEPA",
        description=(
            "Run the pretrain flow: train the encoder of model=<name> without labels on the "
            "training split with ssl=barlow_twins|directpred|jepa (default barlow_twins) on Ray "
            "Train, probe it (linear and k-NN), report. Load the encoder into a later run with "
            "+model.params.pretrained=<run>/checkpoints/best. Arguments are Hydra overrides."
        ),
        epilog=lambda: helps.group_help(
            "ssl",
            "sennflow pretrain\n  sennflow pretrain ssl=directpred model=cnn ssl.epochs=50\n"
            "  sennflow run +model.params.pretrained=runs/pretrain/<id>/checkpoints/best",
            option="barlow_twins",
        ),
        example="ssl=directpred ssl.projector_width=512",
    )
    pretrain.set_defaults(handler=_pretrain)
    pfn_train = _command(
        sub,
        "pfn-train",
        help="fit a prior-data fitted network (a transformer) on tasks drawn from a prior",
        description=(
            "Run the pfn-train flow: fit a PFN on tasks drawn from prior=gp|bnn (default gp) "
            "on Ray Train, save its weights and a report. Classify a tabular dataset with a "
            "bnn PFN in one forward pass: sennflow run model=pfn "
            "+model.params.pretrained=<run>. Arguments are Hydra overrides."
        ),
        epilog=lambda: helps.group_help(
            "pfn",
            "sennflow pfn-train prior=gp\n  sennflow pfn-train prior=bnn pfn.steps=3000\n"
            "  sennflow run model=pfn data=wine +model.params.pretrained=runs/pfn/<id>",
            option="gp",
        ),
        example="prior=bnn pfn.steps=500",
    )
    pfn_train.set_defaults(handler=_pfn_train)
    return parser


def _command(sub, name: str, *, help: str, description: str, epilog, example: str):
    """A command that runs a flow on Hydra overrides, with ``--show-config``; ``epilog``
    (a function) lists its config when help is printed."""
    command = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument(
        "overrides", nargs="*", default=[], help=f"Hydra overrides, e.g. {example}"
    )
    command.add_argument("--show-config", action="store_true", help=SHOW_CONFIG)
    return command


def _run(args: argparse.Namespace) -> int:
    from flows.config import compose, to_settings

    def validate(cfg):  # ssl=<objective>: the pre-training stage's group too
        if cfg.get("ssl") is None:
            return to_settings(cfg)
        from flows.pretrain import ssl_config

        return to_settings(cfg), ssl_config(cfg)

    def composed():  # a fresh run's config needs no import of the pipeline's module
        if not args.resume:
            return compose(args.overrides)
        from flows.pipeline import resume_config

        return resume_config(args.overrides)[0]

    if (code := _check_config(args, composed, validate)) is not None:
        return code
    from flows import pipeline
    from sennflow.progress import epoch_progress

    return _run_flow(
        lambda: pipeline.pipeline(overrides=args.overrides, resume=args.resume), epoch_progress()
    )


def _sweep(args: argparse.Namespace) -> int:
    from flows import sweep
    from flows.config import to_search_settings, to_settings

    code = _check_config(
        args,
        lambda: sweep.sweep_config(args.overrides, args.resume),
        lambda cfg: (to_settings(cfg), to_search_settings(cfg)),
    )
    if code is not None:
        return code
    from sennflow.progress import trial_progress

    return _run_flow(
        lambda: sweep.sweep(overrides=args.overrides, resume=args.resume),
        trial_progress(),
        lambda result: f"best configuration ({result.method}): {result.best_config}",
    )


def _explain(args: argparse.Namespace) -> int:
    from flows.explain import explain_config, explain_run

    try:
        run_dir, overrides = _run_folder_and_overrides([args.run_dir, *args.overrides])
    except ValueError as err:
        return fail(err)
    code = _check_config(args, lambda: explain_config(Path(run_dir), overrides), inputs=False)
    if code is not None:
        return code
    return _run_flow(
        lambda: explain_run(run_dir=run_dir, overrides=overrides),
        contextlib.nullcontext(),
        lambda result: f"re-explained {result.source}",
    )


def _predict(args: argparse.Namespace) -> int:
    from flows.predict import predict_run, predict_settings

    tokens = [args.run_dir, args.input, *args.overrides]
    paths = [t for t in tokens if "=" not in t and not t.startswith(("+", "~"))]
    if len(paths) != 2:
        return fail(
            ValueError(
                "predict takes a run folder (runs/pipeline/<id>) and the inputs to predict (a "
                f"file or folder), then overrides; got {', '.join(paths) or 'no path'}"
            )
        )
    from components.data.new_inputs import check_exists
    from sennflow.progress import step_progress

    overrides = [t for t in tokens if t not in paths]
    code = _check_config(
        args,
        lambda: predict_settings(Path(paths[0]), overrides),
        lambda _: check_exists(paths[1]),
        inputs=False,
    )
    if code is not None:
        return code
    return _run_flow(
        lambda: predict_run(run_dir=paths[0], input_path=paths[1], overrides=overrides),
        step_progress("predict"),
        lambda result: f"predictions: {Path(result.predictions).resolve()}",
    )


def _run_folder_and_overrides(tokens: list[str]) -> tuple[str, list[str]]:
    """The run folder among ``tokens`` wherever it was written (``explain run.root=x <folder>``
    too), and the overrides in their order: an existing folder, else the one token that is no
    override (``key=value``, ``+key``, ``~key``)."""
    folders = [t for t in tokens if Path(t).is_dir()]
    if len(folders) != 1:
        folders = [t for t in tokens if "=" not in t and not t.startswith(("+", "~"))]
    if len(folders) != 1:
        found = f"; got {', '.join(folders)}" if folders else ", before or after the overrides"
        raise ValueError(f"explain takes one run folder (runs/pipeline/<id>){found}")
    return folders[0], [t for t in tokens if t != folders[0]]


def _group_flow(args: argparse.Namespace) -> int:
    """``sennflow federated`` / ``sennflow continual``."""
    from flows.config import to_group_config, to_settings

    if args.command == "federated":
        from components.federated.experiment import FederatedConfig as config_class
        from flows.federated import compose_federated as compose_group
        from flows.federated import federated as flow

        title = "rounds"
    else:
        from components.continual.config import ContinualConfig as config_class
        from flows.continual import compose_continual as compose_group
        from flows.continual import continual as flow

        title = "tasks"
    code = _check_config(
        args,
        lambda: compose_group(args.overrides),
        lambda cfg: (to_settings(cfg), to_group_config(cfg, args.command, config_class)),
    )
    if code is not None:
        return code
    from sennflow.progress import step_progress

    return _run_flow(lambda: flow(overrides=args.overrides), step_progress(title))


def _pretrain(args: argparse.Namespace) -> int:
    """``sennflow pretrain``."""
    from flows import pretrain
    from flows.config import to_settings

    code = _check_config(
        args,
        lambda: pretrain.compose_pretrain(args.overrides),
        lambda cfg: (to_settings(cfg), pretrain.ssl_config(cfg)),
    )
    if code is not None:
        return code
    return _run_flow(lambda: pretrain.pretrain(overrides=args.overrides), contextlib.nullcontext())


def _pfn_train(args: argparse.Namespace) -> int:
    """``sennflow pfn-train``."""
    from flows import pfn
    from flows.config import to_settings

    code = _check_config(
        args,
        lambda: pfn.compose_pfn(args.overrides),
        lambda cfg: (to_settings(cfg), pfn.pfn_config(cfg)),
        inputs=False,  # tasks drawn from a prior
    )
    if code is not None:
        return code
    return _run_flow(lambda: pfn.pfn_train(overrides=args.overrides), contextlib.nullcontext())


def _prune(args: argparse.Namespace) -> int:
    """``sennflow prune``."""
    from flows import prune

    code = _check_config(
        args, lambda: prune.prune_config(args.overrides, args.resume)[0], prune.prune_settings
    )
    if code is not None:
        return code
    from sennflow.progress import step_progress

    return _run_flow(
        lambda: prune.prune(overrides=args.overrides, resume=args.resume),
        step_progress("rounds"),
    )


def _check_config(args: argparse.Namespace, compose, validate=None, inputs=True) -> int | None:
    """The command's config, checked before anything starts: exit 2 with one message unless
    ``validate(compose())`` accepts it; with ``--show-config``, print it (exit 0); else, with
    ``inputs`` (a command that trains on the config's data and model), the files it reads must
    be there (:func:`flows.preflight.check_inputs`; exit 2), and None: the command goes on."""
    from flows.config import ConfigError, to_settings, to_yaml

    try:
        cfg = compose()
    except ConfigError as err:  # a typo answers before torch is imported
        return fail(err)
    try:
        if validate is not None:
            validate(cfg)
        if getattr(args, "show_config", False):
            print(to_yaml(cfg))
            return 0
        if inputs:
            from flows.preflight import check_inputs

            check_inputs(to_settings(cfg))
    except _input_errors() as err:
        return fail(err)
    return None


def _input_errors() -> tuple[type[Exception], ...]:
    from components.data.errors import DataError
    from components.training.checkpoint import CheckpointError
    from components.training.errors import ModelSpecError
    from flows.config import ConfigError

    return ConfigError, DataError, CheckpointError, ModelSpecError, FileExistsError


def _run_failures() -> tuple[type[Exception], ...]:
    """Runs that started and failed for a reason the message explains (a diverging fit, a sweep
    none of whose trials finished, a nightly accuracy drop): one message and exit 1, not 2,
    because the run folder, its ``failed`` status and its finite checkpoints exist; the input
    itself was valid."""
    from components.search.history import AccuracyDropAlert
    from components.search.tune_sweep import SweepFailedError
    from components.training.fit import DivergedError

    return DivergedError, SweepFailedError, AccuracyDropAlert


def _run_flow(call, progress, intro=None) -> int:
    """Run ``call()`` (a flow) inside ``progress``; input errors exit 2 with one message, run
    failures (:func:`_run_failures`) exit 1 with one message, SIGINT/SIGTERM exit 130/143
    (:func:`sennflow.interrupts.interrupted`), else print the result (after ``intro(result)``
    when given)."""
    from flows.run_folder import signal_of, started_runs
    from sennflow import interrupts

    before, ray_was_up = len(started_runs()), interrupts.ray_is_up()
    quiet = interrupts.quiet_console((*_input_errors(), *_run_failures()))
    try:
        with quiet, interrupts.interrupt_signals(), progress:
            interrupts.start_prefect_server()
            result = call()
    except _input_errors() as err:
        return fail(err)
    except _run_failures() as err:
        return fail(err, EXIT_RUN_FAILED)
    except interrupts.interrupts() as err:
        if signal_of(err) is None:  # a plain sys.exit
            raise
        runs = started_runs()[before:]
        return interrupts.interrupted(err, runs, stop_ray=not ray_was_up)
    if intro is not None:
        print(intro(result))
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
    if result.report:
        console.print(f"report:     {Path(result.report).resolve()}")


def fail(err: Exception, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``err`` as the one error message of the command; return ``code``."""
    print(f"sennflow: error: {err}", file=sys.stderr)
    return code
