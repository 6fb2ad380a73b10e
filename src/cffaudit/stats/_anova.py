"""ANOVA (method of moments) estimators of variance components on balanced two-factor designs.

Expected mean squares are those of Searle, Casella & McCulloch (1992), *Variance
Components*, chapter 4 (balanced data): for B nested in A with `a` levels of A, `b`
levels of B per level of A and `n` runs per cell,

    E[MS_A] = s2_e + n s2_B + b n s2_A,   E[MS_B(A)] = s2_e + n s2_B,   E[MS_E] = s2_e;

for A and B crossed (a x b cells of n runs),

    E[MS_A] = s2_e + n s2_AB + b n s2_A,  E[MS_B] = s2_e + n s2_AB + a n s2_B,
    E[MS_AB] = s2_e + n s2_AB,            E[MS_E] = s2_e.

With one run per cell (n = 1) the innermost term is the residual (B within A for the
nested design, the interaction for the crossed one). On balanced data the REML estimates
equal these whenever all of them are non-negative (Searle et al. 1992, section 6.7), which
the tests check against statsmodels. Every function takes responses shaped
(..., a, b, n) so that thousands of parametric-bootstrap draws are estimated at once.
"""

from __future__ import annotations

import numpy as np


def component_names(kind: str, replicated: bool) -> tuple[str, ...]:
    """The components a design identifies, by role: 'A', 'B' (B within A when nested),
    'A:B' (crossed with replicates only) and 'residual'."""
    if kind == "nested":
        return ("A", "B", "residual") if replicated else ("A", "B")
    return ("A", "B", "A:B", "residual") if replicated else ("A", "B", "residual")


def moment_estimates(y: np.ndarray, kind: str) -> np.ndarray:
    """Untruncated ANOVA estimates of each component, last axis in `component_names` order.

    Args:
        y: Responses shaped (..., a, b, n) (a levels of A, b of B, n runs per cell).
        kind: 'nested' (B within A) or 'crossed'.

    Returns:
        An array shaped (..., k) for the k components of `component_names(kind, n > 1)`.
    """
    a, b, n = y.shape[-3:]
    cell = y.mean(axis=-1)  # (..., a, b)
    mean_a = cell.mean(axis=-1)  # (..., a)
    grand = mean_a.mean(axis=-1)  # (...)
    ms_a = b * n * ((mean_a - grand[..., None]) ** 2).sum(axis=-1) / (a - 1)
    ms_e = None
    if n > 1:
        ms_e = ((y - cell[..., None]) ** 2).sum(axis=(-3, -2, -1)) / (a * b * (n - 1))
    if kind == "nested":
        ms_b = n * ((cell - mean_a[..., None]) ** 2).sum(axis=(-2, -1)) / (a * (b - 1))
        if ms_e is None:
            return np.stack([(ms_a - ms_b) / b, ms_b], axis=-1)
        return np.stack([(ms_a - ms_b) / (b * n), (ms_b - ms_e) / n, ms_e], axis=-1)
    mean_b = cell.mean(axis=-2)  # (..., b)
    ms_b = a * n * ((mean_b - grand[..., None]) ** 2).sum(axis=-1) / (b - 1)
    inter = cell - mean_a[..., :, None] - mean_b[..., None, :] + grand[..., None, None]
    ms_ab = n * (inter ** 2).sum(axis=(-2, -1)) / ((a - 1) * (b - 1))
    if ms_e is None:
        return np.stack([(ms_a - ms_ab) / b, (ms_b - ms_ab) / a, ms_ab], axis=-1)
    return np.stack([(ms_a - ms_ab) / (b * n), (ms_b - ms_ab) / (a * n), (ms_ab - ms_e) / n, ms_e], axis=-1)


def simulate(
    rng: np.random.Generator,
    draws: int,
    mean: float,
    variances: np.ndarray,
    kind: str,
    codes_a: np.ndarray,
    codes_b: np.ndarray,
) -> np.ndarray:
    """Responses of `draws` replicates of the fitted model on the observed design.

    Args:
        rng: Generator every effect is drawn from.
        draws: Number of simulated data sets.
        mean: The fitted overall mean.
        variances: Component variances in `component_names` order (the last is the
            per-run term: the residual, or B within A when the nested design has one run
            per cell).
        kind: 'nested' or 'crossed'.
        codes_a: Per run, the integer level of A (0..a-1).
        codes_b: Per run, the integer level of B; for 'nested' the integer code of the
            (A, B) cell, so that B effects are drawn anew within each level of A.

    Returns:
        An array shaped (draws, runs).
    """
    sd = np.sqrt(np.maximum(np.asarray(variances, dtype=np.float64), 0.0))
    n_runs = codes_a.size
    y = mean + rng.standard_normal((draws, int(codes_a.max()) + 1))[:, codes_a] * sd[0]
    y += rng.standard_normal((draws, int(codes_b.max()) + 1))[:, codes_b] * sd[1]
    if kind == "crossed" and sd.size == 4:
        cells = codes_a * (int(codes_b.max()) + 1) + codes_b
        y += rng.standard_normal((draws, int(cells.max()) + 1))[:, cells] * sd[2]
    if sd.size > 2:  # a per-run residual distinct from B (a replicated or crossed design)
        y += rng.standard_normal((draws, n_runs)) * sd[-1]
    return y
