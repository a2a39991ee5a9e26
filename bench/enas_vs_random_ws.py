"""ENAS (with and without Adam & Lorraine's memory buffer) vs random search with weight sharing.

The claims measured (Adam & Lorraine, "Understanding Neural Architecture Search Techniques",
2019): (1) at an equal budget ENAS finds architectures no better than random search with weight
sharing; (2) the ENAS controller's hidden states do not correlate with the graph similarity of
the cells it samples, and training it with a memory buffer of earlier samples
(``search.enas.memory=true``) raises that correlation.

Methods, run side by side per seed on the project's digits split, all over the same DARTS cell
space and supernet (``--channels``, ``--cells``, ``--nodes``):

* ``random-ws``: :func:`components.search.darts.search_random_ws`;
* ``enas``: :func:`components.search.enas.search_enas` with ENAS's coefficients (controller Adam
  lr 3.5e-4, baseline decay 0.99, entropy weight 1e-4, tanh 2.5, temperature 5);
* ``enas-memory``: the same with the memory-buffer reconstruction loss.

Budget: equal shared-weight steps. Every method trains its supernet for ``--search-epochs``
passes over the train split, one sampled child per batch of ``--batch-size`` (the same SGD
step, :func:`components.search.darts.shared_weight_step`); ENAS also takes
``--controller-steps`` REINFORCE steps of ``--aggregate`` children per epoch, which cost only
forward passes on validation batches (their wall time is printed). Every method ranks
``--candidates`` samples (uniform, or from its trained controller) by validation loss under its
shared weights, and the winner is retrained from scratch as ``darts_net`` by the pipeline's fit
loop exactly as ``bench/nas_vs_random_ws.py`` does (best val-loss checkpoint, **test** accuracy).

Hidden states: for each ENAS search, ``--probe`` architectures are sampled from the final
controller and the Spearman / Pearson correlation over all their pairs between the L2 distance
of the controller's final hidden states and the graph distance of the cells
(:func:`components.search.enas.graph_distance`: edges, as (cell, node, input, op), of one
genotype missing from the other) is reported, with the same figure for the seed's untrained
controller as the reference.

    nice -n 10 env OMP_NUM_THREADS=1 python bench/enas_vs_random_ws.py            # 3 seeds
    # one seed per run on a loaded machine, then the table over all of them:
    python bench/enas_vs_random_ws.py --seeds 1 --first-seed 0 --save /tmp/enas0.json  # ... 1, 2
    python bench/enas_vs_random_ws.py --combine /tmp/enas0.json /tmp/enas1.json /tmp/enas2.json
    python bench/enas_vs_random_ws.py --seeds 1 --search-epochs 1 --retrain-epochs 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from nas_vs_random_ws import cell_text, mean_std, retrain  # a sibling script: bench/ is on sys.path

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.models.nas_ops import Genotype
from components.search.darts import DartsConfig, search_random_ws
from components.search.enas import Controller, EnasConfig, hidden_graph_correlation, search_enas

METHODS = ("random-ws", "enas", "enas-memory")
BASELINE = "random-ws"


def search(method: str, data: tuple, config: DartsConfig, enas: EnasConfig, args) -> dict:
    """One method's search: its genotype, wall seconds and (ENAS) hidden-state correlations."""
    start = time.perf_counter()
    if method == BASELINE:
        result = search_random_ws(
            *data, num_classes=10, config=config, num_candidates=args.candidates
        )
    else:
        enas = replace(enas, memory=method == "enas-memory")
        result = search_enas(
            *data, num_classes=10, config=config, enas=enas, num_candidates=args.candidates
        )
    ranking = result.history[-1]
    return {
        "genotype": result.genotype,
        "search_s": time.perf_counter() - start,
        "spearman": ranking.get("hidden_graph_spearman", float("nan")),
        "pearson": ranking.get("hidden_graph_pearson", float("nan")),
        "reward": result.history[-2].get("reward", float("nan")),
        "entropy": result.history[-2].get("entropy", float("nan")),
    }


