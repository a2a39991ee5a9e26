"""Split digits for the continual-learning tests: the ingested digits, train and test splits."""

from __future__ import annotations

import pytest

from components.data.reader import read_split


@pytest.fixture(scope="session")
def digits(digits_dataset):
    """``(x_train, y_train, x_test, y_test)`` of the ingested digits."""
    return (*read_split(digits_dataset, "train"), *read_split(digits_dataset, "test"))
