"""Reading runs and reporting on them: tables, figures, HTML and Markdown reports.

Reads results, never trains. `load_runs` reads every input format; `analyze_runs` turns
runs into variance audits; `reproduce_paper` recomputes the seed paper's tables.
matplotlib is imported only by the figure code.
"""

from cffaudit.report.analysis import Analysis, DesignAudit, analyze_runs, apply_where, parse_where
from cffaudit.report.runs import RunLoadError, flatten_result, load_run_histories, load_runs, read_tidy_csv

__all__ = [
    "Analysis",
    "DesignAudit",
    "RunLoadError",
    "analyze_runs",
    "apply_where",
    "flatten_result",
    "load_run_histories",
    "load_runs",
    "parse_where",
    "read_tidy_csv",
]
