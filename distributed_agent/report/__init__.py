"""Reports of experiment folders, as a package: reading (one row per trial), stats (over seeds),
bootstrap (its settings, stratified resampling), aggregate (over stages), survival (time to solve),
curves (performance profiles, sample efficiency), tables (Markdown, LaTeX), plots, output (files
and the printed summary), compare (experiments side by side).

    trials, summary = load_report("runs/default")     # in a notebook
"""

from .compare import compare_reports, comparison_tables
from .output import print_summary, write_report
from .reading import Report, build_report, load_report, merge_parts
from .stats import bootstrap_ci, iqm, probability_of_improvement, summarize

__all__ = [
    "Report",
    "bootstrap_ci",
    "build_report",
    "compare_reports",
    "comparison_tables",
    "iqm",
    "load_report",
    "merge_parts",
    "print_summary",
    "probability_of_improvement",
    "summarize",
    "write_report",
]
