"""Markdown tables that stay readable as plain text in a terminal (padded pipe tables),
their number formats, and the paper reproduction (`reproduction_markdown`). The variance
audit's tables are in `audit_tables`."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from cffaudit.report.paper import PaperReproduction, Value, explanation, printed_decimals


def fmt(value: Any, digits: int = 3) -> str:
    """A number with `digits` significant decimals; '—' for None/NaN, '∞' for infinity."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_p(p: Optional[float]) -> str:
    """A p-value: 4 decimals, or '<0.0001'."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def fmt_ci(ci: Optional[Sequence[float]], digits: int = 3) -> str:
    """An interval as [low, high]."""
    if ci is None:
        return "—"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def escape_cell(text: str) -> str:
    """A table cell with its pipes escaped (`|` -> `\\|`), so a label holding one keeps the columns."""
    return text.replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Optional[Sequence[bool]] = None) -> str:
    """A pipe table padded so its columns line up in a monospace terminal.

    Args:
        headers: Column titles.
        rows: Cells; each is converted with `str` and its pipes escaped.
        numeric: Per column, whether to right-align (default: all but the first).
    """
    headers = [escape_cell(str(h)) for h in headers]
    cells = [[escape_cell(str(c)) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = list(numeric) if numeric is not None else [i > 0 for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1)) for w, r in zip(widths, right)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


# ----------------------------------------------------------------------------- the paper

#: The paper's tables in reading order, with their captions (`reproduction_markdown`).
TABLE_TITLES = {
    "3": "Table 3. CIFAR-10 factorial, standard margin: cells",
    "4": "Table 4. CIFAR-10 factorial variance tests (p-values)",
    "5": "Table 5. CIFAR-10 pooled over stability",
    "6": "Table 6. Dose-response: standard vs low margin schedule",
    "7": "Table 7. CAR reduction from the standard to the low schedule (%)",
    "9": "Table 9. Cross-dataset summary",
    "10": "Table 10. CIFAR-100 pooled",
    "11": "Table 11. Mean CAR over layers (%)",
    "13": "Table 13. SVHN (direct only)",
    "14": "Table 14. Fashion-MNIST",
    "15": "Table 15. SVHN difficulty sweep",
    "18": "Table 18. SVHN CAR profile (Appendix B)",
    "23": "Table 23. Shapiro-Wilk normality (Appendix D)",
    "text 5.2.1": "Section 5.2.1 text: pooled CIFAR-10 comparison",
    "text 5.2.2": "Section 5.2.2 text: low-margin probe",
    "text 7.1": "Section 7.1 text: CIFAR-100",
    "text 7.2": "Section 7.2 text: SVHN",
    "text 7.3": "Section 7.3 text: Fashion-MNIST",
}


def format_value(value: Value, reported: Optional[str] = None) -> str:
    """A recomputed value with the printed decimals (+2, to show how far it is), or a range."""
    if value is None:
        return "—"
    d = (printed_decimals(reported.lstrip("<>")) if reported else 4) + 2
    if reported and printed_decimals(reported.lstrip("<>")) == 0 and not isinstance(value, tuple) and float(value).is_integer():
        return str(int(value))  # counts
    if isinstance(value, tuple):
        return f"{value[0]:.{d - 1}f} to {value[1]:.{d - 1}f}"
    if math.isinf(value):
        return "∞"
    return f"{value:.{d}f}"


def reproduction_markdown(rep: PaperReproduction, level: int = 2) -> str:
    """All tables side by side (reported | recomputed | status | alternatives that match)."""
    h = "#" * level
    counts: dict[str, int] = {}
    for v in rep.values:
        counts[v.status] = counts.get(v.status, 0) + 1
    lines = [
        f"{h} The paper's tables, recomputed from its per-seed data",
        "",
        "Each value is recomputed by the method the paper describes and compared with the printed value at the "
        "printed precision. Where it differs, standard alternatives are computed and any that gives the printed "
        f"value is named. Bootstrap: {rep.n_resamples} resamples, seed {rep.seed}.",
        "",
        "Summary: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
    ]
    for table, title in TABLE_TITLES.items():
        vals = rep.table(table)
        if not vals:
            continue
        rows = []
        for v in vals:
            matching = [a.method for a in v.alternatives if a.matches] if v.status == "alternative reproduces" else []
            other = "; ".join(f"{a.method}: {format_value(a.value, v.reported)}" for a in v.alternatives
                              if not a.matches and v.status in ("differs", "alternative reproduces", "not in data"))
            rows.append([v.row, v.column, v.reported or "(illegible)", format_value(v.reproduced, v.reported), v.status,
                         "; ".join(matching) or other or ""])
        lines += ["", f"{h}# {title}", ""]
        lines.append(markdown_table(["row", "column", "reported", "recomputed", "status", "method that gives it / others tried"],
                                    rows, numeric=[False, False, True, True, False, False]))
        if explanation(table):
            lines += ["", f"Finding: {explanation(table)}"]
        notes = sorted({v.note for v in vals if v.note and v.status == "not in data"})
        lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n"
