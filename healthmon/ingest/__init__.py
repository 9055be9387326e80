"""Ingest: turn uploaded or pasted input into :class:`~healthmon.types.Note` values."""

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
