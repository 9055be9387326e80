"""Read clinical notes from pasted text, ``.txt`` files and ``.csv``/``.tsv`` tables.

Everything a user can get wrong (wrong file type, wrong encoding, missing column, bad
rows) ends either in an :class:`~healthmon.errors.IngestError` that says what was expected,
what was found and how to fix it, or in a :class:`~healthmon.types.RejectedRow` recorded in
the report. Nothing is dropped silently.

Choices worth knowing:

* **Encodings** and binary files are decided by :func:`healthmon.ingest.decode.decode_text`
  (UTF-8 with or without BOM, UTF-16/32 with BOM, a Western-European fallback); the report
  says which encoding was used. **Columns** are found by
  :func:`healthmon.ingest.columns.map_columns`: explicit names first, then the alias tables.
* **Duplicate ids** are rejected (``"duplicate id X (first seen on line N)"``): ids are the
  handle reviewers and the database use, so renaming one behind the user's back would
  attach reviews to the wrong note. This applies to an id column named with ``id_column``.
  An id column found only through :data:`ID_ALIASES` whose values repeat (e.g. a pandas
  ``index`` that restarts, as in the public Symptom2Disease CSV) is not an identifier: it
  is ignored, ids are generated (``"<filename>:<line>"``) and ``report.columns`` has no
  ``"id"`` entry.
* **Labels** are split on ``label_separator`` (default ``"|"``); with the default, ``";"``
  is accepted too because spreadsheet users reach for it. Labels are stripped, empties are
  removed and repeats collapse to one (first order kept). An empty label cell gives
  ``labels=()``.
* **Blank lines** (no characters at all) between CSV records are not records and are not
  counted; a line with only spaces is a record and is rejected like any other bad row.
* **Control characters**: a note containing any C0/C1 control character other than tab,
  newline, carriage return, form feed and vertical tab is rejected with the character
  named, because the text is kept exactly as read and cannot be cleaned silently.
* A file in which **no** row is usable raises :class:`IngestError` listing the first few
  reasons, rather than returning an empty result a page might render as "0 notes".
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path

from healthmon.config import Settings
from healthmon.errors import IngestError
from healthmon.ingest.columns import map_columns, missing_column_error, show_columns
from healthmon.ingest.decode import CONTROL_CHARACTERS, decode_text
from healthmon.types import IngestReport, IngestResult, Note, RejectedRow

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

# Order matters: when several columns match, the alias listed first wins.
TEXT_ALIASES: tuple[str, ...] = (
    "note",
    "notes",
    "text",
    "note_text",
    "description",
    "medical_abstract",
    "abstract",
    "report",
    "content",
    "narrative",
)
ID_ALIASES: tuple[str, ...] = ("id", "note_id", "index", "record_id", "document_id")
PATIENT_ALIASES: tuple[str, ...] = ("patient", "patient_id", "subject_id", "mrn")
LABEL_ALIASES: tuple[str, ...] = (
    "label",
    "labels",
    "diagnosis",
    "condition",
    "condition_label",
    "disease",
    "class",
    "target",
)

# role -> its aliases, for map_columns; the role names are the report's column keys.
_ALIASES: dict[str, tuple[str, ...]] = {
    "text": TEXT_ALIASES,
    "id": ID_ALIASES,
    "patient": PATIENT_ALIASES,
    "label": LABEL_ALIASES,
}

#: File extensions read_notes_bytes understands, with what each one means.
ACCEPTED_EXTENSIONS: dict[str, str] = {
    ".txt": "one note per file",
    ".csv": "comma-separated table with a header row",
    ".tsv": "tab-separated table with a header row",
}

_PASTED = "pasted"

# Above this share of U+FFFD a note was already damaged before it reached healthmon.
_MAX_REPLACEMENT_FRACTION = 0.1


# --------------------------------------------------------------------------- public API


def read_pasted(
    text: str, *, note_id: str | None = None, patient_id: str | None = None
) -> IngestResult:
    """Turn pasted text into one note.

    Args:
        text: the note, kept exactly as given.
        note_id: the caller's id; default ``"pasted:<first 12 hex of sha256(text)>"``, so
            pasting the same note twice gives the same id and different notes differ.
        patient_id: optional patient identifier (stripped; blank means none).

    Returns:
        An :class:`IngestResult` with one note; its report says encoding ``"utf-8"``
        (pasted text is already Unicode, nothing was decoded).

    Raises:
        IngestError: the text is empty, whitespace only, or contains control characters.
    """
    if not isinstance(text, str):
        raise IngestError(
            "pasted note text as a string",
            f"a value of type {type(text).__name__}",
            "pass the text itself (decode bytes first, or use read_notes_bytes for files)",
        )
    if not text.strip():
        raise IngestError(
            "some note text",
            "empty text" if not text else f"only whitespace ({len(text)} characters)",
            "paste the note text into the box before submitting",
        )
    problem = text_problem(text)
    if problem is not None:
        raise IngestError(
            "plain note text",
            f"text that {problem}",
            "remove the characters named above (paste via a plain-text editor such as Notepad) "
            "and try again",
        )
    nid = note_id.strip() if note_id and note_id.strip() else _pasted_id(text)
    pid = patient_id.strip() if patient_id and patient_id.strip() else None
    note = Note(text=text, note_id=nid, patient_id=pid, source=_PASTED, line=0)
    report = IngestReport(source=_PASTED, encoding="utf-8", rows_read=1, rows_accepted=1)
    return IngestResult(notes=(note,), report=report)


def read_notes_bytes(
    data: bytes,
    filename: str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    patient_column: str | None = None,
    label_column: str | None = None,
    label_separator: str = "|",
    max_bytes: int | None = None,
) -> IngestResult:
    """Read notes from the bytes of an uploaded file.

    ``.txt`` is one note (the whole file); ``.csv`` (comma) and ``.tsv`` (tab) are tables
    with a header row and one note per record. Columns named explicitly win (matched
    case-insensitively, surrounding whitespace ignored); otherwise the alias tables
    (:data:`TEXT_ALIASES` ...) are tried.

    Args:
        data: the file's raw bytes.
        filename: the file's name; its extension picks the format and it becomes
            ``Note.source`` and the prefix of generated ids (``"<filename>:<line>"``).
        text_column: column holding the note text.
        id_column: column holding note ids.
        patient_column: column holding patient ids.
        label_column: column holding gold labels.
        label_separator: separator between several labels in one cell; with the default
            ``"|"``, ``";"`` also separates.
        max_bytes: size limit; default ``Settings().max_upload_mb`` MiB.

    Returns:
        The accepted notes and a report (encoding, rows read/accepted, rejected rows with
        line numbers and reasons, column mapping used).

    Raises:
        IngestError: the file cannot be read at all (type, size, encoding, columns, no
            usable rows).
    """
    name = Path(filename).name or filename
    ext = _check_extension(name)
    limit = _resolve_max_bytes(max_bytes)
    _check_size(len(data), limit, name)
    if not label_separator:
        raise IngestError(
            "a non-empty label separator such as '|'",
            "an empty string",
            "pass label_separator='|' (CLI: --label-separator '|')",
        )
    if not data:
        raise IngestError(
            f"a {ext} file with notes in it",
            f"an empty file ({name} is 0 bytes)",
            "check that the right file was chosen and that it was saved before uploading",
        )
    text, encoding = decode_text(data, name)
    if not text.strip():
        raise IngestError(
            f"a {ext} file with notes in it",
            f"only whitespace ({len(data):,} bytes) in {name}",
            "check that the right file was chosen and that it was saved before uploading",
        )
    if ext == ".txt":
        return _read_txt(text, name, encoding)
    return _read_table(
        text,
        name,
        encoding,
        delimiter="," if ext == ".csv" else "\t",
        explicit={
            "text": text_column,
            "id": id_column,
            "patient": patient_column,
            "label": label_column,
        },
        label_separator=label_separator,
    )


def read_notes_file(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    patient_column: str | None = None,
    label_column: str | None = None,
    label_separator: str = "|",
    max_bytes: int | None = None,
) -> IngestResult:
    """Read notes from a file on disk; see :func:`read_notes_bytes` for the arguments.

    Args:
        path: the ``.txt``, ``.csv`` or ``.tsv`` file.

    Returns:
        What :func:`read_notes_bytes` returns for the file's bytes and name.

    Raises:
        IngestError: the file is missing, not a file, unreadable, or unreadable as notes.
    """
    p = Path(path)
    if not p.exists():
        parent = p.parent if str(p.parent) else Path(".")
        raise IngestError(
            "an existing notes file",
            f"no file at {str(p)!r} (looked in {str(parent.resolve())!r})",
            "check the path and file name, or upload the file instead",
        )
    if not p.is_file():
        raise IngestError(
            "a notes file",
            f"{str(p)!r} is a directory or special file",
            "point at the .txt, .csv or .tsv file itself, not the folder",
        )
    # Refuse before reading so an accidental multi-gigabyte file costs nothing.
    _check_extension(p.name)
    limit = _resolve_max_bytes(max_bytes)
    _check_size(p.stat().st_size, limit, p.name)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise IngestError(
            "a readable notes file",
            f"{str(p)!r} could not be read ({exc.strerror or exc})",
            "check the file's permissions, or copy it somewhere readable",
        ) from exc
    return read_notes_bytes(
        data,
        p.name,
        text_column=text_column,
        id_column=id_column,
        patient_column=patient_column,
        label_column=label_column,
        label_separator=label_separator,
        max_bytes=limit,
    )


# ----------------------------------------------------------------------- file-level checks


def _check_extension(name: str) -> str:
    """Return the lower-case extension, or raise naming the accepted ones."""
    ext = Path(name).suffix.lower()
    if ext in ACCEPTED_EXTENSIONS:
        return ext
    accepted = "; ".join(f"{e} ({what})" for e, what in ACCEPTED_EXTENSIONS.items())
    found = f"{name!r} with extension {ext!r}" if ext else f"{name!r} with no extension"
    raise IngestError(
        f"a notes file ending in one of: {accepted}",
        found,
        "save or export the notes as .txt, .csv or .tsv (spreadsheets: 'CSV UTF-8'), "
        "or paste the text instead",
    )


def _resolve_max_bytes(max_bytes: int | None) -> int:
    if max_bytes is None:
        # Read per call so HEALTHMON_MAX_UPLOAD_MB changes apply without a restart.
        return int(Settings().max_upload_mb * 1024 * 1024)
    if max_bytes <= 0:
        raise IngestError(
            "a positive max_bytes",
            f"max_bytes={max_bytes!r}",
            "pass a positive byte count, or leave it out to use HEALTHMON_MAX_UPLOAD_MB",
        )
    return max_bytes


def _fmt_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB ({n:,} bytes)"
    return f"{n:,} bytes"


def _check_size(size: int, limit: int, name: str) -> None:
    if size > limit:
        raise IngestError(
            f"a file of at most {_fmt_size(limit)}",
            f"{name} is {_fmt_size(size)}",
            "split the file into smaller parts, or raise the limit with "
            "HEALTHMON_MAX_UPLOAD_MB",
        )


# ----------------------------------------------------------------------------- note checks


def text_problem(text: str) -> str | None:
    """Why a note text is unusable, or None. Phrased to follow 'text that ...'."""
    if not text.strip():
        return "is empty" if not text else "is only whitespace"
    match = CONTROL_CHARACTERS.search(text)
    if match is not None:
        count = len(CONTROL_CHARACTERS.findall(text))
        return (
            f"contains {count} control character{'s' if count != 1 else ''} "
            f"(first U+{ord(match.group()):04X} at character {match.start() + 1})"
        )
    replacement = text.count("\ufffd")
    if replacement > _MAX_REPLACEMENT_FRACTION * len(text.strip()):
        return f"is damaged ({replacement} of {len(text)} characters are U+FFFD '\ufffd')"
    return None


def _pasted_id(text: str) -> str:
    return f"{_PASTED}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def _split_labels(cell: str, separator: str) -> tuple[str, ...]:
    parts = re.split(r"[|;]", cell) if separator == "|" else cell.split(separator)
    # dict keeps first-seen order while dropping repeats.
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def _read_txt(text: str, name: str, encoding: str) -> IngestResult:
    problem = text_problem(text)
    if problem is not None:
        raise IngestError(
            "a .txt file holding one readable note",
            f"a note in {name} that {problem}",
            "remove the characters named above (open and re-save the file in a plain-text "
            "editor), or paste the text instead",
        )
    note = Note(text=text, note_id=f"{name}:0", source=name, line=0)
    report = IngestReport(source=name, encoding=encoding, rows_read=1, rows_accepted=1)
    return IngestResult(notes=(note,), report=report)


# ----------------------------------------------------------------------------------- tables


# (first line, last line, fields, whether an unclosed quote swallowed following lines)
_Record = tuple[int, int, list[str], bool]


def _parse_records(text: str, name: str, delimiter: str) -> list[_Record]:
    """Split text into CSV records; physically blank lines are not records and are skipped."""
    # newline="" keeps line endings inside quoted fields and splits lines the way csv
    # expects; reading the lines ourselves lets us look at a record's raw text.
    lines = list(io.StringIO(text, newline=""))
    # A single note can legitimately exceed csv's 128 KiB default field limit.
    if len(text) >= csv.field_size_limit():
        csv.field_size_limit(len(text) + 1)
    reader = csv.reader(lines, delimiter=delimiter)
    records: list[_Record] = []
    prev_end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise IngestError(
                f"a well-formed {'CSV' if delimiter == ',' else 'TSV'} file",
                f"a record in {name} that cannot be parsed after line {prev_end} ({exc})",
                "open the file in a spreadsheet program and re-save it as 'CSV UTF-8'",
            ) from exc
        start, end = prev_end + 1, reader.line_num
        prev_end = end
        if not row:  # a physically empty line, not a record
            continue
        records.append((start, end, row, _unclosed_quote(lines[start - 1 : end])))
    return records


def _read_table(
    text: str,
    name: str,
    encoding: str,
    *,
    delimiter: str,
    explicit: dict[str, str | None],
    label_separator: str,
) -> IngestResult:
    records = _parse_records(text, name, delimiter)
    if not records:  # unreachable: whitespace-only files were refused earlier
        raise IngestError("a header row", f"no records in {name}", "add a header row")
    header_line, header_end, raw_header, header_unclosed = records[0]
    if header_unclosed:
        raise IngestError(
            "a one-line header row",
            f"a header in {name} that runs from line {header_line} to line {header_end}, "
            'probably because of an unclosed double quote (")',
            "fix the quotes in the first line of the file",
        )
    header = [h.strip() for h in raw_header]
    mapping = map_columns(header, _ALIASES, name, explicit=explicit)
    if "text" not in mapping:
        raise missing_column_error(
            "a note-text column named one of: " + ", ".join(TEXT_ALIASES),
            header,
            name,
            "pass the name of the column that holds the note text as text_column "
            "(CLI: --text-column NAME), or add a header row whose text column is "
            "called 'text'",
            delimiter=delimiter,
        )
    body = records[1:]
    if not body:
        raise IngestError(
            "at least one data row below the header",
            f"only the header row (line {header_line}: {show_columns(header)}) in {name}",
            "add one note per row below the header, or check that the right file was chosen",
        )
    warnings: list[str] = []
    if "id" in mapping and explicit.get("id") is None and _has_duplicates(
        body, mapping["id"], len(header)
    ):
        # A column found by alias whose values repeat is a row counter (pandas' "index"
        # restarting per chunk, for instance), not an identifier: rejecting every repeat
        # would throw away good notes the user never asked to identify. Generated ids
        # are used instead and the report's column mapping leaves "id" out.
        warnings.append(
            f"column {header[mapping['id']]!r} looked like an id column but has repeated values, "
            "so it was treated as a row counter and ids were generated as <file>:<line>; "
            "pass id_column (CLI: --id-column) to use it as ids and reject repeats"
        )
        del mapping["id"]

    notes: list[Note] = []
    rejected: list[RejectedRow] = []
    seen_ids: dict[str, int] = {}
    for start, end, row, unclosed in body:
        if unclosed:
            rejected.append(
                RejectedRow(
                    start,
                    f"record runs from line {start} to line {end}, probably because of an "
                    'unclosed double quote (")',
                )
            )
            continue
        if len(row) != len(header):
            rejected.append(RejectedRow(start, _field_count_reason(row, header, delimiter)))
            continue
        note_text = row[mapping["text"]]
        problem = text_problem(note_text)
        if problem is not None:
            rejected.append(RejectedRow(start, f"note text {problem}"))
            continue
        nid = (row[mapping["id"]].strip() if "id" in mapping else "") or f"{name}:{start}"
        if nid in seen_ids:
            rejected.append(
                RejectedRow(start, f"duplicate id {nid} (first seen on line {seen_ids[nid]})")
            )
            continue
        seen_ids[nid] = start
        pid = row[mapping["patient"]].strip() if "patient" in mapping else ""
        labels = (
            _split_labels(row[mapping["label"]], label_separator) if "label" in mapping else ()
        )
        notes.append(
            Note(
                text=note_text,
                note_id=nid,
                patient_id=pid or None,
                labels=labels,
                source=name,
                line=start,
            )
        )

    if not notes:
        shown = "; ".join(f"line {r.line}: {r.reason}" for r in rejected[:3])
        more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
        raise IngestError(
            "at least one usable note",
            f"all {len(body)} data rows of {name} rejected ({shown}{more})",
            "fix the rows named above and upload the file again",
        )

    columns = {role: header[index] for role, index in mapping.items()}
    report = IngestReport(
        source=name,
        encoding=encoding,
        rows_read=len(body),
        rows_accepted=len(notes),
        rejected=tuple(rejected),
        columns=columns,
        warnings=tuple(warnings),
    )
    return IngestResult(notes=tuple(notes), report=report)


def _has_duplicates(body: list[_Record], index: int, width: int) -> bool:
    seen: set[str] = set()
    for _, _, row, unclosed in body:
        if unclosed or len(row) != width:
            continue
        value = row[index].strip()
        if value in seen:
            return True
        if value:
            seen.add(value)
    return False


def _unclosed_quote(raw_lines: list[str]) -> bool:
    """True when a record spans several lines and holds an odd number of quotes.

    Properly quoted fields always contribute an even number of ``"`` (opening, closing,
    doubled escapes), so an odd count over several lines means one quote was never closed
    and the following lines were swallowed into this record.
    """
    return len(raw_lines) > 1 and "".join(raw_lines).count('"') % 2 == 1


def _field_count_reason(row: list[str], header: list[str], delimiter: str) -> str:
    reason = f"has {len(row)} field{'s' if len(row) != 1 else ''}, the header has {len(header)}"
    sep = "comma" if delimiter == "," else "tab"
    if not any(cell.strip() for cell in row):
        return reason + " (a line with only spaces?)"
    if len(row) > len(header):
        return reason + f" (a value containing a {sep} without double quotes around it?)"
    return reason + f" (missing values, or the wrong separator: expected a {sep})"
