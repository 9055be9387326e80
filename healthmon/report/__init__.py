"""The case report (HTML and PDF) and its FHIR export."""

from healthmon.report.build import PatientReport, build_report, render_html, render_pdf, write_report

__all__ = ["PatientReport", "build_report", "render_html", "render_pdf", "write_report"]
