"""The per-run HTML report and its figures."""

from components.report.report import ReportData, write_report

__all__ = ["ReportData", "write_report"]
