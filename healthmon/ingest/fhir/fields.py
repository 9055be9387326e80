"""Values out of validated FHIR resources: codings, numbers with units and bounds, times, patients, text.

Small readers shared by every resource handler of :mod:`healthmon.ingest.fhir.reader`, each
returning plain Python values (or None where the resource does not say).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pandas as pd

from healthmon.ingest.fhir.codes import LOINC
from healthmon.ingest.notes import text_problem

_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([^/]+)")


def code_and_display(concept: Any, system: str | None) -> tuple[str | None, str | None]:
    """(code, display) of the coding in ``system`` (any system when None), else (None, text)."""
    codings = (concept.coding or []) if concept is not None else []
    chosen = next((c for c in codings if system is None or c.system == system), None)
    text = concept.text if concept is not None else None
    return (chosen.code, chosen.display or text) if chosen is not None else (None, text)


def bound_text(comparator: str, value: float, unit: str) -> str:
    return f"{comparator}{value:g} {unit or '(no unit)'} is a bound, not a reading"


def numbers(obs: Any) -> Iterator[tuple[str | None, str | None, float, str, str | None]]:
    """(LOINC code, display, value, unit, comparator) for the Observation's own value and each
    component's; the comparator ("<", "<=", ">=", ">") is None for a plain value."""
    for part in [obs, *(obs.component or [])]:
        value, unit, comparator = _number(part)
        if value is not None:
            code, display = code_and_display(part.code, LOINC)
            yield code, display, value, unit, comparator


def _number(part: Any) -> tuple[float | None, str, str | None]:
    quantity = part.valueQuantity
    if quantity is not None and quantity.value is not None:
        # "ad" (sufficient to achieve) is a dose statement, not a bound on a measurement.
        comparator = quantity.comparator if quantity.comparator in ("<", "<=", ">=", ">") else None
        return float(quantity.value), (quantity.code or quantity.unit or "").strip(), comparator
    if part.valueInteger is not None:
        return float(part.valueInteger), "", None
    return None, "", None


def as_utc(value: Any) -> pd.Timestamp | None:
    """A FHIR date, dateTime or instant (partial ones such as ``2020-05`` included) in UTC."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        return None
    # A dateTime without a zone is the sender's local time; UTC is the least wrong guess.
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def patient_reference(reference: Any) -> str | None:
    ref = reference.reference if reference is not None else None
    if not ref:
        return None
    match = _PATIENT_REFERENCE.search(ref)
    if match:
        return match.group(1)
    return ref.removeprefix("urn:uuid:") if ref.startswith("urn:uuid:") else None


def attachment_text(attachment: Any) -> tuple[str, str | None]:
    """The attachment's text, or why there is none (the library has already decoded base64)."""
    content_type = attachment.contentType or ""
    mime, _, parameters = content_type.partition(";")
    if mime.strip().lower() != "text/plain":
        return "", f"content type {content_type or '(none)'!r} is not text/plain"
    if attachment.data is None:
        return "", f"no inline data{f' (only a url {attachment.url!r})' if attachment.url else ''}"
    charset = re.search(r"charset\s*=\s*\"?([\w.-]+)", parameters, re.IGNORECASE)
    encoding = charset.group(1) if charset else "utf-8"
    try:
        text = attachment.data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return "", f"data is not {encoding} text"
    if not text.strip():
        return "", "empty text"
    problem = text_problem(text)  # the checks every note gets, however it arrived
    return (text, None) if problem is None else ("", f"text that {problem}")
