"""The case report (HTML and PDF) and its FHIR export."""

from healthmon.report.render import PatientReport, render_html, render_pdf, write_report

__all__ = ["PatientReport", "render_html", "render_pdf", "write_report"]
