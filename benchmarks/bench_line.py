"""LINe: the vectorised scorer (grouped by predicted class) vs a per-sample loop like the official implementation.

Both run on the same arrays: the demo cache (ID test + OOD sets) and a synthetic CIFAR-100-sized head
(10,000 samples, K = 100, D = 512). Prints the ratio (goal ≥ 100×) and the time of one slider move (one new
(p_a, p_w, τ) → scores of every set) on the demo.

Usage: python benchmarks/bench_line.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core.metrics import metrics_table
from ood_core.scores import get_method
from ood_core.scores.line import LINE, line_score
from ood_core.workspace import Workspace, load_workspace


def per_sample_loop(h, weight, bias, phi, p_a, p_w, tau):
    """One sample at a time; masks rebuilt for its predicted class, as the official forward does."""
    out = np.empty(len(h))
    for i, x in enumerate(h):
        x = np.minimum(x, tau)
        c = int(np.argmax(weight @ x + bias))
        act = phi[c] > np.percentile(phi[c], p_a)
        matrix = np.abs(phi[c])[None, :] * weight
        keep = matrix > np.percentile(matrix, p_w)
        out[i] = logsumexp((weight * keep) @ (x * act) + bias)
    return out


def compare(name, h, weight, bias, phi, params):
    start = time.perf_counter()
    fast = line_score(h, weight, bias, phi, *params)
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    slow = per_sample_loop(h, weight, bias, phi, *params)
    loop = time.perf_counter() - start
    assert np.allclose(fast, slow, rtol=1e-9), "vectorised and loop disagree"
    print(
        f"{name}: vectorised {vectorised * 1e3:.1f} ms, per-sample loop {loop * 1e3:.0f} ms "
        f"-> RATIO {loop / vectorised:,.0f}x (goal >= 100x); identical scores"
    )


def main() -> None:
    features = load_workspace(Workspace())
    phi = features.state(LINE).phi
    weight = np.asarray(features.id_test["head/weight"], np.float64)
    bias = np.asarray(features.id_test["head/bias"], np.float64)
    h = np.concatenate(
        [
            np.asarray(f.penultimate, np.float64)
            for f in [features.id_test, *features.ood.values()]
        ]
    )
    params = (90.0, 90.0, 1.0)
    compare(
        f"demo ({len(h)} samples, K={phi.shape[0]}, D={phi.shape[1]})",
        h,
        weight,
        bias,
        phi,
        params,
    )
    rng = np.random.default_rng(0)
    k, d, n = 100, 512, 10_000
    weight, bias = rng.normal(0, 0.1, (k, d)), rng.normal(0, 0.01, k)
    synth_phi = weight * np.maximum(rng.normal(0.5, 0.5, (k, d)), 0)
    synth_h = np.maximum(rng.normal(0.5, 1, (n, d)), 0)
    compare(
        f"synthetic CIFAR-100 head ({n} samples, K={k}, D={d})",
        synth_h,
        weight,
        bias,
        synth_phi,
        params,
    )
    method = get_method("line")
    times = []
    for p in (80.0, 85.0, 90.0, 95.0):
        start = time.perf_counter()
        metrics_table(
            {"LINe": features.scores(method, {"p_a": p, "p_w": p, "tau": 1.0})}
        )
        times.append(time.perf_counter() - start)
    print(
        f"demo slider move (scores of ID test + {len(features.ood)} OOD sets + metrics): "
        f"median {np.median(times) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
