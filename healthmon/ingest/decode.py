"""The one decoder from uploaded bytes to text, shared by notes, device CSVs and the other device readers.

:func:`decode_text` decides the encoding and refuses what is not text, with an
:class:`~healthmon.errors.IngestError` that says what was expected, what was found and how to
fix it; it returns the encoding so a reader's report can say how the file was read.

* UTF-8, with or without BOM (``"utf-8"`` / ``"utf-8-sig"``). UTF-16 and UTF-32 *with* a BOM
  are decoded (``"utf-16"`` / ``"utf-32"``) because Excel's "Unicode Text" export produces
  exactly that. UTF-16 *without* a BOM is refused: guessing its byte order silently is how
  garbled text reaches a model or a chart.
* Bytes that are not UTF-8 fall back to ``"latin-1"`` only when the result looks like
  Western-European text; when the file uses Windows-1252-only characters (curly quotes, en
  dashes, the euro sign in bytes 0x80-0x9F) it is decoded as ``"cp1252"`` instead, because
  latin-1 would turn them into invisible control characters. Mixed UTF-8 and other bytes, and
  other code pages (Cyrillic...), are refused.
* Binary files (PDF, Office, images, archives, NUL bytes, many control bytes) and text that
  decodes to many control characters are refused, naming what the file looks like.

:func:`decode_utf8_only` is for formats whose specification fixes UTF-8 (FHIR JSON).
"""

from __future__ import annotations

import codecs
import re

from healthmon.errors import IngestError

__all__ = ["CONTROL_CHARACTERS", "SAVE_AS_UTF8", "decode_text", "decode_utf8_only", "encoding_note", "line_at"]

#: C0/C1 control characters other than tab, LF, VT, FF and CR. Those five are legitimate in
#: text (VT is FileMaker's line break, FF a page break left by PDF-to-text tools); every
#: other control character is damage.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_CONTROL_BYTES = bytes(range(0x00, 0x09)) + bytes(range(0x0E, 0x20)) + b"\x7f"
_NON_CONTROL_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)
_C1 = re.compile(r"[\x80-\x9f]")

# Above this share of control bytes a file is binary, not text with a few stray bytes.
_BINARY_CONTROL_FRACTION = 0.05
# Above this share of control characters decoded text is mis-encoded or damaged.
_TEXT_CONTROL_FRACTION = 0.01
# Western-European text rarely has more than a few percent accented letters; far more
# means another single-byte code page (Cyrillic, Greek...) that latin-1 would garble.
_LATIN1_MAX_NON_ASCII_LETTERS = 0.3

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

#: The fix for every encoding problem: re-save as UTF-8, with where to click.
SAVE_AS_UTF8 = (
    "re-save the file as UTF-8 (Excel: File > Save As > 'CSV UTF-8'; "
    "Notepad: Save As > Encoding 'UTF-8')"
)


def line_at(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """Decode file bytes to text, refusing binary and mis-encoded input; see the module docstring.

    Args:
        data: the file's raw bytes.
        name: the file's name, quoted in errors.

    Returns:
        (text without BOM, encoding name for the report: ``utf-8``, ``utf-8-sig``, ``utf-16``,
        ``utf-32``, ``cp1252`` or ``latin-1``).

    Raises:
        IngestError: binary data, UTF-16 without BOM, mixed or unknown encodings, damaged text.
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
                    SAVE_AS_UTF8,
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
                SAVE_AS_UTF8,
            )
        raise IngestError(
            "a UTF-8 text/CSV file",
            f"binary data (a NUL byte at offset {nul:,}, line {line_at(data, nul)}) in {name}",
            "upload the file as plain text: export it as .txt or .csv from the program "
            "that made this file",
        )

    control = len(data.translate(None, _NON_CONTROL_BYTES))
    if control > _BINARY_CONTROL_FRACTION * len(data):
        raise IngestError(
            "a UTF-8 text/CSV file",
            f"binary data ({control:,} of {len(data):,} bytes are control characters) "
            f"in {name}",
            "upload the file as plain text: export it as .txt or .csv from the program "
            "that made this file",
        )

    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError as exc:
        text, encoding = _decode_fallback(data, name, exc)
    _check_control_fraction(text, name, encoding)
    return text, encoding


def decode_utf8_only(data: bytes, name: str, *, why: str, fix: str) -> str:
    """UTF-8 (a BOM allowed and dropped) and nothing else, for formats whose specification says so.

    Args:
        data: the file's raw bytes.
        name: the file's name, quoted in the error.
        why: why only UTF-8 will do, for the error's "expected" ("FHIR JSON is always UTF-8").
        fix: how to get a UTF-8 file.

    Raises:
        IngestError: the bytes are not UTF-8.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"UTF-8 text ({why})", f"{name}: byte {exc.start} is not UTF-8", fix) from exc


def encoding_note(encoding: str, text: str) -> str | None:
    """What a report says about how :func:`decode_text` read a file (None: UTF-8, nothing to say).

    Readers whose report has no encoding field (device files) add this sentence to it, so a
    spreadsheet's Windows-1252 export is said, not silently accepted.
    """
    if encoding in ("utf-16", "utf-32"):
        return f"read as {encoding.upper()} text"
    # latin-1 is chosen only when no byte is Windows-1252 punctuation, where the two read the
    # same, or when the bytes are not Windows-1252 at all, and then C1 characters remain.
    if encoding == "cp1252" or (encoding == "latin-1" and not _C1.search(text)):
        return ("not UTF-8: read as Windows-1252 (a spreadsheet's CSV export); check that names and units read "
                "as written")
    if encoding == "latin-1":
        return ("not UTF-8: read as Latin-1 (ISO-8859-1), with bytes that are not Windows-1252 kept as control "
                "characters; check that names and units read as written")
    return None


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
            f"{bad:,} invalid byte sequences (first at line {line_at(data, exc.start)})",
            SAVE_AS_UTF8,
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
            SAVE_AS_UTF8,
        )
    return text, encoding


def _check_control_fraction(text: str, name: str, encoding: str) -> None:
    controls = CONTROL_CHARACTERS.findall(text)
    if len(controls) > _TEXT_CONTROL_FRACTION * len(text):
        first = CONTROL_CHARACTERS.search(text)
        line = text.count("\n", 0, first.start()) + 1 if first else 0
        raise IngestError(
            "readable text",
            f"{len(controls):,} control characters in {len(text):,} characters of {name} "
            f"decoded as {encoding} (first, U+{ord(controls[0]):04X}, on line {line}): the "
            "file is mis-encoded or damaged",
            SAVE_AS_UTF8 + ", or re-export it from the source system",
        )
