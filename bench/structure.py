"""The structure figures of issue 15, measured on a source tree with the project's own tools.

One table per tree, so a refactor can state each figure before and after:

- import cycles between the packages of ``components/`` and between its modules (the graph code
  of ``tests/test_layering.py``; each cycle is counted once and its closing edge removed until
  none is left, so the count is the number of imports that would have to go);
- Hydra compositions per command: calls of ``flows.config.compose`` (and of Hydra's own
  ``compose`` underneath it) counted in-process while the CLI's ``main()`` runs ``run``,
  ``sweep``, ``explain`` of the run's folder, ``federated`` and ``continual`` on tiny settings
  in a temporary run root, and ``--show-config`` of each;
- lines of the CLI module(s), of each ``tasks/*.py`` and of each ``@task`` function (its
  ``def`` line to its last line, docstring included);
- the ``components`` modules each module of ``flows/`` imports (lazy imports included).

The measured tree is the one ``flows`` is imported from (put it first on ``PYTHONPATH``); the
measuring code (this script and ``tests/test_layering.py``) comes from this script's tree, so
one script measures an older commit in a worktree::

    git worktree add /tmp/before 3393760
    cd /tmp/before && PYTHONPATH=/tmp/before python /work/main/bench/structure.py \
        --json /tmp/before.json
    cd /work/main && PYTHONPATH=/work/main python bench/structure.py --before /tmp/before.json

``--skip-commands`` leaves out the compositions (seconds instead of minutes). The commands'
own output goes to a log file in the temporary folder, whose path is printed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent  # the tree this script and its helpers come from
FLOWS = ("pipeline", "sweep", "explain", "federated", "continual")


def load_layering():
    """``tests/test_layering.py`` of this script's tree, loaded by path: the measured tree's
    copy (first on ``sys.path``) may predate the graph code."""
    spec = importlib.util.spec_from_file_location(
        "structure_layering", TOOLS / "tests" / "test_layering.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured_root() -> Path:
    """The tree ``flows`` is imported from."""
    import flows

    print(f"flows.__file__ = {flows.__file__}", file=sys.stderr)
    return Path(flows.__file__).resolve().parent.parent


def cycles(graph: dict[str, dict[str, set[str]]], find_cycle) -> list[list[str]]:
    """Every cycle ``find_cycle`` finds in ``graph`` when each one's closing edge is removed
    before looking again."""
    left = {node: dict(targets) for node, targets in graph.items()}
    found = []
    while cycle := find_cycle(left):
        found.append(cycle)
        del left[cycle[-2]][cycle[-1]]
    return found


def cycle_figures(root: Path, layering) -> dict[str, str]:
    """Import cycles between component packages, and between the modules of each layer."""
    graphs = {
        "component packages": layering.import_graph(root),
        **{
            f"modules of {folder}/": layering.import_graph(
                root, folder=folder, node=layering.module_node
            )
            for folder in ("components", "tasks", "flows")
        },
    }
    figures = {}
    for level, graph in graphs.items():
        found = cycles(graph, layering.find_cycle)
        shown = "; ".join(" -> ".join(short(node) for node in cycle) for cycle in found)
        figures[f"import cycles between {level}"] = f"{len(found)}" + (
            f": {shown}" if shown else ""
        )
    return figures


def short(path: str) -> str:
    """``components/x/y.py`` as ``x/y``, ``components/x/__init__.py`` as ``x``."""
    return path.removesuffix("/__init__.py").removesuffix(".py").removeprefix("components/")


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def cli_figures(root: Path) -> dict[str, str]:
    """Lines of the CLI module and of every module of the CLI (``sennflow/`` once it exists;
    before, ``flows/cli.py`` and the progress bars it drew, ``flows/progress.py``)."""
    package = root / "sennflow"
    if (package / "cli.py").exists():
        files = sorted(package.glob("*.py"))
    else:
        files = [root / "flows" / "cli.py", root / "flows" / "progress.py"]
    cli = next(path for path in files if path.name == "cli.py")
    listing = ", ".join(f"{path.relative_to(root)} {lines(path)}" for path in files)
    return {
        "lines of the CLI module": f"{lines(cli)} ({cli.relative_to(root)})",
        "lines of the CLI, all modules": f"{sum(map(lines, files))} ({listing})",
    }


def is_task(decorator: ast.expr) -> bool:
    """``@task``, ``@task(...)``, ``@prefect.task`` or ``@prefect.task(...)``."""
    if isinstance(decorator, ast.Call):
        decorator = decorator.func
    name = decorator.attr if isinstance(decorator, ast.Attribute) else getattr(decorator, "id", "")
    return name == "task"


def task_bodies(path: Path) -> dict[str, int]:
    """Each ``@task`` function of ``path`` -> its lines, ``def`` to the end."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(is_task(d) for d in node.decorator_list)
    }


