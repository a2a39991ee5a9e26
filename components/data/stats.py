"""Per-feature mean and standard deviation that can be computed partition by partition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Below this a feature is treated as constant: dividing by ~0 would blow it up, so it keeps std 1.
STD_FLOOR = 1e-8


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (M2) of each feature over some rows.

    Partial moments of disjoint row sets merge exactly, so statistics of data larger than
    memory come from a streaming (or tree) reduction over partitions.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, num_features: int) -> Moments:
        """Moments of zero rows."""
        return cls(0, np.zeros(num_features), np.zeros(num_features))

    @classmethod
    def of_rows(cls, x: np.ndarray) -> Moments:
        """Moments of the rows of ``x`` with shape ``(N, F)``, accumulated in float64."""
        if len(x) == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0, dtype=np.float64)
        # Centre in the input dtype (no float64 copy of the partition), then undo the rounding
        # of the centre exactly: sum((x - c)^2) = sum((x - mean)^2) + n * (mean - c)^2.
        centre = mean.astype(x.dtype)
        centered = x - centre
        m2 = np.einsum("nf,nf->f", centered, centered, dtype=np.float64)
        m2 -= len(x) * (mean - centre) ** 2
        return cls(len(x), mean, np.maximum(m2, 0.0))

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of both row sets.

        Uses the pairwise update of Chan, Golub & LeVeque (1979), which stays accurate where
        the naive sum-of-squares formula cancels catastrophically.
        """
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / count)
        return Moments(count, mean, m2)

    def std(self) -> np.ndarray:
        """Population standard deviation; (near-)constant features get 1.0."""
        std = np.sqrt(self.m2 / max(self.count, 1))
        return np.where(std < STD_FLOOR, 1.0, std)
