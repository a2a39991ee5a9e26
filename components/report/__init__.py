"""The per-run HTML report and its figures."""

from components.report.data import ReportData
from components.report.page import write_report

__all__ = ["ReportData", "write_report"]
