"""Ingest benchmark: reader throughput vs raw pyarrow, and peak memory of large ingests.

(a) Ingests a synthetic dataset, then streams its train split through the project reader
    (``iter_batches``: Parquet -> normalised torch batches) and through a bare
    ``pyarrow.dataset`` scan converted to numpy, alternating the two; prints rows/s of the
    best repeat of each and their ratio (target >= 0.8).
(b) In a child process (so its RSS is clean), ingests a synthetic dataset 10x larger than
    1 GiB of float32 features and streams it back through ``iter_batches``; prints the
    child's peak RSS (target < 2 GiB).
(c) Writes a CSV file of ``--csv-rows`` x ``--features`` random floats, then, each in a fresh
    child process side by side: ingests it as ``data=csv`` (streamed in blocks) and reads it
    the way ingest did before streaming (``pyarrow.csv.read_csv`` of the whole file, then the
    same validation); prints each child's peak RSS above its imports, relative to the float32
    features (target: the streamed ingest below the whole-file read alone).

Usage::

    python bench/ingest_throughput.py            # full run: ~10 GiB written for (b), ~1 GB for (c)
    python bench/ingest_throughput.py --quick    # seconds, for smoke tests
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1 << 30
READ_RATIO_TARGET = 0.8
PEAK_RSS_TARGET_GIB = 2.0
CSV_MODES = ("streamed", "whole")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; ``--quick`` shrinks every size to a smoke test."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows for the read benchmark")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--partition-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5, help="read passes per reader")
    parser.add_argument(
        "--memory-rows",
        type=int,
        default=None,
        help="rows for the memory benchmark (default: 10x the rows whose features fill 1 GiB)",
    )
    parser.add_argument("--memory-partition-rows", type=int, default=100_000)
    parser.add_argument("--skip-memory", action="store_true", help="skip (b)")
    parser.add_argument("--csv-rows", type=int, default=2_000_000, help="rows of the CSV for (c)")
    parser.add_argument("--skip-csv", action="store_true", help="skip (c)")
    parser.add_argument("--only-csv", action="store_true", help="run only (c)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--quick", action="store_true", help="tiny sizes; runs in seconds")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--csv-child", choices=CSV_MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.partition_rows, args.repeats = 200_000, 20_000, 3
        args.memory_rows, args.memory_partition_rows = 200_000, 20_000
        args.csv_rows = 200_000
    if args.memory_rows is None:
        args.memory_rows = 10 * GIB // (args.features * 4)
    return args


def synthetic_spec(rows: int, features: int, partition_rows: int):
    """A 4-class synthetic spec of the given size."""
    from components.data.spec import DataSpec

    return DataSpec(
        source="synthetic",
        num_samples=rows,
        num_features=features,
        num_classes=4,
        partition_rows=partition_rows,
    )


def project_read(path: Path, batch_size: int) -> int:
    """Rows streamed by the project reader (normalised torch batches)."""
    from components.data.reader import iter_batches

    rows = 0
    for x, _y in iter_batches(path, "train", batch_size):
        rows += x.shape[0]
    return rows


def raw_read(path: Path, batch_size: int, features: int) -> int:
    """Rows of a bare pyarrow.dataset scan of the same files, converted to numpy."""
    import pyarrow.dataset as ds

    from components.data.layout import split_files

    files = [str(f) for f in split_files(path, "train")]
    rows = 0
    for batch in ds.dataset(files, format="parquet").to_batches(
        columns=["x", "y"], batch_size=batch_size
    ):
        x = batch.column(0).flatten().to_numpy().reshape(-1, features)
        batch.column(1).to_numpy()
        rows += x.shape[0]
    return rows


def bench_read(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str]]:
    """Part (a): best-of-N rows/s of both readers, alternated so caches treat them alike."""
    from components.data.ingest import ingest

    spec = synthetic_spec(args.rows, args.features, args.partition_rows)
    start = time.perf_counter()
    result = ingest(spec, workdir / "read-cache")
    ingest_s = time.perf_counter() - start
    best = {"project": float("inf"), "raw": float("inf")}
    rows = {}
    for _ in range(args.repeats):
        for name, read in (
            ("raw", lambda: raw_read(result.path, args.batch_size, args.features)),
            ("project", lambda: project_read(result.path, args.batch_size)),
        ):
            start = time.perf_counter()
            rows[name] = read()
            best[name] = min(best[name], time.perf_counter() - start)
    assert rows["raw"] == rows["project"] == result.meta["row_counts"]["train"]
    raw_rate, project_rate = rows["raw"] / best["raw"], rows["project"] / best["project"]
    ratio = project_rate / raw_rate
    return [
        (
            "dataset",
            f"{args.rows:,} rows x {args.features} features, "
            f"{args.partition_rows:,} rows/partition",
        ),
        ("ingest (generate + write)", f"{ingest_s:.1f} s, {args.rows / ingest_s:,.0f} rows/s"),
        ("raw pyarrow -> numpy", f"{raw_rate:,.0f} rows/s"),
        ("iter_batches -> torch", f"{project_rate:,.0f} rows/s (batch {args.batch_size})"),
        (
            "ratio project / raw",
            f"{ratio:.2f}x (target >= {READ_RATIO_TARGET}x) "
            f"{'OK' if ratio >= READ_RATIO_TARGET else 'MISSED'}",
        ),
    ]


def memory_child(args: argparse.Namespace, workdir: Path) -> None:
    """Part (b), run in the child: ingest + stream back, print a JSON summary."""
    from components.data.ingest import ingest
    from components.data.reader import iter_batches  # noqa: F401  (import torch before baseline)

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    spec = synthetic_spec(args.memory_rows, args.features, args.memory_partition_rows)
    start = time.perf_counter()
    result = ingest(spec, workdir / "memory-cache")
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = project_read(result.path, args.batch_size)
    read_s = time.perf_counter() - start
    disk = sum(f.stat().st_size for f in (result.path / "data").rglob("*.parquet"))
    summary = {
        "rows": args.memory_rows,
        "train_rows": rows,
        "feature_gib": args.memory_rows * args.features * 4 / GIB,
        "disk_gib": disk / GIB,
        "ingest_s": ingest_s,
        "read_s": read_s,
        "baseline_rss_gib": baseline_kib * 1024 / GIB,  # Linux reports ru_maxrss in KiB
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    }
    print(json.dumps(summary))


def bench_memory(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str]]:
    """Part (b): run :func:`memory_child` in a fresh interpreter and report its numbers."""
    command = [
        sys.executable, __file__, "--memory-child", "--workdir", str(workdir),
        "--features", str(args.features), "--batch-size", str(args.batch_size),
        "--memory-rows", str(args.memory_rows),
        "--memory-partition-rows", str(args.memory_partition_rows),
    ]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    s = json.loads(out.strip().splitlines()[-1])
    ok = s["peak_rss_gib"] < PEAK_RSS_TARGET_GIB
    return [
        ("dataset", f"{s['rows']:,} rows x {args.features} features = {s['feature_gib']:.1f} GiB "
                    f"of features, {s['disk_gib']:.1f} GiB on disk, "
                    f"{args.memory_partition_rows:,} rows/partition"),
        ("ingest (generate + write)", f"{s['ingest_s']:.1f} s, "
                                      f"{s['rows'] / s['ingest_s']:,.0f} rows/s"),
        ("stream train via iter_batches", f"{s['read_s']:.1f} s, "
                                          f"{s['train_rows'] / s['read_s']:,.0f} rows/s"),
        ("RSS after imports", f"{s['baseline_rss_gib']:.2f} GiB"),
        ("peak RSS", f"{s['peak_rss_gib']:.2f} GiB (target < {PEAK_RSS_TARGET_GIB} GiB) "
                     f"{'OK' if ok else 'MISSED'}"),
    ]  # fmt: skip


def write_csv(path: Path, rows: int, features: int, chunk_rows: int = 100_000) -> None:
    """A CSV of ``rows`` x ``features`` random floats and a 4-class label, written in chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(features)] + ["label"]
    schema = pa.schema([(n, pa.float64()) for n in names[:-1]] + [("label", pa.int64())])
    with pa_csv.CSVWriter(path, schema) as writer:
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            x = rng.normal(size=(n, features))
            columns = [pa.array(x[:, j]) for j in range(features)]
            writer.write_table(pa.table([*columns, pa.array(rng.integers(0, 4, n))], names=names))


