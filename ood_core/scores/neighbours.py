"""Exact nearest neighbours by cosine similarity: a bfloat16 screen, then an exact re-rank of the few candidates.

Brute force multiplies every query with every bank row in float32: N·M·D multiply-adds, 22 s for KNN's
70,000 × 50,000 × 512 on 2 CPU cores. bfloat16 products run ~2× faster on CPUs with bfloat16 instructions, but
each is off by up to ~0.5 %. So they only *screen*: for each query, every bank row whose screened similarity could
still be among the true top k, by a bound on the rounding errors this query actually made, is re-scored exactly
(float64 sums of the float32 vectors) and the top k of those are returned. The result is the brute-force result,
not an approximation.

The bound, for query z and any bank row b (centred: the bank's mean row subtracted, see ``Bank``), with ẑ, b̂ the
bfloat16-rounded vectors and a their bfloat16 product (float32 accumulation over D terms, then rounded to bfloat16,
unit roundoff u = 2⁻⁸):

    |a − ẑ·b̂|  ≤ ρ|a| + γ_D ‖ẑ‖ max‖b̂‖          ρ = u/(1 − u),  γ_D = D·2⁻²⁴ / (1 − D·2⁻²⁴)
    |ẑ·b̂ − z·b| ≤ ‖z − ẑ‖ max‖b‖ + ‖ẑ‖ max‖b − b̂‖   (Cauchy–Schwarz, with the errors actually made)

so the true similarity lies in [lo(a), hi(a)] = [a − ρ|a| − E, a + ρ|a| + E]. With τ the k-th largest screened value,
the k-th largest true similarity is ≥ lo(τ), and a bank row can be in the true top k only if hi(a) ≥ lo(τ): those
rows are the candidates. ``tests/test_neighbours.py`` checks the bound against this machine's bfloat16 products.

On a GPU (``dense.score_device``), or for banks too small to gain, the float32 product is used directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import numpy as np
import torch

from ..jit import njit, prange
from . import dense
from .kernels import FAST
from .moments import row_chunks

U_BF16 = 2.0**-8
U_FP32 = 2.0**-24
# Below this many bank rows the float32 product is cheap enough (and the screen would keep a large share of them).
SCREEN_MIN_BANK = 8192
# Queries per bfloat16 product: 1024 × 50,000 bfloat16 similarities are 100 MB.
CHUNK = 1024
# A row whose screen keeps more than CAP_FACTOR·k + CAP_EXTRA bank rows (near-duplicate or zero vectors) is
# computed by the float32 product instead.
CAP_FACTOR, CAP_EXTRA = 8, 1024

# Bank rows per re-rank tile: 512 float32 rows of D = 512 are 1 MB, so a tile stays in cache while its pairs run.
TILE_BITS = 9
# The screen reads a row's similarities in blocks of this many, skipping blocks whose maximum is below its floor.
BLOCK = 32


def _key_values() -> np.ndarray:
    """The value of every finite bfloat16 in ``_key`` order (−inf … +inf), float64, strictly increasing."""
    keys = np.arange(KEY_LOW, -KEY_LOW + 1)
    bits = np.where(keys >= 0, keys, -32768 - keys).astype(np.int16)
    return (
        (bits.view(np.uint16).astype(np.uint32) << 16)
        .view(np.float32)
        .astype(np.float64)
    )


KEY_LOW = -32640  # the key of −inf (+inf is 32640; beyond are NaN patterns)
KEY_VALUES = _key_values()


class Bank:
    """Unit-length bank rows b (float32 [M, D]) with what the screen needs of them, prepared once and reused for every
    scored set.

    The screen multiplies by the rows less their mean c: z·b = z·(b − c) + z·c, and z·c is the same for every bank
    row of one query, so it ranks the rows alike. The products z·(b − c) are several times smaller than z·b (ReLU
    features share a large mean), and so are their rounding errors: fewer candidates to re-score. ``rounded`` is the
    bfloat16 copy of b − c (exact in float64: c is float32), ``norms`` the largest norm of b − c, of its rounding
    error and of its bfloat16 copy."""

    def __init__(self, rows: np.ndarray):
        self.rows = np.ascontiguousarray(rows, np.float32)
        self.centre = self.rows.mean(axis=0, dtype=np.float64).astype(np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def _centred(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, b − c)`` in float64, a chunk of rows at a time."""
        for start, stop, exact in row_chunks(self.rows):
            exact -= self.centre
            yield start, stop, exact

    @cached_property
    def rounded(self) -> torch.Tensor:
        out = torch.empty(self.rows.shape, dtype=torch.bfloat16)
        for start, stop, exact in self._centred():
            out[start:stop] = torch.from_numpy(exact)
        return out

    @cached_property
    def norms(self) -> tuple[float, float, float]:
        """max‖b − c‖, max‖(b − c) − bf16(b − c)‖, max‖bf16(b − c)‖ (float64, a chunk of rows at a time)."""
        largest = np.zeros(3)
        for start, stop, exact in self._centred():
            rounded = self.rounded[start:stop].double().numpy()
            for slot, x in enumerate((exact, exact - rounded, rounded)):
                largest[slot] = max(largest[slot], np.sqrt((x * x).sum(1).max()))
        return tuple(largest)


