"""The bfloat16 screen of ``neighbours.top_similarities`` against float64 brute force: it must return exactly the
brute-force top k, whatever the data (ties, duplicates, negative similarities, zero rows, rows that overflow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ood_core.scores import neighbours
from ood_core.scores.feature_space import l2_normalise, nearest_distances

RNG = np.random.default_rng(11)


def _unit(x: np.ndarray) -> np.ndarray:
    return l2_normalise(x.astype(np.float32))


def _brute_force(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    sims = queries.astype(np.float64) @ bank.astype(np.float64).T
    return -np.sort(-sims, axis=1)[:, :k]


def _check(queries: np.ndarray, bank: np.ndarray, k: int) -> None:
    ours = neighbours.top_similarities(queries, bank, k, screen=True)
    np.testing.assert_allclose(ours, _brute_force(queries, bank, k), atol=1e-6)


def _relu_data(n: int, m: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    bank = _unit(np.maximum(RNG.normal(0.2, 1, (m, d)), 0))
    queries = _unit(np.maximum(RNG.normal(0.2, 1, (n, d)), 0))
    return queries, bank


@pytest.mark.parametrize("k", [1, 7, 64])
def test_screen_returns_the_brute_force_top_k(k):
    queries, bank = _relu_data(200, 4096, 64)
    _check(queries, bank, k)


def test_screen_with_negative_similarities_and_a_query_in_the_bank():
    bank = _unit(RNG.normal(0, 1, (3000, 32)))
    queries = np.concatenate([_unit(RNG.normal(0, 1, (100, 32))), bank[:5]])
    _check(queries, bank, 20)


def test_screen_with_exact_ties_and_duplicate_bank_rows():
    bank = _unit(
        RNG.integers(0, 3, (2048, 16))
    )  # few distinct vectors: most similarities tie
    bank = np.concatenate([bank, bank[:512]])
    queries = _unit(RNG.integers(0, 3, (150, 16)))
    _check(queries, bank, 40)


def test_screen_with_near_ties_inside_the_bfloat16_error():
    base = _unit(RNG.normal(0, 1, (1, 64)))[0]
    # bank rows whose similarities to the query differ by ~1e-5, far below bfloat16's resolution
    bank = _unit(base + RNG.normal(0, 1e-4, (4096, 64)))
    _check(base[None, :], bank, 50)


def test_rows_the_screen_cannot_narrow_fall_back_to_the_product(monkeypatch):
    queries, bank = _relu_data(60, 4096, 32)
    queries[3] = 0  # every similarity ties at 0: the screen would keep the whole bank
    monkeypatch.setattr(neighbours, "CAP_EXTRA", 0)
    monkeypatch.setattr(neighbours, "CAP_FACTOR", 2)
    _check(queries, bank, 30)


def test_a_chunk_whose_every_row_the_screen_cannot_narrow_falls_back_whole():
    queries, bank = _relu_data(12, 4096, 32)
    queries[:] = 0  # every row ties at 0 everywhere: no row keeps candidates
    _check(queries, bank, 30)


def test_key_at_least_is_numpys_searchsorted():
    finite = neighbours.KEY_VALUES[1:-1]
    probes = np.concatenate(
        [
            finite[RNG.integers(0, len(finite), 500)],  # exact bfloat16 values
            RNG.normal(0, 1, 500) * 10.0 ** RNG.integers(-40, 39, 500),
            [0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300],
        ]
    )
    ours = [neighbours._key_at_least(v, neighbours.KEY_VALUES) for v in probes]
    expected = np.searchsorted(neighbours.KEY_VALUES, probes) + neighbours.KEY_LOW
    np.testing.assert_array_equal(ours, expected)


def test_top_of_is_a_descending_sort_of_each_row():
    sims = RNG.normal(0, 1, (40, 90))
    sims[:, 60:] = -np.inf  # the padding past a row's candidates
    sims[3, :10] = 0.5  # ties
    expected = -np.sort(-sims, axis=1)[:, :25]
    np.testing.assert_array_equal(
        neighbours._top_of(sims, 25), expected.astype(np.float32)
    )


def test_forcing_the_screen_on_too_small_a_bank_is_refused():
    queries, bank = _relu_data(5, 100, 8)
    with pytest.raises(ValueError, match="BLOCK"):
        neighbours.top_similarities(queries, bank, 50, screen=True)


def test_default_uses_the_product_for_small_banks_and_caps_k():
    queries, bank = _relu_data(20, 30, 8)
    ours = neighbours.top_similarities(queries, bank, 200)
    assert ours.shape == (20, 30)
    np.testing.assert_allclose(ours, _brute_force(queries, bank, 30), atol=1e-6)


def test_nearest_distances_are_the_ascending_euclidean_distances():
    queries, bank = _relu_data(50, 500, 16)
    expected = np.sort(
        np.linalg.norm(
            queries[:, None, :].astype(np.float64) - bank[None, :, :], axis=2
        ),
        axis=1,
    )[:, :25]
    np.testing.assert_allclose(
        nearest_distances(queries, bank, 25), expected, atol=2e-6
    )


@pytest.mark.parametrize("dim", [512, 2048])
def test_this_machines_bfloat16_product_obeys_the_screens_bound(dim):
    """The screen's guarantee rests on bfloat16 inputs multiplied exactly, summed in float32 and rounded once to
    bfloat16 (to nearest); a build of torch that summed in bfloat16, or truncated, would fail here."""
    queries, bank = _relu_data(256, 2048, dim)
    z_hat, b_hat = (torch.from_numpy(x).to(torch.bfloat16) for x in (queries, bank))
    product = (z_hat @ b_hat.T).double().numpy()
    exact = z_hat.double().numpy() @ b_hat.double().numpy().T
    d = queries.shape[1]
    gamma = d * neighbours.U_FP32 / (1 - d * neighbours.U_FP32)
    rho = neighbours.U_BF16 / (1 - neighbours.U_BF16)
    norms = np.linalg.norm(z_hat.double().numpy(), axis=1)[:, None] * np.linalg.norm(
        b_hat.double().numpy(), axis=1
    )
    assert (np.abs(product - exact) <= rho * np.abs(product) + gamma * norms).all()


def test_key_order_is_the_bfloat16_value_order():
    bits = np.arange(-32768, 32768).astype(np.int16)
    values = (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    finite = ~np.isnan(values)
    keys = np.array([neighbours._key(b) for b in bits[finite]])
    order = np.argsort(keys, kind="stable")
    assert (np.diff(values[finite][order]) >= 0).all()
    np.testing.assert_array_equal(
        neighbours.KEY_VALUES, np.sort(np.unique(values[finite].astype(np.float64)))
    )


def test_a_query_with_nan_is_left_to_the_product_and_stays_nan():
    queries, bank = _relu_data(10, 4096, 32)
    queries[2] = np.nan
    ours = neighbours.top_similarities(queries, bank, 20, screen=True)
    assert np.isnan(ours[2]).all()  # the workspace then reports non-finite scores
    rest = np.delete(queries, 2, axis=0)
    np.testing.assert_allclose(
        np.delete(ours, 2, axis=0), _brute_force(rest, bank, 20), atol=1e-6
    )


def test_the_bank_screens_with_its_rows_less_their_mean():
    """The screen multiplies by b − c (c the bank's mean row, which ranks a query's bank rows alike); the bound's
    norms must be those of the centred rows and of their own bfloat16 rounding."""
    _, rows = _relu_data(1, 3000, 48)
    bank = neighbours.Bank(rows)
    centred = rows.astype(np.float64) - rows.astype(np.float64).mean(axis=0)
    rounded = torch.from_numpy(centred).to(torch.bfloat16).double().numpy()
    np.testing.assert_allclose(bank.rounded.double().numpy(), rounded, atol=2**-9)
    expected = [
        np.linalg.norm(x, axis=1).max()
        for x in (centred, centred - bank.rounded.double().numpy(), rounded)
    ]
    np.testing.assert_allclose(bank.norms, expected, rtol=1e-6)
    assert (
        bank.norms[0] < 1
    )  # ReLU rows share a large mean: every centred row is shorter than the unit rows
