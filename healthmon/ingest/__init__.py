"""Ingest: turn uploaded or pasted input into notes and vitals tables.

Notes (pasted text, ``.txt``, ``.csv``/``.tsv``) are the public face here; device files are
read by :mod:`healthmon.ingest.devices` (generic CSV, Fitbit, PhysioNet, FHIR). Every reader
decodes bytes with :mod:`healthmon.ingest.decode` and maps header rows with
:mod:`healthmon.ingest.columns`.
"""

from __future__ import annotations

from healthmon.ingest.notes import (
    ACCEPTED_EXTENSIONS,
    ID_ALIASES,
    LABEL_ALIASES,
    PATIENT_ALIASES,
    TEXT_ALIASES,
    read_notes_bytes,
    read_notes_file,
    read_pasted,
)

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "ID_ALIASES",
    "LABEL_ALIASES",
    "PATIENT_ALIASES",
    "TEXT_ALIASES",
    "read_notes_bytes",
    "read_notes_file",
    "read_pasted",
]