def top_similarities(
    queries: np.ndarray, bank: Bank | np.ndarray, k: int, screen: bool | None = None
) -> np.ndarray:
    """The ``k`` largest ``z·b`` over bank rows b, per query row z, in descending order [N, k] (float32).

    ``screen`` forces (True) or forbids (False) the bfloat16 screen; by default it is used on the CPU for banks of
    at least ``SCREEN_MIN_BANK`` rows when k ≤ M/(4·BLOCK) (with fewer rows per neighbour it gains nothing). Pass
    a ``Bank`` to prepare the bank only once."""
    queries = np.ascontiguousarray(queries, np.float32)
    bank = bank if isinstance(bank, Bank) else Bank(bank)
    k = min(int(k), len(bank))
    device = dense.score_device()
    if screen is None:
        screen = (
            device.type == "cpu"
            and len(bank) >= SCREEN_MIN_BANK
            and 4 * BLOCK * k <= len(bank)
        )
    if not screen:
        return _product_top(queries, bank.rows, k, device)
    if BLOCK * k > len(bank):
        raise ValueError(
            f"the bfloat16 screen needs at least k·BLOCK = {BLOCK * k} bank rows, not {len(bank)}"
        )
    return _screened_top(queries, bank, k)


def _product_top(
    queries: np.ndarray, bank: np.ndarray, k: int, device: torch.device
) -> np.ndarray:
    """Brute force: float32 products and ``topk``, ``CHUNK`` · 2 queries at a time."""
    bank_t = torch.from_numpy(bank).to(device)
    out = np.empty((len(queries), k), np.float32)
    step = 2 * CHUNK
    for start in range(0, len(queries), step):
        z = torch.from_numpy(queries[start : start + step]).to(device)
        top = torch.topk(z @ bank_t.T, k, dim=1, sorted=True).values
        out[start : start + len(z)] = top.cpu().numpy()
    return out


def _screened_top(queries: np.ndarray, bank: Bank, k: int) -> np.ndarray:
    bank_norm, bank_error, bank_hat_norm = bank.norms
    d = bank.rows.shape[1]
    gamma = d * U_FP32 / (1 - d * U_FP32)
    rho = U_BF16 / (1 - U_BF16)
    cap = min(len(bank), CAP_FACTOR * k + CAP_EXTRA)
    out = np.empty((len(queries), k), np.float32)
    # Buffers reused by every chunk: a fresh 100 MB product per chunk cost ~25,000 page faults (~20 % of its time).
    products = torch.empty((min(CHUNK, len(queries)), len(bank)), dtype=torch.bfloat16)
    candidates = np.empty((len(products), cap), np.int32)
    counts = np.empty(len(products), np.int64)
    for start in range(0, len(queries), CHUNK):
        z = queries[start : start + CHUNK]
        z_hat = torch.from_numpy(z).to(torch.bfloat16)
        z_hat64 = z_hat.double().numpy()
        z_hat_norm = np.linalg.norm(z_hat64, axis=1)
        error = (
            np.linalg.norm(z - z_hat64, axis=1) * bank_norm
            + z_hat_norm * (bank_error + gamma * bank_hat_norm)
        ) * (1 + 1e-6) + 1e-12
        product = products[: len(z)]
        torch.matmul(z_hat, bank.rounded.T, out=product)
        rows = slice(0, len(z))
        _screen(
            product.view(torch.int16).numpy(), k, error, rho, KEY_VALUES,
            candidates[rows], counts[rows],
        )  # fmt: skip
        top = out[start : start + len(z)]
        top[:] = _top_of(
            _rerank(z, bank.rows, candidates[rows], counts[rows], TILE_BITS), k
        )
        failed = counts[rows] < 0
        if failed.any():
            top[failed] = _product_top(z[failed], bank.rows, k, torch.device("cpu"))
    return out


