"""Figures of the report, drawn with matplotlib's object API on the Agg canvas.

`matplotlib.figure.Figure` is used directly (no pyplot), so no global figure state and no
GUI backend is involved; each function returns a Figure and `to_png` renders it.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from cffaudit.stats import variance_ratio_power

_COLORS = {"clamp": "#d1495b", "subtract": "#00798c", "none": "#66a182"}
# Eight colours apart from each other and from the three levels above (five arms of a
# sources design each get their own).
_FALLBACK = ["#edae49", "#30638e", "#8d6a9f", "#3d405b", "#8c564b", "#bcbd22", "#7f7f7f", "#e377c2"]


def color_for(level: str, i: int = 0) -> str:
    """Stable colour of a compared level (clamp red, subtract teal)."""
    return _COLORS.get(str(level), _FALLBACK[i % len(_FALLBACK)])


def _legend(ax, **kwargs) -> None:
    """Draw the legend of `ax` only when an artist has a label: a panel with nothing
    labelled gets no empty legend (and matplotlib no "No artists with labels" warning)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(**kwargs)


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def per_seed_accuracy(
    designs: Sequence[tuple[str, pd.DataFrame]],
    *,
    compare: str = "margin",
    factor: Optional[str] = None,
    response: str = "test_acc",
    seed: int = 0,
) -> Figure:
    """Per-seed accuracies by condition: a box per condition with every seed drawn on top.

    Args:
        designs: (title, runs) per panel; the title names the panel's design as
            'column=value' pairs. Each panel has its own y-axis because datasets differ by
            tens of points.
        compare: Column that colours the conditions.
        factor: Optional second column splitting conditions.
        response: Column plotted.
        seed: Seed of the horizontal jitter, so the figure is reproducible.
    """
    n = max(1, len(designs))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows))
    rng = np.random.default_rng(seed)
    for k, (title, frame) in enumerate(designs):
        ax = fig.add_subplot(rows, cols, k + 1)
        keys = [compare] + ([factor] if factor and factor in frame and frame[factor].notna().any() else [])
        groups = list(frame.groupby(keys, dropna=False, sort=True)[response])
        data = [g.dropna().to_numpy() for _, g in groups]
        labels = ["\n".join(str(x) for x in (key if isinstance(key, tuple) else (key,)) if not pd.isna(x)) for key, _ in groups]
        ax.boxplot(data, widths=0.55, showfliers=False, medianprops={"color": "black"},
                   boxprops={"color": "#777777"}, whiskerprops={"color": "#777777"}, capprops={"color": "#777777"})
        for i, ((key, _), values) in enumerate(zip(groups, data)):
            level = key[0] if isinstance(key, tuple) else key
            x = i + 1 + rng.uniform(-0.13, 0.13, size=values.size)
            ax.scatter(x, values, s=22, color=color_for(level, i), alpha=0.85, zorder=3, edgecolors="white", linewidths=0.5)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_title(textwrap.fill(title, 48), fontsize=9)
        ax.set_ylabel("test accuracy (%)" if k % cols == 0 else "")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Per-seed test accuracy by condition (box: quartiles; dots: seeds)", fontsize=11)
    fig.tight_layout()
    return fig


