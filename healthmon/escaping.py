"""Markdown escaping for untrusted text, shared by the pages (Streamlit renders markdown) and
the FHIR export (FHIR R4's ``Annotation.text`` is markdown)."""

from __future__ import annotations

import re

# "=" too: a line of them under text makes it a heading (setext), as "-" does.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def escape_markdown(text: str) -> str:
    """``text`` as markdown that renders literally: ``[x](http://...)`` or ``![](...)`` in a
    header, a note or a clinician's reason never becomes a link or a remote image."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


# What a spreadsheet reads as the start of a formula (OWASP's CSV injection list), and the
# apostrophe itself, so the guard can always be undone by dropping one leading apostrophe.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(text: str) -> str:
    """``text`` for a CSV cell that Excel, LibreOffice or Google Sheets shows as text, never runs.

    A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
    ``'`` (``=HYPERLINK(...)`` in a note becomes ``'=HYPERLINK(...)``); so does one already
    starting with ``'``, which keeps the change reversible: a cell that starts with ``'`` had
    exactly one added.
    """
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