def csv_child(mode: str, path: Path, workdir: Path) -> None:
    """Part (c), run in the child: ingest the CSV (streamed) or read it whole; print JSON."""
    from components.data.file_source import read_table
    from components.data.ingest import ingest
    from components.data.reader import iter_batches  # noqa: F401  (import torch before baseline)
    from components.data.spec import DataSpec
    from components.data.validation import table_to_labeled

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if mode == "streamed":
        rows = sum(
            ingest(DataSpec(source="csv", path=str(path)), workdir).meta["row_counts"].values()
        )
    else:
        table = read_table(str(path), "csv")
        rows = len(table_to_labeled(table, file=str(path), label_column="label",
                                    feature_columns=None, drop_invalid=False).y)  # fmt: skip
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "seconds": seconds,
                      "above_imports_gib": (peak_kib - baseline_kib) * 1024 / GIB}))  # fmt: skip


def bench_csv(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str]]:
    """Part (c): write the CSV once, then each mode in its own fresh interpreter."""
    path = workdir / "large.csv"
    start = time.perf_counter()
    write_csv(path, args.csv_rows, args.features)
    write_s = time.perf_counter() - start
    features_gib = args.csv_rows * args.features * 4 / GIB
    results = {}
    for mode in CSV_MODES:
        command = [sys.executable, __file__, "--csv-child", mode, "--workdir", str(workdir)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    streamed, whole = results["streamed"], results["whole"]
    assert streamed["rows"] == whole["rows"] == args.csv_rows
    ratio = streamed["above_imports_gib"] / whole["above_imports_gib"]
    ok = ratio < 1
    return [
        ("CSV", f"{args.csv_rows:,} rows x {args.features} features, "
                f"{path.stat().st_size / GIB:.2f} GiB of text ({write_s:.0f} s to write), "
                f"{features_gib:.2f} GiB as float32"),
        ("ingest data=csv (streamed)", f"{streamed['seconds']:.1f} s, peak RSS above imports "
                                       f"{streamed['above_imports_gib']:.2f} GiB "
                                       f"({streamed['above_imports_gib'] / features_gib:.1f}x "
                                       "the features)"),
        ("whole-file read + validate", f"{whole['seconds']:.1f} s, peak RSS above imports "
                                       f"{whole['above_imports_gib']:.2f} GiB "
                                       f"({whole['above_imports_gib'] / features_gib:.1f}x)"),
        ("streamed / whole peak", f"{ratio:.2f} (target < 1) {'OK' if ok else 'MISSED'}"),
    ]  # fmt: skip


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print ``rows`` as a two-column table under ``title``."""
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * len(title))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args, args.workdir)
        return
    if args.csv_child:
        csv_child(args.csv_child, args.workdir / "large.csv", args.workdir / "csv-cache")
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sennflow-ingest-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if not args.only_csv:
            print_table("(a) read throughput, train split", bench_read(args, workdir))
        if not (args.skip_memory or args.only_csv):
            print_table("(b) peak memory, larger than 1 GiB", bench_memory(args, workdir))
        if not args.skip_csv:
            print_table("(c) peak memory, large CSV file", bench_csv(args, workdir))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