def paper_car_by_layer(car: pd.DataFrame) -> Figure:
    """CAR (%) by layer for each dataset and margin schedule, from the paper's CAR table."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for i, ((dataset, schedule), g) in enumerate(car.groupby(["dataset", "margin_schedule"], sort=True)):
        g = g.sort_values("layer")
        ax.plot(g.layer, g.car_percent, marker="o", label=f"{dataset}, {schedule} margins",
                color=_FALLBACK[i % len(_FALLBACK)], linestyle="--" if schedule == "low" else "-")
    ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("layer")
    ax.set_ylabel("clamp activation rate (%)")
    ax.set_title("Clamp activation rate by layer (paper data, final stage-1 epoch)", fontsize=10)
    _legend(ax, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _layer_columns(frame: pd.DataFrame, prefix: str) -> list[tuple[int, str]]:
    cols = []
    for c in frame.columns:
        m = re.fullmatch(rf"{prefix}_l(\d+)", c)
        if m and frame[c].notna().any():
            cols.append((int(m.group(1)), c))
    return sorted(cols)


def has_layer_diagnostics(frame: pd.DataFrame) -> bool:
    """Whether runs carry final-epoch per-layer CAR or gradient norms."""
    return bool(_layer_columns(frame, "car") or _layer_columns(frame, "grad_norm"))


def run_layer_profiles(frame: pd.DataFrame, *, compare: str = "margin", factor: Optional[str] = None) -> Figure:
    """Final-epoch CAR and gradient norm by layer, mean ± sd over seeds, one line per condition."""
    fig = Figure(figsize=(11, 4.0))
    keys = [compare] + ([factor] if factor and factor in frame and frame[factor].notna().any() else [])
    for j, (prefix, label, scale) in enumerate((("car", "clamp activation rate (%)", 100.0), ("grad_norm", "gradient norm", 1.0))):
        ax = fig.add_subplot(1, 2, j + 1)
        cols = _layer_columns(frame, prefix)
        for i, (key, g) in enumerate(frame.groupby(keys, dropna=False, sort=True)):
            key = key if isinstance(key, tuple) else (key,)
            if not cols:
                continue
            layers = [k for k, _ in cols]
            vals = g[[c for _, c in cols]].to_numpy(dtype=float) * scale
            mean, sd = np.nanmean(vals, axis=0), np.nanstd(vals, axis=0, ddof=1) if len(g) > 1 else np.zeros(len(cols))
            name = "/".join(str(x) for x in key if not pd.isna(x))
            col = color_for(key[0], i)
            style = "-" if len(key) == 1 or i % 2 == 0 else "--"
            ax.errorbar(layers, mean, yerr=sd, marker="o", capsize=3, label=f"{name} (n={len(g)})", color=col, linestyle=style)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if cols:
            _legend(ax, fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Final stage-1 epoch, by layer (mean ± sd over seeds)", fontsize=11)
    fig.tight_layout()
    return fig


def car_over_epochs(history: pd.DataFrame, *, compare: str = "margin", layers: Optional[Sequence[int]] = None) -> Figure:
    """CAR over stage-1 epochs, one thin line per seed, coloured by condition, a panel per layer.

    Args:
        history: Long records from `load_run_histories` (car as a fraction).
        compare: Column that colours the lines.
        layers: Layers to show (default: the first and the last recorded).
    """
    h = history.dropna(subset=["car"])
    # A result read from a folder may carry no run id: its file tells it apart.
    run = h["run_id"].fillna(h["source"]) if "source" in h.columns else h["run_id"]
    h = h.assign(run=run.astype(str))
    all_layers = sorted(h.layer.unique())
    if layers is None:
        layers = sorted({all_layers[0], all_layers[-1]})
    fig = Figure(figsize=(5.2 * len(layers), 3.8))
    for j, layer in enumerate(layers):
        ax = fig.add_subplot(1, len(layers), j + 1)
        seen = set()
        for i, (_, g) in enumerate(h[h.layer == layer].groupby("run", sort=True)):
            level = str(g[compare].iloc[0])
            g = g.sort_values("epoch")
            ax.plot(g.epoch, g.car * 100, color=color_for(level, i), alpha=0.6, linewidth=1,
                    label=None if level in seen else level)
            seen.add(level)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel("stage-1 epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel("CAR (%)" if j == 0 else "")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=8)
    fig.suptitle("Clamp activation rate over training, one line per seed", fontsize=11)
    fig.tight_layout()
    return fig


def _plain_log_ticks(ax, low: float, high: float) -> None:
    """Tick labels of a log x-axis as plain numbers (2, 0.5), not 2x10^0; the minor ticks
    are labelled too where the axis spans less than two decades."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain if high / low < 100 else NullFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=8)


