"""Image-folder ingest benchmark: images/s, peak memory of the process tree, cache-hit time.

Generates a folder of small JPEGs (``parts`` images, one folder per class) in a temporary
directory, then, for each Dask scheduler (threads and processes, side by side), ingests it in
a fresh child interpreter while this process samples the memory of the child and all its
descendants every 50 ms: the sum of their RSS (what the < 2 GiB target is about; it counts
pages shared between processes, such as torch's libraries, once per process) and of their
PSS (shared pages split between the processes sharing them: the memory the tree really
uses). The child then ingests the folder again, a cache hit, and reports its time (scanning
and hashing every file). The folder is deleted at the end.

Usage::

    python bench/image_ingest.py            # 100,000 JPEGs of 32x32, 6 classes
    python bench/image_ingest.py --quick    # 4,000 images; seconds, for smoke tests
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GIB = 1 << 30
PEAK_RSS_TARGET_GIB = 2.0
SCHEDULERS = ("threads", "processes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; ``--quick`` shrinks the folder to a smoke test."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=32, help="side of the square images")
    parser.add_argument("--classes", type=int, default=6, help="parts classes (2 to 6)")
    parser.add_argument("--partition-rows", type=int, default=1000, help="images per shard")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--quick", action="store_true", help="4,000 images")
    parser.add_argument("--child", choices=SCHEDULERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.images = 4000
    return args


def generate(args: argparse.Namespace, folder: Path) -> float:
    """Write the JPEG folder with one process per core; return the seconds it took."""
    import os

    from components.data.parts_folder import write_parts_folder

    start = time.perf_counter()
    write_parts_folder(
        folder,
        num_samples=args.images,
        num_classes=args.classes,
        size=args.size,
        formats=("jpeg",),
        workers=os.cpu_count() or 1,
    )
    return time.perf_counter() - start


def child(args: argparse.Namespace, workdir: Path) -> None:
    """In the child: ingest with one scheduler, then again (cache hit); print a JSON summary."""
    import components.data.image_ingest as image_ingest
    from components.data.ingest import ingest
    from components.data.spec import DataSpec

    image_ingest.SCHEDULER = args.child
    spec = DataSpec(
        source="image_folder",
        path=str(workdir / "folder"),
        image_size=args.size,
        partition_rows=args.partition_rows,
    )
    cache = workdir / f"cache-{args.child}"
    start = time.perf_counter()
    first = ingest(spec, cache)
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    second = ingest(spec, cache)
    hit_s = time.perf_counter() - start
    assert not first.cache_hit and second.cache_hit
    summary = {
        "rows": sum(first.meta["row_counts"].values()),
        "ingest_s": ingest_s,
        "hit_s": hit_s,
        "self_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    }
    print(json.dumps(summary))


class TreeMemory:
    """Samples the summed RSS and PSS of a process and its descendants in a thread."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self._every = every_s
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            rss = pss = 0
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                return
            for process in processes:
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue
                rss, pss = rss + info.rss, pss + info.pss
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self._every)


def ingest_with(args: argparse.Namespace, workdir: Path, scheduler: str) -> dict:
    """Run :func:`child` for ``scheduler`` in a fresh interpreter, sampling its tree's memory."""
    command = [
        sys.executable, __file__, "--child", scheduler, "--workdir", str(workdir),
        "--size", str(args.size), "--partition-rows", str(args.partition_rows),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    with TreeMemory(process.pid) as memory:
        out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"the {scheduler} child failed (exit {process.returncode})")
    summary = json.loads(out.strip().splitlines()[-1])
    return {**summary, "tree_rss_gib": memory.peak_rss / GIB, "tree_pss_gib": memory.peak_pss / GIB}


def rows_for(args: argparse.Namespace, generate_s: float, results: dict) -> list[tuple[str, str]]:
    """The table: one block per scheduler, then the ratio and the memory check."""
    from components.data.image_ingest import SCHEDULER as default

    disk = sum(f.stat().st_size for f in (args.workdir / "folder").rglob("*.jpg"))
    rows = [
        ("folder", f"{args.images:,} JPEGs of {args.size}x{args.size}, {args.classes} classes, "
                   f"{disk / 2**20:,.0f} MiB; {args.partition_rows:,} images/shard"),
        ("generate (one process per core)", f"{generate_s:.1f} s"),
    ]  # fmt: skip
    for name, r in results.items():
        rows += [
            (f"ingest, {name}", f"{r['ingest_s']:.1f} s, "
                                f"{r['rows'] / r['ingest_s']:,.0f} images/s"),
            (f"  peak memory, {name}", f"RSS {r['tree_rss_gib']:.2f} GiB summed over the tree "
                                       f"(child alone {r['self_peak_rss_gib']:.2f} GiB), "
                                       f"PSS {r['tree_pss_gib']:.2f} GiB"),
            (f"  cache hit, {name}", f"{r['hit_s']:.2f} s"),
        ]  # fmt: skip
    ratio = results["threads"]["ingest_s"] / results["processes"]["ingest_s"]
    peak = results[default]["tree_rss_gib"]
    ok = "OK" if peak < PEAK_RSS_TARGET_GIB else "MISSED"
    rows += [
        ("speed-up processes / threads", f"{ratio:.2f}x"),
        (f"default ({default}) peak RSS",
         f"{peak:.2f} GiB (target < {PEAK_RSS_TARGET_GIB} GiB) {ok}"),
    ]  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    args = parse_args(argv)
    if args.child:
        child(args, args.workdir)
        return
    keep = args.workdir is not None
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sennflow-image-bench-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        generate_s = generate(args, args.workdir / "folder")
        results = {name: ingest_with(args, args.workdir, name) for name in SCHEDULERS}
        # A sibling script: running a bench puts bench/ on sys.path.
        from ingest_throughput import print_table

        print_table("image-folder ingest", rows_for(args, generate_s, results))
    finally:
        if not keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