@njit(cache=True, inline="always")
def _key(bits: np.int16) -> int:
    """An integer that orders bfloat16 bit patterns as their values (+0 is 0, −0 is −32768 + 32768 = 0 too)."""
    b = np.int32(bits)
    return b if b >= 0 else -32768 - b


@njit(cache=True, inline="always")
def _value(key: int, values: np.ndarray) -> float:
    return values[min(max(key, KEY_LOW), -KEY_LOW) - KEY_LOW]


@njit(cache=True, inline="always")
def _key_at_least(value: float, values: np.ndarray) -> int:
    """The smallest key whose value is ≥ ``value``: ``a ≥ value`` ⟺ ``_key(a) ≥`` this, for finite bfloat16 a.
    A binary search, as ``np.searchsorted(values, value)`` (which took numba ~1 s to compile); NaN sorts last."""
    low, high = 0, len(values)
    while low < high:
        middle = (low + high) >> 1
        if not values[middle] >= value:
            low = middle + 1
        else:
            high = middle
    return low + KEY_LOW


@njit(cache=True, inline="always")
def _screen_floor(tau: float, error: float, rho: float) -> float:
    """hi⁻¹(lo(τ)): the smallest screened value whose true similarity can still reach lo(τ) (see the module)."""
    low = tau - rho * abs(tau) - error
    target = low - error
    floor = target / (1 + rho) if target >= 0 else target / (1 - rho)
    return floor - 1e-12 * (1 + abs(floor))


@njit(cache=True)
def _kth_largest(keys: np.ndarray, count: int, k: int) -> int:
    """The exact k-th largest of ``keys[:count]`` (bfloat16 order keys, k ≤ count): two 256-bin histograms, of the
    high byte and then of the low byte within the high byte's bin."""
    coarse = np.zeros(256, np.int64)
    for q in range(count):
        coarse[(keys[q] + 32768) >> 8] += 1
    above = 0
    high = 255
    while above + coarse[high] < k:
        above += coarse[high]
        high -= 1
    fine = np.zeros(256, np.int64)
    for q in range(count):
        shifted = keys[q] + 32768
        if shifted >> 8 == high:
            fine[shifted & 255] += 1
    low = 255
    while above + fine[low] < k:
        above += fine[low]
        low -= 1
    return ((high << 8) | low) - 32768


