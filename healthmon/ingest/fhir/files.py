"""FHIR files as resources: a Bundle's entries, NDJSON lines, or one resource, each with where it was read.

The first step of the FHIR reader: bytes become UTF-8 text (the FHIR specification allows no
other encoding), the text becomes ``(where, resource JSON)`` pairs, and lines or files that
hold no FHIR resource are listed or refused with an :class:`~healthmon.errors.IngestError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from healthmon.errors import IngestError
from healthmon.ingest.decode import decode_utf8_only

_EXPECTED = "a FHIR R4 Bundle (JSON) or bulk NDJSON (one resource per line)"
_FIX = "export the data again as a FHIR JSON Bundle or as bulk-data NDJSON"
_UTF8 = "FHIR JSON is always UTF-8"


@dataclass(frozen=True)
class Where:
    """Where a resource was read: ``<source> line N`` (NDJSON) or ``<source> entry N`` (Bundle)."""

    source: str
    kind: str
    number: int

    def __str__(self) -> str:
        return f"{self.source} {self.kind} {self.number}"


def load(data: bytes | str | Path, name: str | None) -> tuple[str, str]:
    """(the file's text, its name): bytes decoded as UTF-8, a path read first."""
    if isinstance(data, Path):
        if not data.is_file():
            raise IngestError("an existing FHIR file", f"no file at {str(data)!r}", "check the path")
        return decode_utf8_only(data.read_bytes(), name or data.name, why=_UTF8, fix=_FIX), name or data.name
    name = name or "fhir.json"
    return (decode_utf8_only(data, name, why=_UTF8, fix=_FIX) if isinstance(data, bytes) else data), name


def resources(text: str, name: str) -> tuple[list[tuple[Where, Any]], list[tuple[Where, str]]]:
    """(where, resource as JSON) for every resource found, and lines that are not resources."""
    if not text.strip():
        raise IngestError(_EXPECTED, f"{name}: an empty file", _FIX)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        return _ndjson(text, name, exc)
    return _one_document(whole, name), []


def _one_document(document: Any, name: str) -> list[tuple[Where, Any]]:
    kind = document.get("resourceType") if isinstance(document, dict) else None
    if kind == "Bundle":
        return _bundle_entries(document, name)
    if kind == "OperationOutcome":  # a server's error answer saved in place of the data
        issues = "; ".join(i.get("diagnostics") or str(i.get("details", {}).get("text", i.get("code")))
                           for i in document.get("issue", []) if isinstance(i, dict))
        raise IngestError(_EXPECTED, f"{name}: an OperationOutcome (the server reported: {issues or 'no details'})",
                          "fix the query or export that produced this file and export again")
    if isinstance(kind, str):
        return [(Where(name, "line", 1), document)]  # one resource on its own
    found = (f"a JSON object without resourceType (keys {', '.join(list(document)[:5]) or 'none'})"
             if isinstance(document, dict) else f"a JSON {type(document).__name__}")
    raise IngestError(_EXPECTED, f"{name}: {found}", _FIX)


def _bundle_entries(bundle: dict, name: str) -> list[tuple[Where, Any]]:
    shell = {key: value for key, value in bundle.items() if key != "entry"}
    try:
        get_fhir_model_class("Bundle").model_validate(shell)
    except ValidationError as exc:
        raise IngestError("a valid FHIR Bundle", f"{name}: {library_message(exc)}", _FIX) from exc
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise IngestError("Bundle.entry as a list", f"{name}: entry is a {type(entries).__name__}", _FIX)
    return [(Where(name, "entry", number), entry.get("resource") if isinstance(entry, dict) else None)
            for number, entry in enumerate(entries, start=1)]


def _ndjson(text: str, name: str, whole: json.JSONDecodeError) -> tuple[list, list]:
    resources, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = Where(name, "line", number)
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((where, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
            resources.append((where, item))
        else:
            bad.append((where, "not a FHIR resource (no resourceType)"))
    if not resources:
        shown = "; ".join(f"{where.kind} {where.number}: {why}" for where, why in bad[:3])
        hint = ""
        # A pretty-printed Bundle with one broken character lands here too: say where it breaks.
        if text.lstrip().startswith("{") and all(why.startswith("not JSON") for _, why in bad):
            hint = f"; read as one JSON document it breaks at line {whole.lineno} column {whole.colno}: {whole.msg}"
        raise IngestError(_EXPECTED, f"{name}: no line is a FHIR resource ({shown}){hint}", _FIX)
    return resources, bad


def library_message(exc: ValidationError) -> str:
    """The library's validation errors, one per field, without pydantic's help links."""
    errors = exc.errors()
    shown = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or exc.title}: {e['msg']}" for e in errors[:3])
    return shown + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
