"""Split a labelled dataset among federated clients.

Every partitioner takes the label vector ``y`` and returns one array of row indices per client;
the arrays are disjoint, sorted, and together cover every row exactly once. All are seeded.

- :func:`iid`: a uniform random split of equal sizes (McMahan et al. 2017, "Communication-Efficient
  Learning of Deep Networks from Decentralized Data").
- :func:`dirichlet`: label skew by a Dirichlet(alpha) prior over clients for each class (Hsu, Qi and
  Brown 2019, "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
  Classification"); large alpha tends to IID, small alpha gives each client few classes.
- :func:`disjoint_classes`: each client owns its own set of classes (Hendryx et al. 2021,
  "Federated Reconnaissance: Efficient, Distributed, Class-Incremental Learning").
"""

from __future__ import annotations

import numpy as np

MAX_DIRICHLET_TRIES = 100


def _check_labels(y: np.ndarray, num_clients: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels y must be a 1-D integer array, got shape {y.shape} {y.dtype}")
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if num_clients > len(y):
        raise ValueError(f"num_clients ({num_clients}) is more than the samples ({len(y)})")
    return y


def iid(y: np.ndarray, num_clients: int, seed: int) -> list[np.ndarray]:
    """Shuffle the rows and cut them into ``num_clients`` shards whose sizes differ by at most 1.

    Raises:
        ValueError: if ``num_clients`` < 1 or more than the number of samples.
    """
    y = _check_labels(y, num_clients)
    order = np.random.default_rng(seed).permutation(len(y))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def _dirichlet_once(y: np.ndarray, num_clients: int, alpha: float, rng) -> list[np.ndarray]:
    """One draw of Hsu et al.'s scheme: per class, q ~ Dir(alpha * 1) and cut the class by q."""
    shards: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(proportions)[:-1] * len(rows)).astype(int)
        for client, part in enumerate(np.split(rows, cuts)):
            shards[client].append(part)
    return [np.sort(np.concatenate(parts)) for parts in shards]


def dirichlet(
    y: np.ndarray, num_clients: int, alpha: float, seed: int, min_size: int = 1
) -> list[np.ndarray]:
    """Label-skewed split: each class is divided among clients by proportions ~ Dir(alpha).

    The draw is repeated (same generator, so still seeded) until every client holds at least
    ``min_size`` rows, as common implementations of Hsu et al. (2019) do.

    Raises:
        ValueError: if ``alpha`` <= 0, ``num_clients`` < 1, ``min_size`` < 0,
            ``num_clients * min_size`` exceeds the samples, or no draw in
            ``MAX_DIRICHLET_TRIES`` gives every client ``min_size`` rows.
    """
    y = _check_labels(y, num_clients)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if min_size < 0 or num_clients * min_size > len(y):
        raise ValueError(
            f"min_size ({min_size}) must be >= 0 and num_clients * min_size "
            f"({num_clients * min_size}) at most the samples ({len(y)})"
        )
    rng = np.random.default_rng(seed)
    for _ in range(MAX_DIRICHLET_TRIES):
        shards = _dirichlet_once(y, num_clients, alpha, rng)
        if min(len(shard) for shard in shards) >= min_size:
            return shards
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) split in {MAX_DIRICHLET_TRIES} draws gave each of "
        f"{num_clients} clients min_size={min_size} rows; raise alpha or lower min_size"
    )


def disjoint_classes(y: np.ndarray, num_clients: int, seed: int) -> list[np.ndarray]:
    """Give each client its own classes: the shuffled classes are cut into near-equal groups.

    Raises:
        ValueError: if ``num_clients`` < 1 or more than the number of distinct classes.
    """
    y = _check_labels(y, num_clients)
    classes = np.unique(y)
    if num_clients > len(classes):
        raise ValueError(
            f"num_clients ({num_clients}) is more than the classes ({len(classes)}) for "
            "disjoint_classes: give each client its own classes with "
            f"federated.num_clients={len(classes)} or fewer, or share them with "
            "federated.partition=dirichlet or iid"
        )
    groups = np.array_split(np.random.default_rng(seed).permutation(classes), num_clients)
    return [np.flatnonzero(np.isin(y, group)) for group in groups]
