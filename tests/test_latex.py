"""The LaTeX tables compile: a report's and a comparison's, in a minimal document with booktabs."""

import shutil
import subprocess

import pytest

from distributed_agent.report import build_report, compare_reports, write_report

pytestmark = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex is not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)",
)


def test_report_and_comparison_tables_compile(tmp_path):
    from test_report import make_experiment

    report = build_report(make_experiment(tmp_path))
    write_report(report, tmp_path / "report")
    compare_reports([report, report], ["first_run", "second_run"], tmp_path / "comparison")
    tables = [tmp_path / "report" / "summary.tex", tmp_path / "report" / "aggregate.tex"]
    tables.append(tmp_path / "comparison" / "comparison.tex")
    for table in tables:
        document = tmp_path / f"{table.parent.name}_{table.stem}.tex"
        document.write_text(
            "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
            + table.read_text()
            + "\n\\end{document}\n"
        )
        result = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{table}: " + result.stdout[-1500:]
        assert document.with_suffix(".pdf").stat().st_size > 1000
