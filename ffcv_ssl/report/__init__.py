"""The report: every ``results.json`` of a runs folder as the paper's tables and figures (Cole et al., CVPR 2022),
with the paper's numbers beside ours, whether its direction holds, and what is missing or inconsistent.

Modules, in the order data flows: ``collect`` (files -> cells + problems), ``paper`` (the paper's values),
``experiments`` (which cells each experiment uses), ``scope`` (which findings the data can test), ``claims``
(direction checks), ``tables`` and ``figures`` (markdown and matplotlib), ``render`` (report.md);
``self_check`` runs all of it on the paper's own values (``ffcv-ssl report --paper-self-check``).
"""
from .collect import Cell, CellKey, Collection, Problem, ReportError, cell_key, collect
from .paper import PaperBook, load_paper_values
from .render import Report, build_report, render_markdown, report, write_report

__all__ = ["Cell", "CellKey", "Collection", "Problem", "ReportError", "cell_key", "collect", "PaperBook",
           "load_paper_values", "Report", "build_report", "render_markdown", "report", "write_report"]