@njit(parallel=True, cache=True)
def _screen(
    bits: np.ndarray,
    k: int,
    error: np.ndarray,
    rho: float,
    values: np.ndarray,
    candidates: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Per query row of bfloat16 similarities (``bits``), the bank rows that can be in its true top k.

    The row is cut into blocks of ``BLOCK``; the k-th largest block maximum t₀ has at least k similarities at or
    above it, so τ ≥ t₀ and every bank row in the true top k has a ≥ hi⁻¹(lo(t₀)): those are collected from the
    blocks whose maximum reaches that floor, then narrowed to a ≥ hi⁻¹(lo(τ)). A row that collects more than the
    buffer holds (near-duplicate or zero vectors), or fewer than k (NaN similarities), gets ``counts[i] = −1``: the
    caller computes it by brute force."""
    n, m = bits.shape
    cap = candidates.shape[1]
    blocks = (m + BLOCK - 1) // BLOCK
    for i in prange(n):
        row = bits[i]
        maxima = np.empty(blocks, np.int32)
        for b in range(blocks):
            top = -32768
            for j in range(b * BLOCK, min(m, (b + 1) * BLOCK)):
                top = max(top, _key(row[j]))
            maxima[b] = top
        t0 = _kth_largest(maxima, blocks, k)
        first = _key_at_least(_screen_floor(_value(t0, values), error[i], rho), values)
        found = np.empty(cap, np.int32)
        count = 0
        for b in range(blocks):
            if maxima[b] < first:
                continue
            for j in range(b * BLOCK, min(m, (b + 1) * BLOCK)):
                key = _key(row[j])
                if key >= first:
                    if count < cap:
                        candidates[i, count] = j
                        found[count] = key
                    count += 1
        if count > cap or count < k:  # (fewer than k only for non-finite similarities)
            counts[i] = -1
            continue
        tau = _kth_largest(found, count, k)
        floor = _key_at_least(_screen_floor(_value(tau, values), error[i], rho), values)
        kept = 0
        for q in range(count):
            if found[q] >= floor:
                candidates[i, kept] = candidates[i, q]
                kept += 1
        counts[i] = kept


@njit(cache=True)
def _tile_order(candidates: np.ndarray, counts: np.ndarray, tile_bits: int, tiles: int):
    """Every kept candidate (row i, slot q) as a pair, grouped by bank tile (``j >> tile_bits``; a counting sort):
    tile t's pairs are ``starts[t]:starts[t+1]`` of ``rows``/``slots``."""
    n = candidates.shape[0]
    starts = np.zeros(tiles + 1, np.int64)
    for i in range(n):
        for q in range(max(counts[i], 0)):
            starts[(candidates[i, q] >> tile_bits) + 1] += 1
    for t in range(tiles):
        starts[t + 1] += starts[t]
    fill = starts[:-1].copy()
    rows = np.empty(starts[-1], np.int32)
    slots = np.empty(starts[-1], np.int32)
    for i in range(n):
        for q in range(max(counts[i], 0)):
            t = candidates[i, q] >> tile_bits
            rows[fill[t]] = i
            slots[fill[t]] = q
            fill[t] += 1
    return starts, rows, slots


def _top_of(sims: np.ndarray, k: int) -> np.ndarray:
    """The k largest of each row of ``sims``, descending, as float32 (the −inf padding is never among them; a chunk
    in which every row failed the screen has no candidates at all and gets −inf, replaced by the caller)."""
    width = sims.shape[1]
    if width < k:
        return np.full((len(sims), k), -np.inf, np.float32)
    top = np.partition(sims, width - k, axis=1)[:, width - k :]
    top.sort(axis=1)
    return top[:, ::-1].astype(np.float32)


@njit(parallel=True, cache=True, fastmath=FAST)
def _rerank(
    queries: np.ndarray,
    bank: np.ndarray,
    candidates: np.ndarray,
    counts: np.ndarray,
    tile_bits: int,
) -> np.ndarray:
    """``sims[i, q]``: the exact ``z_i·b_j`` (float64 sums) of row i's q-th candidate; −inf past row i's count, and
    in the whole row where ``counts[i] < 0``. Pairs run bank tile by bank tile, so each bank row is read from memory
    once. (``_top_of`` takes the top k in numpy: numba's ``np.partition`` alone took ~9 s to compile.)"""
    d = queries.shape[1]
    tiles = (bank.shape[0] >> tile_bits) + 1
    starts, rows, slots = _tile_order(candidates, counts, tile_bits, tiles)
    width = 0
    for i in range(len(counts)):
        width = max(width, counts[i])
    sims = np.full((len(counts), width), -np.inf)
    for t in prange(tiles):
        for p in range(starts[t], starts[t + 1]):
            i, q = rows[p], slots[p]
            j = candidates[i, q]
            s = 0.0
            for c in range(d):
                s += np.float64(queries[i, c]) * np.float64(bank[j, c])
            sims[i, q] = s
    return sims
