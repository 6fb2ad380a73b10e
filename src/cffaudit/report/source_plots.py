"""Figures of the "Sources of variance" section (matplotlib object API, Agg canvas, as
`report.plots`): component shares, the test-set floor, per-seed CAR against accuracy
and the spread of the probes within each encoder."""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cffaudit.report.plots import color_for
from cffaudit.report.source_columns import probe_list
from cffaudit.stats import Decomposition, SamplingFloor

# Component roles in stacking order, each with its colour (the residual last, grey).
_ROLE_COLORS = {"A": "#30638e", "B": "#edae49", "A:B": "#8d6a9f", "residual": "#b8b8b8"}



def _crossed(label: str) -> str:
    """A condition label for a tick: an arm's crossed sources as 'a × b', so it wraps between them."""
    return str(label).replace("*", " × ")

def component_shares(decomposition: Decomposition) -> Figure:
    """Stacked bars of each component's share of the total variance, one bar per condition."""
    frame = decomposition.to_frame()
    conditions = list(dict.fromkeys(frame["condition"]))
    fig = Figure(figsize=(max(5.0, 1.3 * len(conditions) + 3.2), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(conditions))
    bottom = np.zeros(len(conditions))
    for role, color in _ROLE_COLORS.items():
        part = frame[frame["role"] == role].set_index("condition").reindex(conditions)
        if part["share"].isna().all():
            continue
        shares = 100 * part["share"].fillna(0.0).to_numpy()
        name = part["component"].dropna().iloc[0]
        ax.bar(x, shares, bottom=bottom, color=color, width=0.6, label=name, edgecolor="white")
        for xi, (b, s) in enumerate(zip(bottom, shares)):
            if s >= 6:
                ax.text(xi, b + s / 2, f"{s:.0f}%", ha="center", va="center", fontsize=9)
        bottom += shares
    ax.set_xticks(x, [textwrap.fill(_crossed(c) or "all runs", 16) for c in conditions], fontsize=9)
    ax.set_ylim(0, 100)
    ax.set_ylabel("share of the total variance (%)")
    ax.set_title(f"Variance components of {decomposition.response}, design '{decomposition.spec}' (REML)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def floor_against_observed(floors: Sequence[SamplingFloor]) -> Figure:
    """Per condition, the observed between-run variance beside the test-set floor, with their intervals."""
    fig = Figure(figsize=(max(5.0, 1.5 * len(floors) + 2.5), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(floors))
    for offset, attr, color, name in ((-0.18, "observed", "#30638e", "observed between-run variance"),
                                      (0.18, "floor", "#b8b8b8", "test-set sampling floor")):
        est = np.array([getattr(f, attr).estimate for f in floors])
        low = np.array([getattr(f, attr).confidence_interval.low for f in floors])
        high = np.array([getattr(f, attr).confidence_interval.high for f in floors])
        ax.bar(x + offset, est, width=0.34, color=color, label=name)
        ax.errorbar(x + offset, est, yerr=[np.clip(est - low, 0, None), np.clip(high - est, 0, None)], fmt="none",
                    ecolor="black", capsize=3, linewidth=1)
    ax.set_xticks(x, [textwrap.fill(f"{_crossed(f.label) or 'all runs'} (n={f.n_runs})", 18) for f in floors], fontsize=9)
    ax.set_ylabel("variance of test accuracy (percent²)")
    ax.set_title("Observed variance against the test-set floor (bars: 95% bootstrap CI over runs)", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def car_against_accuracy(runs: pd.DataFrame, *, compare: str = "margin") -> Figure:
    """Per seed, layer-0 CAR (final stage-1 epoch; mean over epochs) against test accuracy, coloured by condition."""
    panels = [c for c in ("car_l0_final", "car_l0_mean") if c in runs.columns and runs[c].notna().any()]
    fig = Figure(figsize=(4.6 * len(panels), 3.8))
    titles = {"car_l0_final": "layer-0 CAR, final stage-1 epoch", "car_l0_mean": "layer-0 CAR, mean over stage-1 epochs"}
    for k, col in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for i, (cond, g) in enumerate(runs.groupby("condition", sort=True)):
            level = g[compare].iloc[0] if compare in g.columns else cond
            ax.scatter(100 * g[col], g["test_acc"], s=26, color=color_for(level, i), alpha=0.85,
                       edgecolors="white", linewidths=0.5, label=cond or "all runs")
        ax.set_xlabel(f"{titles[col]} (%)")
        ax.set_ylabel("test accuracy (%)" if k == 0 else "")
        ax.grid(alpha=0.3)
        if k == len(panels) - 1:
            ax.legend(fontsize=8, frameon=False, loc="best")
    fig.suptitle("Per-seed layer-0 clamp activation rate against test accuracy", fontsize=11)
    fig.tight_layout()
    return fig


def _probe_lists(runs: pd.DataFrame) -> list[tuple[str, list[float]]]:
    out = []
    for cond, value in zip(runs["condition"], runs["probe_test_accs"]):
        values = probe_list(value)
        if values is not None and len(values) > 1:
            out.append((cond, values))
    return out


def has_probe_spread(runs: pd.DataFrame) -> bool:
    """Whether some run records several probe accuracies."""
    return "probe_test_accs" in runs.columns and bool(_probe_lists(runs))


def probe_spread(runs: pd.DataFrame, *, compare: str = "margin") -> Figure:
    """Probe accuracies of each encoder (one column per run, sorted by its mean within its condition)."""
    items = _probe_lists(runs)
    conditions = sorted({c for c, _ in items})
    fig = Figure(figsize=(min(14.0, max(5.0, 0.25 * len(items) + 3.0)), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    x0 = 0
    for i, cond in enumerate(conditions):
        values = sorted((v for c, v in items if c == cond), key=lambda v: float(np.mean(v)))
        level = cond.split("/")[-1]
        color = color_for(level, i)
        for j, v in enumerate(values):
            ax.vlines(x0 + j, min(v), max(v), color=color, linewidth=2, alpha=0.7)
            ax.scatter([x0 + j] * len(v), v, s=12, color=color, zorder=3)
        # The condition names each group above the axes (no legend to cover the dots).
        ax.text(x0 + (len(values) - 1) / 2, 1.01, textwrap.fill(_crossed(cond) or "all runs", 22),
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8, color=color)
        x0 += len(values) + 2
    ax.set_xticks([])
    ax.set_xlabel("encoders (runs), sorted by their mean probe accuracy within each condition")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Probe spread within encoders (dots: probes of one encoder; line: their range)", fontsize=10, pad=16)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