def task_figures(root: Path) -> dict[str, str]:
    """Lines of each ``tasks/*.py`` and of its tasks; the longest task overall."""
    figures, longest = {}, ("", 0)
    for path in sorted((root / "tasks").glob("*.py")):
        if path.name == "__init__.py":
            continue
        bodies = task_bodies(path)
        listed = ", ".join(f"{name} {n}" for name, n in bodies.items()) or "no task"
        figures[f"lines of tasks/{path.name}"] = f"{lines(path)} (task bodies: {listed})"
        longest = max([longest, *bodies.items()], key=lambda item: item[1])
    figures["longest task body"] = f"{longest[1]} ({longest[0]})"
    return figures


def components_imported(path: Path, root: Path, layering) -> list[str]:
    """The files of ``components`` that ``path`` imports from (lazy imports included)."""
    found = set()
    for module, name in layering.imported_modules(path, root):
        if module.split(".")[0] == "components":
            found.add(layering.module_node(f"{module}.{name}" if name else module, root))
    return sorted(found - {None})


def flow_figures(root: Path, layering) -> dict[str, str]:
    """Per module of ``flows/``: how many ``components`` modules it imports, and which."""
    imported = {
        f"flows/{path.name}": components_imported(path, root, layering)
        for path in sorted((root / "flows").glob("*.py"))
        if path.name not in ("__init__.py", "cli.py")
    }
    imported["flows/ (all its modules)"] = sorted(set().union(*imported.values()))
    return {
        f"components modules imported by {source}": f"{len(names)}"
        + (f": {', '.join(map(short, names))}" if names else "")
        for source, names in imported.items()
    }


class CompositionCounter:
    """Counts calls of ``flows.config.compose`` and of Hydra's ``compose`` in this process.

    Installed before any flow or the CLI is imported, so their ``from flows.config import
    compose`` binds the counting wrapper."""

    def __init__(self) -> None:
        import hydra

        import flows.config

        self.calls = {"flows": 0, "hydra": 0}
        self.originals = (flows.config.compose, hydra.compose)
        flows.config.compose = self._counting("flows", flows.config.compose)
        hydra.compose = self._counting("hydra", hydra.compose)

    def _counting(self, key: str, function):
        def counted(*args, **kwargs):
            self.calls[key] += 1
            return function(*args, **kwargs)

        return counted

    def take(self) -> dict[str, int]:
        """The counts since the last ``take``."""
        taken, self.calls = self.calls, {"flows": 0, "hydra": 0}
        return taken

    def bypassed(self) -> list[str]:
        """Modules holding an original ``compose`` (a call through them goes uncounted)."""
        return sorted(
            name
            for name, module in list(sys.modules.items())
            if name.split(".")[0] in ("flows", "tasks", "sennflow", "ops")
            and any(
                value is original for value in vars(module).values() for original in self.originals
            )
        )


