"""Reading runs and reporting on them: tables, figures, HTML and Markdown reports.

Reads results, never trains. `load_runs` reads every input format; `analyze_runs` turns
runs into variance audits; `reproduce_paper` recomputes the seed paper's tables.
matplotlib is imported only by the figure code.
"""

import importlib
from typing import Any

# Exports resolve on first use (PEP 562), so that importing one light module of this
# package (`document`, say) does not pay for pandas and statsmodels.
_EXPORTS = {
    "Analysis": "analysis", "DesignAudit": "analysis", "analyze_runs": "analysis",
    "apply_where": "analysis", "parse_where": "analysis",
    "RunLoadError": "runs", "flatten_result": "runs", "load_run_histories": "runs",
    "load_runs": "runs", "load_runs_with_histories": "runs", "read_tidy_csv": "runs",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cffaudit.report.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cffaudit.report' has no attribute {name!r}")


__all__ = [
    "Analysis",
    "DesignAudit",
    "RunLoadError",
    "analyze_runs",
    "apply_where",
    "flatten_result",
    "load_run_histories",
    "load_runs",
    "load_runs_with_histories",
    "parse_where",
    "read_tidy_csv",
]