def untrained_correlation(seed: int, config: DartsConfig, enas: EnasConfig, probe: int) -> dict:
    """The hidden-state / graph-distance correlation of the seed's untrained controller."""
    torch.manual_seed(seed)
    controller = Controller(
        config.nodes,
        hidden=enas.hidden,
        temperature=enas.temperature,
        tanh_constant=enas.tanh_constant,
    )
    return hidden_graph_correlation(controller, probe, torch.Generator().manual_seed(seed))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="write the runs to this JSON file")
    parser.add_argument("--combine", type=Path, nargs="+", help="print the table of saved runs")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--search-epochs", type=int, default=4)
    parser.add_argument("--channels", type=int, default=4, help="supernet channels")
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=100, help="ranked samples")
    parser.add_argument("--controller-steps", type=int, default=10, help="per epoch")
    parser.add_argument("--aggregate", type=int, default=10, help="children per step")
    parser.add_argument("--controller-lr", type=float, default=3.5e-4)
    parser.add_argument("--probe", type=int, default=100, help="samples for the correlation")
    parser.add_argument("--retrain-epochs", type=int, default=10)
    parser.add_argument("--retrain-channels", type=int, default=8)
    parser.add_argument("--retrain-cells", type=int, default=3)
    parser.add_argument("--retrain-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.probe < 2:
        parser.error("--probe must be >= 2: the correlation needs pairs of samples")
    return args


def main() -> None:
    args = parse_args()
    if args.combine:
        combine(args.combine)
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sennflow-enas-") as tmp:
        path = ingest(DataSpec(source="digits"), Path(tmp)).path
        splits = {name: read_split(path, name) for name in ("train", "val", "test")}
    data = (*splits["train"], *splits["val"])
    base = DartsConfig(
        epochs=args.search_epochs,
        channels=args.channels,
        cells=args.cells,
        nodes=args.nodes,
        batch_size=args.batch_size,
    )
    enas = EnasConfig(
        lr=args.controller_lr,
        controller_steps=args.controller_steps,
        aggregate=args.aggregate,
        probe_samples=args.probe,
        memory_start=1 if args.search_epochs > 2 else 0,
    )
    runs = {m: [] for m in args.methods}
    untrained = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        config = replace(base, seed=seed)
        untrained.append(untrained_correlation(seed, config, enas, args.probe))
        for method in args.methods:
            row = search(method, data, config, enas, args)
            retrain_start = time.perf_counter()
            row["accuracy"], _ = retrain(row["genotype"], splits, seed, args)
            row["retrain_s"] = time.perf_counter() - retrain_start
            row["seed"] = seed
            runs[method].append(row)
            print(
                f"seed {seed} {method:<12} test acc {row['accuracy']:.4f}  spearman "
                f"{row['spearman']:+.3f}  search {row['search_s']:6.1f} s  retrain "
                f"{row['retrain_s']:5.1f} s",
                flush=True,
            )
    rows = {name: len(splits[name][0]) for name in splits}
    settings = describe(args, enas, rows, time.perf_counter() - started)
    if args.save:
        saved = {
            m: [{**r, "genotype": r["genotype"].to_dict()} for r in rs] for m, rs in runs.items()
        }
        payload = {"settings": settings, "runs": saved, "untrained": untrained, "rows": rows}
        args.save.write_text(json.dumps(payload))
    report(runs, untrained, rows, [settings])


def combine(paths: list[Path]) -> None:
    """Print one table over the runs saved by several invocations (one seed each)."""
    payloads = [json.loads(path.read_text()) for path in paths]
    runs: dict[str, list] = {}
    untrained = []
    for payload in payloads:
        for method, results in payload["runs"].items():
            for r in results:
                runs.setdefault(method, []).append(
                    {**r, "genotype": Genotype.from_dict(r["genotype"])}
                )
        untrained.extend(payload["untrained"])
    report(runs, untrained, payloads[0]["rows"], [p["settings"] for p in payloads])


def describe(args, enas: EnasConfig, rows: dict, total_s: float) -> str:
    """The run's data, seeds, search settings and wall time, in two lines."""
    seeds = f"{args.first_seed}-{args.first_seed + args.seeds - 1}"
    return (
        f"digits ({rows['train']} train / {rows['val']} val / {rows['test']} test rows), seeds "
        f"{seeds}, {args.threads} thread(s), {total_s / 60:.1f} min\n"
        f"search: supernet {args.channels} channels, {args.cells} cells, {args.nodes} nodes, "
        f"batch {args.batch_size}, {args.search_epochs} epochs (equal shared-weight steps), "
        f"{args.candidates} ranked candidates; controller lr {enas.lr:g}, {enas.controller_steps}"
        f" steps x {enas.aggregate} children per epoch, memory from epoch {enas.memory_start}; "
        f"retrain {args.retrain_epochs} epochs; {args.probe} probe samples"
    )


def report(runs: dict, untrained: list, rows: dict, settings: list[str]) -> None:
    """Print the settings, the accuracy table, the correlation table and the genotypes."""
    print("\nENAS vs random search with weight sharing on " + "\n".join(settings))
    head = f"{'method':<13}{'test acc mean +- std':>22}{'vs random-ws (paired)':>24}"
    print("\n" + head + f"{'search s':>10}{'retrain s':>11}   per seed")
    baseline = [r["accuracy"] for r in runs.get(BASELINE, [])]
    for method, results in runs.items():
        accuracies = [r["accuracy"] for r in results]
        paired = "-"
        if baseline and method != BASELINE:
            paired = mean_std([a - b for a, b in zip(accuracies, baseline, strict=True)])
        print(
            f"{method:<13}{mean_std(accuracies):>22}{paired:>24}"
            f"{statistics.mean(r['search_s'] for r in results):>10.1f}"
            f"{statistics.mean(r['retrain_s'] for r in results):>11.1f}   "
            + " ".join(f"{a:.4f}" for a in accuracies)
        )
    print(f"(one test image = {1 / rows['test']:.4f})")
    print("\nhidden state vs graph distance over pairs of controller samples: Spearman / Pearson,")
    print("mean +- std over seeds")
    table = {"untrained controller": untrained}
    table |= {m: runs[m] for m in runs if m != BASELINE}
    for name, values in table.items():
        spearman = [v["spearman"] for v in values]
        pearson = [v["pearson"] for v in values]
        print(
            f"{name:<22} spearman {mean_std(spearman):>18}  pearson {mean_std(pearson):>18}   "
            + " ".join(f"{s:+.3f}" for s in spearman)
        )
    for method in (m for m in runs if m != BASELINE):
        entropy = statistics.mean(r["entropy"] for r in runs[method])
        reward = statistics.mean(r["reward"] for r in runs[method])
        print(f"{method}: last epoch's mean reward {reward:.3f}, sampling entropy {entropy:.2f}")
    print("\ngenotypes (node: two edges op+input; inputs 0, 1 = previous cells):")
    for method, results in runs.items():
        for r in results:
            g = r["genotype"]
            print(f"{method:<13}seed {r['seed']}  normal {cell_text(g.normal)}")
            print(f"{'':<13}        reduce {cell_text(g.reduce)}")


if __name__ == "__main__":
    main()