def forest_plot(entries: Sequence[tuple[str, float, float, float]], *, title: str = "",
                xlabel: str = "variance ratio, log scale; bars: 95% CI") -> Figure:
    """Variance ratio with its CI per design, on a log axis with the line VR = 1.

    Args:
        entries: (label, ratio, ci_low, ci_high); an infinite bound is drawn as an arrow, an
            interval not computed (NaN) as the point alone, its label saying so.
            The label names the comparison with 'column=value' pairs.
        title: Figure title (may span lines: what the entries share).
        xlabel: Axis label, naming the ratio and the interval.
    """
    fig = Figure(figsize=(9.0, 0.55 * len(entries) + 1.4))
    ax = fig.add_subplot(1, 1, 1)
    # 1 (equal variances) always in view
    finite = [1.0] + [v for _, r, lo, hi in entries for v in (r, lo, hi) if v is not None and math.isfinite(v) and v > 0]
    top, bottom = max(finite) * 2, min(finite) / 2
    labels = []
    for i, (label, ratio, lo, hi) in enumerate(entries):
        y = len(entries) - 1 - i
        col = "#d1495b" if ratio > 1 else "#00798c"
        ax.plot([ratio], [y], marker="D", color=col, markersize=7)
        if math.isnan(lo) or math.isnan(hi):  # not computed: a bar would claim (0, inf)
            labels.append(f"{label}: no interval")
            continue
        labels.append(label)
        hi_draw = hi if math.isfinite(hi) else top
        lo_draw = lo if lo > 0 else bottom
        ax.plot([lo_draw, hi_draw], [y, y], color=col, linewidth=2)
        if not math.isfinite(hi):
            ax.annotate("", xy=(top, y), xytext=(top / 1.6, y), arrowprops={"arrowstyle": "->", "color": col})
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlim(bottom, top)
    _plain_log_ticks(ax, bottom, top)
    ax.set_yticks(range(len(entries)), list(reversed(labels)), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title or "Variance ratio per dataset", fontsize=10)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def power_curve(
    ratios: Sequence[float] = (1.5, 2.0, 3.0, 4.0),
    *,
    observed: Sequence[tuple[str, float]] = (),
    max_n: int = 200,
    alpha: float = 0.05,
    target: float = 0.8,
    marks: Sequence[tuple[str, int]] = (),
    note: str = "",
) -> Figure:
    """Power of the two-sided variance-ratio F-test against seeds per group, one curve per ratio.

    Args:
        ratios: Reference variance ratios (solid lines).
        observed: (label, ratio) pairs observed in data (dashed lines); ratios below 1 are
            folded to 1/ratio, which has the same power with equal groups.
        max_n: Largest number of seeds per group on the x axis.
        alpha: Significance level.
        target: Power drawn as a horizontal guide.
        marks: (label, n) vertical guides, e.g. the seeds a study used.
        note: A line under the title, e.g. what the observed ratios' designs share.

    The legend sits below the axes, so that no curve is hidden behind it.
    """
    from matplotlib import colormaps

    fig = Figure(figsize=(8.0, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    ns = np.unique(np.round(np.geomspace(2, max_n, 120)).astype(int))
    curves = [(f"ratio {r:g}", float(r), "-") for r in ratios]
    curves += [(f"{label}: {max(r, 1 / r):.2f}", max(r, 1 / r), "--") for label, r in observed if r > 0 and r != 1]
    cmap = colormaps["viridis"]
    for i, (label, r, style) in enumerate(curves):
        power = [variance_ratio_power(r, int(n), alpha=alpha).power for n in ns]
        ax.plot(ns, power, label=label, linestyle=style, color=cmap(i / max(1, len(curves) - 1) * 0.9))
    ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    for k, (label, n) in enumerate(marks):
        ax.axvline(n, color="black", linestyle="--", linewidth=0.8, alpha=0.7)
        # Above the axes, where no curve runs; stacked, so that close marks do not overlap.
        ax.annotate(label, xy=(n, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 3 + 13 * k),
                    textcoords="offset points", fontsize=9, va="bottom", ha="center")
    ax.set_xscale("log")
    ax.set_xlabel("seeds per group (log scale)")
    ax.set_ylabel("power")
    ax.set_ylim(0, 1)
    title = f"Power of the two-sided F-test of equal variances (alpha {alpha:g})"
    ax.set_title(title + (f"\n{textwrap.fill(note, 100)}" if note else ""), fontsize=10, pad=6 + 13 * len(marks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    # Below the axes, after the layout (which would shrink the axes to fit a wide legend);
    # the saved image grows to hold it (`to_png` crops to every artist).
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.13), ncol=1 if len(curves) > 6 else 2,
              frameon=False)
    return fig
