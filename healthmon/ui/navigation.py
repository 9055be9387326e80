"""The dashboard's pages and who may open each, without Streamlit.

``app.py`` builds the navigation from :data:`PAGES` (a role never sees a page it cannot use),
each page checks its permission again on every run, and the sign-in gate
(:mod:`healthmon.ui.web_auth`) guards the same pages' addresses. A page's address is its title
(Streamlit derives it from the file name, ``pages/3_Case.py`` → ``/Case``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    icon: str
    permission: str


PAGES: dict[str, PageSpec] = {spec.title: spec for spec in (
    PageSpec("pages/1_Notes.py", "Notes", ":material/description:", "notes.predict"),
    PageSpec("pages/2_Review.py", "Review", ":material/fact_check:", "cases.review"),
    PageSpec("pages/3_Case.py", "Case", ":material/article:", "cases.view"),
    PageSpec("pages/4_Vitals.py", "Vitals", ":material/monitor_heart:", "vitals.upload"),
    PageSpec("pages/7_Patient.py", "Patient", ":material/assignment_ind:", "advice.decide"),
    PageSpec("pages/5_Models.py", "Models", ":material/model_training:", "models.view"),
    PageSpec("pages/6_Admin.py", "Admin", ":material/admin_panel_settings:", "users.manage"),
)}
