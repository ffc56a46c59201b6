"""Markdown and HTML reports with PNG plots (``annealplan report``)."""

from __future__ import annotations

from planner.report.build import Findings, ReportFiles, build_report

__all__ = ["Findings", "ReportFiles", "build_report"]
