"""Size, power and interval coverage of the tests of equal variances (issue 10, item 1).

Simulates two groups of seeds under four shapes (normal, t with 3 df, lognormal, a
bimodal mixture of two normals), at n = 5, 7, 10, 20, 50 per group and one unequal cell
(5 vs 20), with true variance ratios 1 (size), 2 and 4 (power), and reports for every
test of `cffaudit.stats.equal_variance` the rejection rate at alpha = 0.05, and for every
interval of the ratio (F, Bonett, bootstrap percentile, BCa, basic on the log scale) the
coverage. Each cell has its own generator, derived from the seed and the cell's label,
so a cell's numbers do not depend on which other cells ran.

Every statistic runs vectorised over replicates: scipy's levene, fligner,
permutation_test and bootstrap take `axis`, F is closed form, Bonett is the package's own
vectorised code. The permutation test and the bootstrap share one set of resample indices
across the replicates of a cell (scipy draws them once per batch); each replicate's
p-value or interval is still a valid one, only the Monte Carlo noise is correlated.

Coverage is computed at ratio 1 only: every interval here is scale-equivariant (scaling
group A by k scales its bounds by k^2), so its coverage does not depend on the ratio.

Usage (runs outside CI; about 7 minutes on one core with the defaults):
    python benchmarks/variance_test_size_power.py --out benchmarks/results/variance_test_size_power.md
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
from scipy import stats as st

from cffaudit.stats.bootstrap import comparison_seed
from cffaudit.stats.equal_variance import bonett_log_ratio
from cffaudit.stats.equal_variance import log_variance_ratio as _log_ratio
from cffaudit.stats.simulate import DISTRIBUTIONS, batch_pvalues, draw

DESIGNS = ((5, 5), (7, 7), (10, 10), (20, 20), (50, 50), (5, 20))
RATIOS = (1.0, 2.0, 4.0)
TESTS = ("F", "levene", "brown-forsythe", "fligner-killeen", "bonett", "permutation")
INTERVALS = ("F", "bonett", "percentile", "bca", "basic-log")
ALPHA = 0.05
SIZE_BAND = (0.025, 0.075)


def test_pvalues(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, np.ndarray]:
    """Two-sided p-values of every test for each replicate (row) of x and y."""
    return {name: batch_pvalues(name, x, y, rng=rng, resamples=resamples) for name in TESTS}


def interval_coverage(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, float]:
    """Share of replicates whose 95% interval of the log variance ratio holds 0 (truth: ratio 1)."""
    n1, n2 = x.shape[1], y.shape[1]
    lr = _log_ratio(x, y)
    lo_f = lr - np.log(st.f.isf(0.025, n1 - 1, n2 - 1))
    hi_f = lr - np.log(st.f.ppf(0.025, n1 - 1, n2 - 1))
    _, _, lo_b, hi_b = bonett_log_ratio(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = st.bootstrap((x, y), _log_ratio, vectorized=True, n_resamples=resamples, axis=-1, rng=rng,
                            method="BCa", batch=max(1, 2_000_000 // (x.shape[0] * (n1 + n2))))
    dist = np.asarray(boot.bootstrap_distribution)  # (replicates, resamples)
    # A resample of one repeated value has log ratio +-inf; sorting places it in the tails,
    # which is where it belongs, so quantiles use the 'lower'/'higher' order statistics.
    q_lo = np.quantile(dist, 0.025, axis=-1, method="lower")
    q_hi = np.quantile(dist, 0.975, axis=-1, method="higher")

    def cover(lo: np.ndarray, hi: np.ndarray) -> float:
        return float(np.mean((lo < 0.0) & (0.0 < hi)))  # NaN bounds count as misses

    return {
        "F": cover(lo_f, hi_f),
        "bonett": cover(lo_b, hi_b),
        "percentile": cover(q_lo, q_hi),
        "bca": cover(np.asarray(boot.confidence_interval.low), np.asarray(boot.confidence_interval.high)),
        "basic-log": cover(2 * lr - q_hi, 2 * lr - q_lo),
    }


def run(replicates: int, resamples: int, seed: int, log=print) -> dict:
    """Every cell of the study; returns nested {kind: {cell: {name: value}}}."""
    out: dict = {"size": {}, "power2": {}, "power4": {}, "coverage": {}}
    for dist in DISTRIBUTIONS:
        for n1, n2 in DESIGNS:
            for ratio in RATIOS:
                cell = f"{dist} n={n1}/{n2} ratio={ratio:g}"
                t0 = time.perf_counter()
                rng = np.random.default_rng(comparison_seed(seed, cell))
                x = draw(dist, rng, (replicates, n1)) * math.sqrt(ratio)
                y = draw(dist, rng, (replicates, n2))
                pv = test_pvalues(x, y, rng, resamples)
                key = f"{dist}|{n1}/{n2}"
                kind = {1.0: "size", 2.0: "power2", 4.0: "power4"}[ratio]
                out[kind][key] = {name: float(np.mean(pv[name] < ALPHA)) for name in TESTS}
                if ratio == 1.0:
                    out["coverage"][key] = interval_coverage(x, y, rng, resamples)
                log(f"{cell}: {time.perf_counter() - t0:.1f} s")
    return out


def choose_primary(res: dict) -> tuple[str, str]:
    """The issue's rule: most powerful test whose size stays in SIZE_BAND in every cell;
    if none, the one whose size is closest to 0.05 at the smallest n."""
    lo, hi = SIZE_BAND
    ok = [t for t in TESTS if all(lo <= cell[t] <= hi for cell in res["size"].values())]
    mean_power = {t: float(np.mean([c[t] for k in ("power2", "power4") for c in res[k].values()])) for t in TESTS}
    if ok:
        best = max(ok, key=lambda t: mean_power[t])
        why = (f"size within [{lo}, {hi}] in every cell: {', '.join(ok)}; the most powerful of them "
               f"(mean power over the ratio 2 and 4 cells {mean_power[best]:.3f}) is {best}")
        return best, why
    smallest = [k for k in res["size"] if k.endswith("|5/5")]
    dev = {t: max(abs(res["size"][k][t] - ALPHA) for k in smallest) for t in TESTS}
    best = min(TESTS, key=lambda t: dev[t])
    why = (f"no test kept its size within [{lo}, {hi}] in every cell; at n = 5 per group {best} came "
           f"closest to 0.05 (largest deviation {dev[best]:.3f} over the four shapes)")
    return best, why


def _covers_from(res: dict, method: str) -> int | None:
    """Smallest n per group from which `method` covers >= 0.90 under every shape (equal-n cells)."""
    keys = [k for k in res["coverage"] if len(set(k.split("|")[1].split("/"))) == 1]
    ns = sorted({int(k.split("|")[1].split("/")[0]) for k in keys})
    ok_from = None
    for n in reversed(ns):
        if not all(res["coverage"][k][method] >= 0.90 for k in keys if k.endswith(f"|{n}/{n}")):
            break
        ok_from = n
    return ok_from


def choose_interval(res: dict) -> tuple[str, int | None, str]:
    """The bootstrap interval that covers >= 0.90 under every shape from the smallest n
    (equal groups); ties, or none reaching it, go to the highest worst-case coverage."""
    boot = ("percentile", "bca", "basic-log")
    worst = {m: min(c[m] for c in res["coverage"].values()) for m in boot}
    start = {m: _covers_from(res, m) for m in boot}
    best = min(boot, key=lambda m: (start[m] is None, start[m] or 0, -worst[m]))
    why = ("coverage >= 0.90 under every shape from n = "
           + ", ".join(f"{m} {start[m] if start[m] else 'never'}" for m in boot)
           + "; worst-case coverage over all cells (unequal n included) "
           + ", ".join(f"{m} {worst[m]:.3f}" for m in boot)
           + f"; so {best}, with a warning below {start[best] if start[best] else 'every n'} runs per group")
    return best, start[best], why


def _table(block: dict, columns: tuple[str, ...], digits: int = 3) -> list[str]:
    lines = ["| shape | n (A/B) | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for key, row in block.items():
        dist, n = key.split("|")
        lines.append(f"| {dist} | {n} | " + " | ".join(f"{row[c]:.{digits}f}" for c in columns) + " |")
    return lines


def markdown(res: dict, replicates: int, resamples: int, seed: int, seconds: float) -> str:
    primary, why = choose_primary(res)
    interval, _, interval_why = choose_interval(res)
    mc = math.sqrt(ALPHA * (1 - ALPHA) / replicates)
    lines = [
        "# Size, power and coverage of the tests of equal variances",
        "",
        f"Written by `benchmarks/variance_test_size_power.py --replicates {replicates} --resamples {resamples} "
        f"--seed {seed}`; {replicates} replicates per cell, {resamples} resamples for the permutation test and "
        f"the bootstrap; alpha = {ALPHA}, two-sided; took {seconds / 60:.1f} min "
        f"(Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}).",
        f"Monte Carlo standard error of a rejection rate near 0.05: {mc:.4f}; of a coverage near 0.95: "
        f"{math.sqrt(0.95 * 0.05 / replicates):.4f}.",
        "Shapes are scaled to unit variance; group A is multiplied by sqrt(ratio). In the unequal cell "
        "(5/20) group A has 5 runs.",
        "",
        f"**Default primary test: {primary}.** Rule (issue 10): {why}.",
        "",
        f"**Default bootstrap interval: {interval}.** Rule: the interval that reaches 0.90 coverage under every "
        f"shape at the smallest n (then the best worst case): {interval_why}. "
        "Bonett's interval, not a bootstrap, covers best of all in every shape.",
        "",
        "## Size (rejection rate at ratio 1; should be 0.05)",
        "",
        *_table(res["size"], TESTS),
        "",
        "## Power at variance ratio 2 (nominal level, not size-adjusted)",
        "",
        *_table(res["power2"], TESTS),
        "",
        "## Power at variance ratio 4",
        "",
        *_table(res["power4"], TESTS),
        "",
        "## Coverage of the 95% intervals of the variance ratio",
        "",
        "Computed at ratio 1; every interval is scale-equivariant, so the coverage is the same at any ratio.",
        "",
        *_table(res["coverage"], INTERVALS),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=999)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here (and .json beside it)")
    parser.add_argument("--from-json", type=Path, default=None, help="re-render the tables of an earlier run's .json")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        res = {k: saved[k] for k in ("size", "power2", "power4", "coverage")}
        seconds = float(saved.get("seconds", math.nan))
        print(markdown(res, saved["replicates"], saved["resamples"], saved["seed"], seconds))
        return 0
    print(f"seed {args.seed}, {args.replicates} replicates, {args.resamples} resamples", flush=True)
    t0 = time.perf_counter()
    res = run(args.replicates, args.resamples, args.seed, log=lambda s: print(s, flush=True))
    text = markdown(res, args.replicates, args.resamples, args.seed, time.perf_counter() - t0)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        meta = {"seed": args.seed, "replicates": args.replicates, "resamples": args.resamples, "alpha": ALPHA,
                "seconds": round(time.perf_counter() - t0, 1)}
        args.out.with_suffix(".json").write_text(json.dumps({**meta, **res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
