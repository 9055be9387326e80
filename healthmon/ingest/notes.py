"""Read clinical notes from pasted text, ``.txt`` files and ``.csv``/``.tsv`` tables.

Everything a user can get wrong (wrong file type, wrong encoding, missing column, bad
rows) ends either in an :class:`~healthmon.errors.IngestError` that says what was expected,
what was found and how to fix it, or in a :class:`~healthmon.types.RejectedRow` recorded in
the report. Nothing is dropped silently.

Choices worth knowing:

* **Encodings.** UTF-8, with or without BOM (``"utf-8"`` / ``"utf-8-sig"``). UTF-16 and
  UTF-32 *with* a BOM are decoded (``"utf-16"`` / ``"utf-32"``) because Excel's "Unicode
  Text" export produces exactly that. UTF-16 *without* a BOM is refused: guessing its byte
  order silently is how garbled notes reach a model. Bytes that are not UTF-8 fall back
  to ``"latin-1"`` only when the result looks like Western-European text; when the file
  uses Windows-1252-only characters (curly quotes, en dashes, the euro sign in bytes
  0x80-0x9F) it is decoded as ``"cp1252"`` instead, because latin-1 would turn them into
  invisible control characters.
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

import codecs
import csv
import hashlib
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

from healthmon.config import Settings
from healthmon.errors import IngestError
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

#: File extensions read_notes_bytes understands, with what each one means.
ACCEPTED_EXTENSIONS: dict[str, str] = {
    ".txt": "one note per file",
    ".csv": "comma-separated table with a header row",
    ".tsv": "tab-separated table with a header row",
}

_PASTED = "pasted"

# Tab, LF, VT, FF and CR are legitimate in notes (VT is FileMaker's line break, FF a page
# break left by PDF-to-text tools); every other C0/C1 control character is damage.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_CONTROL_BYTES = bytes(range(0x00, 0x09)) + bytes(range(0x0E, 0x20)) + b"\x7f"
_NON_CONTROL_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)

# Above this share of control bytes a file is binary, not text with a few stray bytes.
_BINARY_CONTROL_FRACTION = 0.05
# Above this share of control characters decoded text is mis-encoded or damaged.
_TEXT_CONTROL_FRACTION = 0.01
# Western-European text rarely has more than a few percent accented letters; far more
# means another single-byte code page (Cyrillic, Greek...) that latin-1 would garble.
_LATIN1_MAX_NON_ASCII_LETTERS = 0.3
# A note that is this much U+FFFD was already damaged before it reached healthmon.
_MAX_REPLACEMENT_FRACTION = 0.1

# (magic prefix, what it is, how to get text out of it)
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"%PDF", "PDF", "copy the note text into the paste box, or export it as .txt"),
    (
        b"PK\x03\x04",
        "a ZIP archive, e.g. an Excel .xlsx or Word .docx file",
        "in Excel use File > Save As > 'CSV UTF-8'; in Word save as 'Plain Text (.txt)'",
    ),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old Excel .xls or Word .doc file",
        "in Excel use File > Save As > 'CSV UTF-8'; in Word save as 'Plain Text (.txt)'",
    ),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "run OCR on the image first, or paste the text"),
    (b"\xff\xd8\xff", "a JPEG image", "run OCR on the image first, or paste the text"),
    (b"GIF87a", "a GIF image", "run OCR on the image first, or paste the text"),
    (b"GIF89a", "a GIF image", "run OCR on the image first, or paste the text"),
    (b"II*\x00", "a TIFF image", "run OCR on the image first, or paste the text"),
    (b"MM\x00*", "a TIFF image", "run OCR on the image first, or paste the text"),
    (b"\x1f\x8b", "a gzip archive", "decompress it first (e.g. gunzip) and upload the .csv"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "extract it first and upload the .csv"),
    (b"SQLite format 3\x00", "an SQLite database", "export the notes table as CSV"),
    (b"{\\rtf", "an RTF document", "in Word save as 'Plain Text (.txt)'"),
)

_SAVE_AS_UTF8 = (
    "re-save the file as UTF-8 (Excel: File > Save As > 'CSV UTF-8'; "
    "Notepad: Save As > Encoding 'UTF-8')"
)


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
    problem = _text_problem(text)
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
    text, encoding = _decode(data, name)
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


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(data: bytes, name: str) -> tuple[str, str]:
    """Decode file bytes to text, refusing binary and mis-encoded input.

    Returns:
        (text without BOM, encoding name for the report).
    """
    # BOMs first: UTF-16/32 legitimately contain NUL bytes the binary check would trip on.
    for bom, codec, label in (
        (codecs.BOM_UTF32_LE, "utf-32", "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32", "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig", "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16", "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16", "utf-16"),
    ):
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"valid {label.upper()} text (the file starts with a {label.upper()} "
                    "byte-order mark)",
                    f"bytes that are not valid {label.upper()} at byte {exc.start:,} of {name}",
                    _SAVE_AS_UTF8,
                ) from exc
            _check_control_fraction(text, name, label)
            return text, label

    for magic, what, fix in _MAGIC:
        if data.startswith(magic):
            raise IngestError(
                "a UTF-8 text/CSV file",
                f"binary data (looks like {what}) in {name}",
                fix,
            )

    nul = data.find(b"\x00")
    if nul != -1:
        order = _utf16_without_bom(data)
        if order is not None:
            raise IngestError(
                "a UTF-8 text/CSV file",
                f"text that looks like UTF-16-{order} without a byte-order mark in {name}",
                _SAVE_AS_UTF8,
            )
        raise IngestError(
            "a UTF-8 text/CSV file",
            f"binary data (a NUL byte at offset {nul:,}, line {_line_at(data, nul)}) in {name}",
            "upload the notes as plain text: export them as .txt or .csv from the program "
            "that made this file",
        )

    control = len(data.translate(None, _NON_CONTROL_BYTES))
    if control > _BINARY_CONTROL_FRACTION * len(data):
        raise IngestError(
            "a UTF-8 text/CSV file",
            f"binary data ({control:,} of {len(data):,} bytes are control characters) "
            f"in {name}",
            "upload the notes as plain text: export them as .txt or .csv from the program "
            "that made this file",
        )

    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError as exc:
        text, encoding = _decode_fallback(data, name, exc)
    _check_control_fraction(text, name, encoding)
    return text, encoding


def _utf16_without_bom(data: bytes) -> str | None:
    """Return "LE"/"BE" when NUL bytes sit in every other position, as in ASCII-range UTF-16."""
    sample = data[:4096]
    half = len(sample) // 2
    if half < 2:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd >= 0.3 * half and even <= 0.05 * half:
        return "LE"
    if even >= 0.3 * half and odd <= 0.05 * half:
        return "BE"
    return None


def _decode_fallback(data: bytes, name: str, exc: UnicodeDecodeError) -> tuple[str, str]:
    """Decode non-UTF-8 bytes as latin-1/cp1252 when they look like Western text."""
    replaced = data.decode("utf-8", errors="replace")
    valid_non_ascii = sum(1 for ch in replaced if ord(ch) > 0x7F and ch != "\ufffd")
    if valid_non_ascii:
        # Both valid multi-byte UTF-8 and invalid bytes: two files glued together, or an
        # edit in another editor. Any single-codec decode garbles one half.
        bad = replaced.count("\ufffd")
        raise IngestError(
            "a file in one encoding (UTF-8)",
            f"mixed encodings in {name}: {valid_non_ascii:,} valid UTF-8 characters and "
            f"{bad:,} invalid byte sequences (first at line {_line_at(data, exc.start)})",
            _SAVE_AS_UTF8,
        )
    # Bytes 0x80-0x9F are control characters in latin-1 but punctuation in cp1252.
    if any(0x80 <= b <= 0x9F for b in data):
        try:
            text, encoding = data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            text, encoding = data.decode("latin-1"), "latin-1"
    else:
        text, encoding = data.decode("latin-1"), "latin-1"
    letters = [ch for ch in text if ch.isalpha()]
    non_ascii = sum(1 for ch in letters if ord(ch) > 0x7F)
    if len(letters) >= 20 and non_ascii > _LATIN1_MAX_NON_ASCII_LETTERS * len(letters):
        raise IngestError(
            "UTF-8 text (or Western-European latin-1/Windows-1252 text)",
            f"text in {name} that is not UTF-8 and where {non_ascii:,} of {len(letters):,} "
            "letters are non-ASCII, so it is probably another code page (e.g. Cyrillic "
            "Windows-1251) that would be garbled",
            _SAVE_AS_UTF8,
        )
    return text, encoding


def _check_control_fraction(text: str, name: str, encoding: str) -> None:
    controls = _CONTROL_RE.findall(text)
    if len(controls) > _TEXT_CONTROL_FRACTION * len(text):
        first = _CONTROL_RE.search(text)
        line = text.count("\n", 0, first.start()) + 1 if first else 0
        raise IngestError(
            "readable text",
            f"{len(controls):,} control characters in {len(text):,} characters of {name} "
            f"decoded as {encoding} (first, U+{ord(controls[0]):04X}, on line {line}): the "
            "file is mis-encoded or damaged",
            _SAVE_AS_UTF8 + ", or re-export it from the source system",
        )


# ----------------------------------------------------------------------------- note checks


def _text_problem(text: str) -> str | None:
    """Why a note text is unusable, or None. Phrased to follow 'text that ...'."""
    if not text.strip():
        return "is empty" if not text else "is only whitespace"
    match = _CONTROL_RE.search(text)
    if match is not None:
        count = len(_CONTROL_RE.findall(text))
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
    problem = _text_problem(text)
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


def _norm_explicit(name: str) -> str:
    return name.strip().casefold()


def _norm_alias(name: str) -> str:
    # "Note Text", "note-text" and "NOTE_TEXT" all mean note_text.
    return re.sub(r"[\s\-.]+", "_", name.strip().casefold())


def _show_columns(header: Sequence[str]) -> str:
    shown = [h.strip() if len(h.strip()) <= 40 else h.strip()[:37] + "..." for h in header]
    return ", ".join(repr(h) for h in shown)


def _map_columns(
    header: list[str],
    explicit: dict[str, str | None],
    name: str,
    delimiter: str,
) -> dict[str, int]:
    """Map roles (text/id/patient/label) to column indices."""
    mapping: dict[str, int] = {}
    for role, wanted in explicit.items():
        if wanted is None:
            continue
        key = _norm_explicit(wanted)
        matches = [i for i, h in enumerate(header) if _norm_explicit(h) == key]
        if not matches:
            raise IngestError(
                f"a column named {wanted!r} for the note {role} (from {role}_column)",
                f"no such column in {name}; its columns are: {_show_columns(header)}",
                f"pass one of those names as {role}_column (CLI: --{role}-column), "
                "or fix the header row",
            )
        mapping[role] = matches[0]

    used = set(mapping.values())
    tables = {
        "text": TEXT_ALIASES,
        "id": ID_ALIASES,
        "patient": PATIENT_ALIASES,
        "label": LABEL_ALIASES,
    }
    normalized = [_norm_alias(h) for h in header]
    for role, aliases in tables.items():
        if role in mapping:
            continue
        for alias in aliases:
            hit = next(
                (i for i, h in enumerate(normalized) if h == alias and i not in used), None
            )
            if hit is not None:
                mapping[role] = hit
                used.add(hit)
                break

    if "text" not in mapping:
        found = f"columns {_show_columns(header)} in {name}"
        hint = ""
        if len(header) == 1 and (";" in header[0] or "," in header[0] or "\t" in header[0]):
            other = next(s for s in (";", ",", "\t") if s in header[0])
            hint = (
                f"; the header seems to use {other!r} as separator, but "
                f"{'.csv needs commas' if delimiter == ',' else '.tsv needs tabs'}"
            )
        elif any(len(h) > 40 or len(h.split()) >= 4 for h in header):
            hint = "; the first line looks like data, not a header row"
        raise IngestError(
            "a note-text column named one of: " + ", ".join(TEXT_ALIASES),
            found + hint,
            "pass the name of the column that holds the note text as text_column "
            "(CLI: --text-column NAME), or add a header row whose text column is "
            "called 'text'",
        )
    return mapping


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
    mapping = _map_columns(header, explicit, name, delimiter)
    body = records[1:]
    if not body:
        raise IngestError(
            "at least one data row below the header",
            f"only the header row (line {header_line}: {_show_columns(header)}) in {name}",
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
        problem = _text_problem(note_text)
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
