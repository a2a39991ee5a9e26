"""Prefect task: ingest a data source into a cached Arrow dataset."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


# The ingest stage has its own content fingerprint cache, so Prefect's result cache stays off.
@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(spec, cache_dir: str):
    """Run :func:`components.data.ingest.ingest` and log what it did."""
    from components.data.duplicates import duplicate_notes
    from components.data.ingest import ingest
    from components.data.reader import index_note

    logger = get_run_logger()
    result = ingest(spec, cache_dir, progress=logger.info)
    meta = result.meta
    logger.info(
        "dataset %s (%s): rows %s, dropped %d, cache %s",
        result.path,
        spec.source,
        meta["row_counts"],
        meta.get("dropped_rows", 0),
        "hit" if result.cache_hit else "miss",
    )
    if meta.get("index_columns"):
        logger.info(index_note(meta["index_columns"]))
    for note in duplicate_notes(meta.get("duplicates") or {}):  # on a cache hit too
        logger.warning(note)
    return result
