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
