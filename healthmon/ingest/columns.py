"""The one column mapper for tables with a header row, shared by notes and device CSVs.

A reader names the roles it needs (note text, patient id, heart rate ...) and, per role, the
header names that mean it (its alias table); :func:`map_columns` finds the column for each.
Columns named explicitly by the caller win and are matched exactly (case and surrounding
whitespace ignored); aliases are matched on :func:`alias_key`, so "Note Text", "note-text"
and "NOTE_TEXT" are one name and "Temp (°F)" is ``temp_f``. :func:`missing_column_error` is
the error for a table that lacks a role it needs: it lists the columns found and says when
the header row looks like the wrong separator or like data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from healthmon.errors import IngestError

__all__ = ["alias_key", "map_columns", "missing_column_error", "show_columns"]

_SEPARATORS = (";", ",", "\t")
# A longer header cell, or one of this many words, is a sentence: the first line is data.
_HEADER_MAX_CHARS = 40
_HEADER_MAX_WORDS = 4


# Degree signs as exports write them: "°" and, from Windows-1252 and Iberian locales, the ordinal "º".
_DEGREE_SIGNS = str.maketrans("", "", "°º")


def alias_key(name: str) -> str:
    """A header as alias tables spell it: case-folded, degree signs dropped, every run of characters
    that are not letters or digits one ``_``, none at either end."""
    return re.sub(r"[\W_]+", "_", name.casefold().translate(_DEGREE_SIGNS)).strip("_")


def _explicit_key(name: str) -> str:
    return name.strip().casefold()


def show_columns(header: Sequence[str]) -> str:
    """The header's names, quoted and shortened, for an error message ("(none)" for no columns)."""
    shown = [h.strip() if len(h.strip()) <= _HEADER_MAX_CHARS else h.strip()[:37] + "..." for h in header]
    return ", ".join(repr(h) for h in shown) or "(none)"


def map_columns(
    header: Sequence[str],
    aliases: Mapping[str, Sequence[str]],
    source: str,
    *,
    explicit: Mapping[str, str | None] | None = None,
    subject: str = "note",
) -> dict[str, int]:
    """Map roles to column indices.

    Explicitly named columns are taken first. Then, role by role in the order of ``aliases``,
    the first alias (in its list's order) that names a column no other role has taken; when
    several columns have that name, the leftmost. A role with no matching column is left out:
    the reader decides which roles it cannot do without.

    Args:
        header: the header row's cells.
        aliases: role -> the :func:`alias_key` names that mean it, best first.
        source: the file's name, for the error.
        explicit: role -> a column name the caller gave (None: find it by alias).
        subject: what the rows are, for the error ("note": "the note text").

    Returns:
        role -> index into ``header``.

    Raises:
        IngestError: an explicitly named column is not in the header; the message lists the
            columns that are.
    """
    mapping: dict[str, int] = {}
    for role, wanted in (explicit or {}).items():
        if wanted is None:
            continue
        key = _explicit_key(wanted)
        matches = [i for i, h in enumerate(header) if _explicit_key(h) == key]
        if not matches:
            raise IngestError(
                f"a column named {wanted!r} for the {subject} {role} (from {role}_column)",
                f"no such column in {source}; its columns are: {show_columns(header)}",
                f"pass one of those names as {role}_column (CLI: --{role}-column), "
                "or fix the header row",
            )
        mapping[role] = matches[0]

    used = set(mapping.values())
    keys = [alias_key(h) for h in header]
    for role, names in aliases.items():
        if role in mapping:
            continue
        for alias in names:
            hit = next((i for i, key in enumerate(keys) if key == alias and i not in used), None)
            if hit is not None:
                mapping[role] = hit
                used.add(hit)
                break
    return mapping


def missing_column_error(
    expected: str, header: Sequence[str], source: str, fix: str, *, delimiter: str | None = None,
    sentence_hint: bool = True,
) -> IngestError:
    """The error for a table without a column it needs, listing the columns it has.

    Args:
        expected: the column wanted, in words ("a time column (timestamp, time ...)").
        header: the header row's cells.
        source: the file's name.
        fix: how to fix it.
        delimiter: the separator the file was split on, where the reader fixed it (a ``.csv`` is
            comma-separated): a one-column header holding another separator gets a hint.
        sentence_hint: say that a long header cell looks like data (a note's first line); off for
            device files, whose headers are often long ("Heart rate (beats per minute)").

    Returns:
        The :class:`IngestError` to raise.
    """
    found = f"columns {show_columns(header)} in {source}"
    hint = ""
    if delimiter is not None and len(header) == 1 and any(s in header[0] for s in _SEPARATORS):
        other = next(s for s in _SEPARATORS if s in header[0])
        hint = (
            f"; the header seems to use {other!r} as separator, but "
            f"{'.csv needs commas' if delimiter == ',' else '.tsv needs tabs'}"
        )
    elif sentence_hint and any(len(h) > _HEADER_MAX_CHARS or len(h.split()) >= _HEADER_MAX_WORDS for h in header):
        hint = "; the first line looks like data, not a header row"
    return IngestError(expected, found + hint, fix)
