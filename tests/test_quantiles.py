"""The copy-free quantiles equal numpy's bit for bit: ties, both ends, one value, float32 input."""

from __future__ import annotations

import numpy as np
import pytest

from ood_core.scores.quantiles import percentile_in_place, sorted_quantiles
from ood_core.scores.shaping import QUANTILE_GRID

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("size", [1, 2, 7, 100, 1001])
@pytest.mark.parametrize("p", [0, 0.1, 33.3, 50, 65, 90, 99.9, 100])
def test_percentile_in_place_equals_numpy(size, p):
    rows = RNG.integers(0, 5, (4, size)) * RNG.choice([1.0, 0.1], (4, size))
    expected = np.percentile(rows, p, axis=1)
    assert np.array_equal(percentile_in_place(rows.copy(), p), expected)


@pytest.mark.parametrize("size", [1, 3, 1000, 25_600])
def test_sorted_quantiles_equal_numpy_on_the_float64_values(size):
    values = np.maximum(RNG.normal(0.2, 1, size), 0).astype(
        np.float32
    )  # many exact zeros
    expected = np.quantile(values.astype(np.float64), QUANTILE_GRID)
    assert np.array_equal(sorted_quantiles(np.sort(values), QUANTILE_GRID), expected)
