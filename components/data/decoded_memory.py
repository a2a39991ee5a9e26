"""How much of an image dataset a stage decodes at once.

Array datasets are read whole, as they always were. An image dataset decodes to float32 inputs
of ``4 * C * S * S`` bytes per image (602 KB at 224x224), so stages either stream it
(:func:`components.data.reader.iter_batches`), decode a bounded sample of it
(:data:`SAMPLE_BYTES`), or, where a stage needs whole splits in memory (federated, continual),
refuse it above :data:`WHOLE_SPLITS_BYTES` (:func:`check_decoded_size`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.data.errors import DataError
from components.data.reader import load_meta, read_labels

# Decoded inputs of an image dataset that an analysis holds at once (certified radius,
# uncertainty, prototype quality, Prob-PSENN's reference): all of a 16-64 px dataset of a
# few thousand images, the first 445 images at 224x224.
SAMPLE_BYTES = 256 << 20
# Decoded train + test splits of an image dataset that federated and continual runs hold in
# memory (and share through Ray's object store): 1,780 images at 224x224, 87,000 at 32x32.
WHOLE_SPLITS_BYTES = 1 << 30


def sample_rows(meta) -> int | None:
    """Rows of a split whose decoded inputs fit in :data:`SAMPLE_BYTES` (at least 1); ``None``
    (every row) for an array dataset."""
    if not meta.is_image:
        return None
    return max(1, SAMPLE_BYTES // (4 * meta.num_features))


def reference_rows(dataset_path: Path) -> np.ndarray:
    """Training rows (split positions, ascending) of a class-balanced sample within
    :data:`SAMPLE_BYTES`: the first rows of each class, so every class has reference inputs."""
    meta = load_meta(dataset_path)
    y = read_labels(dataset_path, "train")
    budget = sample_rows(meta)
    if budget is None or budget >= len(y):
        return np.arange(len(y))
    per_class = max(1, budget // meta.num_classes)
    rows = [np.flatnonzero(y == c)[:per_class] for c in range(meta.num_classes)]
    return np.sort(np.concatenate(rows))


def check_decoded_size(dataset_path: Path, splits: tuple[str, ...], stage: str) -> None:
    """Refuse an image dataset whose ``splits`` decode to more than :data:`WHOLE_SPLITS_BYTES`.

    Args:
        dataset_path: the ingested dataset.
        splits: the splits ``stage`` holds in memory at once.
        stage: what holds them (named in the message), e.g. ``"federated"``.

    Raises:
        DataError: the decoded splits are over the limit; the message names it and the fix.
    """
    meta = load_meta(dataset_path)
    if not meta.is_image:
        return
    rows = sum(meta.row_counts[split] for split in splits)
    size = rows * 4 * meta.num_features
    if size > WHOLE_SPLITS_BYTES:
        shape = "x".join(str(d) for d in meta.feature_shape)
        raise DataError(
            f"{stage} holds the {' and '.join(splits)} splits in memory: {rows} images of "
            f"{shape} decode to {_size(size)} of float32, over its limit of "
            f"{_size(WHOLE_SPLITS_BYTES)}; ingest at a smaller data.image_size "
            "(e.g. data.image_size=32) or from fewer images",
            file=str(dataset_path),
            rows=rows,
        )


def _size(count: int) -> str:
    """``count`` bytes in the largest binary unit that keeps the number >= 1."""
    unit = max(u for u in range(4) if u == 0 or count >= 1 << (10 * u))
    return f"{count / (1 << (10 * unit)):.1f} {('B', 'KiB', 'MiB', 'GiB')[unit]}"
