"""Quantiles found without numpy's copies equal numpy's bit for bit: ties, zeros, both ends, float32 input."""

from __future__ import annotations

import numpy as np
import pytest

from ood_core.scores import line
from ood_core.scores.quantiles import merged_order_statistics, quantiles
from ood_core.scores.shaping import QUANTILE_GRID

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("shape", [(1, 5), (10, 40), (30, 17)])
@pytest.mark.parametrize("p", [0, 0.1, 33.3, 50, 65, 90, 99.9, 100])
def test_line_weight_thresholds_equal_numpy_without_forming_the_products(shape, p):
    classes, dim = 6, shape[1]
    phi = RNG.normal(size=(classes, dim))
    phi[:, 2] = 0  # a neuron without importance: its products are all ±0
    weight = RNG.integers(-3, 4, shape) * 0.25  # ties, zeros, negative weights
    expected = [
        np.percentile(np.abs(phi[c])[None, :] * weight, p) for c in range(classes)
    ]
    line._thresholds.clear()
    assert np.array_equal(line.weight_thresholds(phi, weight, p), expected)


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 25_600])
def test_quantiles_equal_numpy_on_the_float64_values(size):
    values = np.maximum(RNG.normal(0.2, 1, size), 0).astype(
        np.float32
    )  # many exact zeros
    expected = np.quantile(values.astype(np.float64), QUANTILE_GRID)
    assert np.array_equal(quantiles(values.reshape(-1, 1), QUANTILE_GRID), expected)


# in the first half sorted or in the second
@pytest.mark.parametrize("where", [0, 40, 80, 100])
def test_quantiles_of_values_with_a_nan_are_nan_as_numpys(where):
    values = RNG.normal(size=101)
    values[where] = np.nan
    assert np.isnan(quantiles(values, QUANTILE_GRID)).all()
    assert np.isnan(np.quantile(values, QUANTILE_GRID)).all()


@pytest.mark.parametrize(
    "sizes", [(0, 5), (5, 0), (1, 1), (7, 300), (300, 7), (64, 64)]
)
def test_order_statistics_of_two_sorted_arrays_equal_a_merge(sizes):
    # many ties across them
    first, second = (np.sort(RNG.integers(0, 6, n)).astype(np.float32) for n in sizes)
    ranks = np.arange(sum(sizes))
    merged = np.sort(np.concatenate([first, second]))
    assert np.array_equal(merged_order_statistics(first, second, ranks), merged)
