"""Markdown and HTML reports with PNG plots (``annealplan report``)."""

from __future__ import annotations

from planner.report.build import ReportFiles, build_report

__all__ = ["ReportFiles", "build_report"]