@contextlib.contextmanager
def output_to(log: Path):
    """Send this process's stdout and stderr (file descriptors included) to ``log``."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("ab") as file:
        os.dup2(file.fileno(), 1), os.dup2(file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def cli_main(root: Path):
    """The CLI's ``main`` of the measured tree (``sennflow.cli`` once it exists, else
    ``flows.cli``), checked to come from ``root``."""
    name = "sennflow.cli" if (root / "sennflow" / "cli.py").exists() else "flows.cli"
    module = importlib.import_module(name)
    if not Path(module.__file__).resolve().is_relative_to(root):
        raise SystemExit(f"{name} resolves to {module.__file__}, not under {root}")
    return name, module.main


def run_command(main, argv: list[str], log: Path) -> tuple[int, float]:
    """``main(argv)`` with its output in ``log``: exit code and seconds."""
    start = time.perf_counter()
    with output_to(log):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse rejects an option this CLI does not have
            code = exit_.code
    return code, time.perf_counter() - start


def commands(tmp: Path) -> list[tuple[str, list[str]]]:
    """The measured commands (label, argv) on tiny settings; ``{run}`` is the run's folder.

    Continual with 2 tasks, not 1: with one task its forgetting is None, which its log line
    formats as a number (a TypeError, before and after issue 15)."""
    where = [f"run.root={tmp / 'runs'}", f"run.cache_dir={tmp / 'cache'}"]
    return [
        ("run experiment=tiny", ["run", "experiment=tiny", *where]),
        (
            "sweep search=random experiment=tiny search.num_samples=1",
            ["sweep", "search=random", "experiment=tiny", "search.num_samples=1", *where],
        ),
        ("explain (the run's folder)", ["explain", "{run}", *where]),
        (
            "federated experiment=tiny federated.rounds=1",
            ["federated", "experiment=tiny", "federated.rounds=1", *where],
        ),
        (
            "continual experiment=tiny continual.num_tasks=2",
            ["continual", "experiment=tiny", "continual.num_tasks=2", *where],
        ),
    ]


def newest_run(tmp: Path) -> str:
    folders = sorted((tmp / "runs" / "pipeline").glob("*"), key=lambda p: p.stat().st_mtime)
    return str(folders[-1]) if folders else "<no pipeline run>"


def composition_figures(root: Path, counter: CompositionCounter) -> dict[str, str]:
    """Compositions of each command and of its ``--show-config``, run through the CLI."""
    name, main = cli_main(root)
    tmp = Path(tempfile.mkdtemp(prefix="sennflow-structure-"))
    log = tmp / "commands.log"
    print(f"CLI {name}; commands' output in {log}", file=sys.stderr)
    figures = {}
    for label, argv in commands(tmp):
        argv = [newest_run(tmp) if a == "{run}" else a for a in argv]
        for show in (True, False):
            counter.take()
            code, seconds = run_command(
                main, [argv[0], *(["--show-config"] * show), *argv[1:]], log
            )
            calls = counter.take()
            key = f"compositions: {label}" + (" --show-config" if show else "")
            if show and code == 2 and calls == {"flows": 0, "hydra": 0}:
                figures[key] = "no --show-config"
            else:
                figures[key] = f"{calls['flows']} (Hydra {calls['hydra']}; exit {code})"
            print(f"{key}: {figures[key]}, {seconds:.0f} s", file=sys.stderr)
    if bypassed := counter.bypassed():
        figures["uncounted compose references"] = ", ".join(bypassed)
    return figures


def tree_name(root: Path) -> str:
    git = ["git", "-C", str(root)]
    sha = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return f"{root} @ {sha.stdout.strip()}" + (" + uncommitted changes" if dirty.stdout else "")


def measure(skip_commands: bool) -> dict[str, str]:
    """Every figure of the measured tree, in table order."""
    root = measured_root()
    counter = None if skip_commands else CompositionCounter()
    layering = load_layering()
    figures = {"tree": tree_name(root)}
    figures |= cycle_figures(root, layering)
    if counter is not None:
        figures |= composition_figures(root, counter)
    figures |= cli_figures(root)
    figures |= task_figures(root)
    figures |= flow_figures(root, layering)
    return figures


def table(columns: dict[str, dict[str, str]]) -> str:
    """A Markdown table: one row per measure, one column per tree."""
    keys = list(dict.fromkeys(key for figures in columns.values() for key in figures))
    rows = [["measure", *columns], ["---"] * (len(columns) + 1)]
    rows += [[key, *(figures.get(key, "-") for figures in columns.values())] for key in keys]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-commands", action="store_true", help="no compositions")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--before", type=Path, help="figures of an earlier tree (--json)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    figures = measure(args.skip_commands)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    columns = {"before": json.loads(args.before.read_text())} if args.before else {}
    print(table({**columns, ("after" if columns else "value"): figures}))
    with contextlib.suppress(ImportError):
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()
