"""The per-run HTML report and its figures."""

from components.report.data import ReportData
from components.report.fonts import use_figure_fonts
from components.report.page import write_report

use_figure_fonts()  # before any figure: text takes its fonts when it is created

__all__ = ["ReportData", "write_report"]
