"""Notes ingest: pasted text, .txt, .csv and .tsv files, and every way they can be wrong."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest

from healthmon.errors import IngestError
from healthmon.ingest import (
    ID_ALIASES,
    LABEL_ALIASES,
    PATIENT_ALIASES,
    TEXT_ALIASES,
    read_notes_bytes,
    read_notes_file,
    read_pasted,
)
from healthmon.types import IngestResult, RejectedRow


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def ingest_error(path: Path, **kwargs: object) -> IngestError:
    """Read a file that must fail; check the message has all three parts, return the error."""
    with pytest.raises(IngestError) as info:
        read_notes_file(path, **kwargs)  # type: ignore[arg-type]
    err = info.value
    message = str(err)
    assert message.startswith("Expected ")
    assert "; found " in message and ". Fix: " in message
    assert err.expected and err.found and err.fix
    return err


# ------------------------------------------------------------------------------ pasted text


def test_pasted_text_is_one_note_kept_exactly() -> None:
    text = "  Pt c/o chest pain.\n\nBP 150/95.  "
    result = read_pasted(text, patient_id=" p-7 ")
    assert isinstance(result, IngestResult)
    (note,) = result.notes
    assert note.text == text
    assert note.source == "pasted" and note.line == 0
    assert note.patient_id == "p-7"
    assert note.note_id.startswith("pasted:")
    assert read_pasted(text).notes[0].note_id == note.note_id  # deterministic
    assert read_pasted("other note").notes[0].note_id != note.note_id
    assert result.report.rows_read == result.report.rows_accepted == 1
    assert read_pasted("x", note_id="n1").notes[0].note_id == "n1"


@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_pasted_empty_text_is_an_error(text: str) -> None:
    with pytest.raises(IngestError) as info:
        read_pasted(text)
    assert "note text" in info.value.expected
    assert ("empty" in info.value.found) or ("whitespace" in info.value.found)
    assert "paste" in info.value.fix


def test_pasted_control_characters_are_an_error() -> None:
    with pytest.raises(IngestError) as info:
        read_pasted("fever\x1b[31m and cough")
    assert "U+001B" in info.value.found


# ---------------------------------------------------------------------------------- .txt


def test_txt_file_is_one_note(tmp_path: Path) -> None:
    text = "Line one.\nLine two, with a comma.\n"
    result = read_notes_file(write(tmp_path, "visit.txt", text))
    (note,) = result.notes
    assert note.text == text
    assert note.source == "visit.txt" and note.line == 0
    assert note.note_id == "visit.txt:0"
    assert result.report.encoding == "utf-8"
    assert result.report.rows_read == 1 and result.report.rows_rejected == 0


def test_bytes_and_file_agree(tmp_path: Path) -> None:
    data = b"note\nhello\n"
    from_file = read_notes_file(write(tmp_path, "a.csv", data))
    assert read_notes_bytes(data, "a.csv") == from_file


# ------------------------------------------------------------------------- CSV / TSV columns


def test_csv_aliases_note_and_diagnosis(tmp_path: Path) -> None:
    path = write(tmp_path, "n.csv", "Note ,Diagnosis,MRN\nfever and cough,flu,123\nrash,,124\n")
    result = read_notes_file(path)
    assert result.report.columns == {"text": "Note", "patient": "MRN", "label": "Diagnosis"}
    first, second = result.notes
    assert (first.text, first.labels, first.patient_id) == ("fever and cough", ("flu",), "123")
    # An empty label cell is an unlabelled note, not a bad row.
    assert second.labels == () and result.report.rows_rejected == 0
    assert (first.line, second.line) == (2, 3)
    assert (first.note_id, second.note_id) == ("n.csv:2", "n.csv:3")


def test_csv_alias_description(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "record_id,description,condition\nr1,thirsty,diabetes\n")
    result = read_notes_file(path)
    assert result.report.columns == {"text": "description", "id": "record_id", "label": "condition"}
    assert result.notes[0].note_id == "r1"


def test_alias_tables_are_exported() -> None:
    assert "medical_abstract" in TEXT_ALIASES and "note" in TEXT_ALIASES
    assert "subject_id" in PATIENT_ALIASES and "index" in ID_ALIASES
    assert "diagnosis" in LABEL_ALIASES


def test_tsv_with_commas_inside_text(tmp_path: Path) -> None:
    path = write(tmp_path, "n.tsv", "id\ttext\tlabel\na1\tcough, fever, chills\tflu\n")
    result = read_notes_file(path)
    assert result.notes[0].text == "cough, fever, chills"
    assert result.notes[0].note_id == "a1" and result.notes[0].labels == ("flu",)


def test_explicit_columns_win_over_aliases(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "e.csv",
        "text,Body ,Who,Dx,Key\nignored,used body,p1,asthma,k1\n",
    )
    result = read_notes_file(
        path, text_column="body", patient_column="WHO", label_column=" dx ", id_column="key"
    )
    note = result.notes[0]
    assert (note.text, note.patient_id, note.labels, note.note_id) == (
        "used body",
        "p1",
        ("asthma",),
        "k1",
    )
    assert result.report.columns == {"text": "Body", "id": "Key", "patient": "Who", "label": "Dx"}


def test_multi_label_cell(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.csv",
        'text,labels\nthirst,"diabetes|hypertension"\nx, diabetes ; obesity ;\ny,a|a||b\n',
    )
    labels = [n.labels for n in read_notes_file(path).notes]
    assert labels == [("diabetes", "hypertension"), ("diabetes", "obesity"), ("a", "b")]


def test_custom_label_separator_does_not_split_on_semicolon(tmp_path: Path) -> None:
    path = write(tmp_path, "m.csv", "text,labels\nx,a/b;c\n")
    assert read_notes_file(path, label_separator="/").notes[0].labels == ("a", "b;c")


# ------------------------------------------------------------------------------ encodings


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "b.csv", codecs.BOM_UTF8 + "text,label\nnausée,gi\n".encode())
    result = read_notes_file(path)
    assert result.report.encoding == "utf-8-sig"
    assert result.report.columns["text"] == "text"  # no "\ufefftext"
    assert result.notes[0].text == "nausée"


def test_latin1_fallback_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "text,label\ncafé au lait spots,nf1\n".encode("latin-1"))
    result = read_notes_file(path)
    assert result.report.encoding == "latin-1"
    assert result.notes[0].text == "café au lait spots"


def test_cp1252_punctuation_is_decoded_as_cp1252(tmp_path: Path) -> None:
    path = write(tmp_path, "w.txt", "“quoted” – dash".encode("cp1252"))
    result = read_notes_file(path)
    assert result.report.encoding == "cp1252"
    assert result.notes[0].text == "“quoted” – dash"


def test_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path, "u.tsv", "text\tlabel\nœdème\tchf\n".encode("utf-16"))
    result = read_notes_file(path)
    assert result.report.encoding == "utf-16"
    assert result.notes[0].text == "œdème"


# ---------------------------------------------------------------------- rows and line numbers


def test_multiline_quoted_field_keeps_line_numbers(tmp_path: Path) -> None:
    content = 'id,text\n1,"first line\nsecond line\r\nthird line"\n2,after\n\n3,after blank\n'
    result = read_notes_file(write(tmp_path, "ml.csv", content))
    first, second, third = result.notes
    assert first.text == "first line\nsecond line\r\nthird line"
    assert [n.line for n in result.notes] == [2, 5, 7]
    assert (second.text, third.text) == ("after", "after blank")
    assert result.report.rows_read == 3  # the blank line is not a record


def test_rejected_rows_are_counted_with_lines_and_reasons(tmp_path: Path) -> None:
    content = (
        "id,text,label\n"
        "1,good note,flu\n"  # line 2
        "2,,flu\n"  # line 3: empty text
        "3,   ,flu\n"  # line 4: whitespace text
        "4,too,many,fields\n"  # line 5
        "5\n"  # line 6: too few
        "6,bell\x07ringing,flu\n"  # line 7: control character
        "1,same id again,flu\n"  # line 8: duplicate id
        "7,another good one,\n"  # line 9
    )
    # Named explicitly, so a repeated id is a bad row (found by alias it would be ignored).
    result = read_notes_file(write(tmp_path, "r.csv", content), id_column="id")
    report = result.report
    assert [n.note_id for n in result.notes] == ["1", "7"]
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (8, 2, 6)
    lines = {r.line: r.reason for r in report.rejected}
    assert set(lines) == {3, 4, 5, 6, 7, 8}
    assert "empty" in lines[3]
    assert "whitespace" in lines[4]
    assert "4 fields, the header has 3" in lines[5]
    assert "1 field, the header has 3" in lines[6]
    assert "U+0007" in lines[7]
    assert lines[8] == "duplicate id 1 (first seen on line 2)"
    assert all(isinstance(r, RejectedRow) for r in report.rejected)


def test_unclosed_quote_is_rejected_not_merged(tmp_path: Path) -> None:
    content = 'text,label\ngood,a\n"never closed,b\nswallowed,c\n'
    result = read_notes_file(write(tmp_path, "q.csv", content))
    assert [n.text for n in result.notes] == ["good"]
    (rejected,) = result.report.rejected
    assert rejected.line == 3
    assert "unclosed double quote" in rejected.reason and "line 4" in rejected.reason


def test_repeating_alias_id_column_is_ignored(tmp_path: Path) -> None:
    # Like the public Symptom2Disease CSV, whose pandas "index" restarts.
    content = "index,text\n0,a\n1,b\n0,c\n"
    result = read_notes_file(write(tmp_path, "s.csv", content))
    assert [n.note_id for n in result.notes] == ["s.csv:2", "s.csv:3", "s.csv:4"]
    assert "id" not in result.report.columns and result.report.rows_rejected == 0
    # The user is told why, and how to use the column as ids after all.
    assert len(result.report.warnings) == 1
    assert "'index'" in result.report.warnings[0] and "--id-column" in result.report.warnings[0]


def test_all_rows_rejected_is_an_error(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "bad.csv", "text,label\n,a\n  ,b\n"))
    assert "all 2 data rows" in err.found
    assert "line 2" in err.found and "line 3" in err.found


# ------------------------------------------------------------------------------ bad input


def test_empty_file(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "empty.csv", b""))
    assert "0 bytes" in err.found and "empty.csv" in err.found


def test_whitespace_only_file(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "blank.txt", " \n\n\t"))
    assert "whitespace" in err.found


def test_header_only_csv(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "h.csv", "id,text,label\n\n"))
    assert "data row" in err.expected
    assert "only the header" in err.found and "'text'" in err.found and "'label'" in err.found


def test_png_is_binary(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "scan.txt", b"\x89PNG\r\n\x1a\n" + bytes(64)))
    assert err.expected == "a UTF-8 text/CSV file"
    assert "binary data" in err.found and "PNG" in err.found
    assert "OCR" in err.fix


def test_pdf_is_binary(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "notes.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"))
    assert "looks like PDF" in err.found
    assert ".txt" in err.fix


def test_xlsx_renamed_to_csv(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "sheet.csv", b"PK\x03\x04" + b"\x14\x00" * 20))
    assert "xlsx" in err.found and "CSV UTF-8" in err.fix


def test_nul_bytes_are_binary(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "blob.csv", b"text\nabc\x00\x01\x02\x03def\n"))
    assert "binary data" in err.found and "NUL byte at offset 8" in err.found


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    blob = bytes(b for b in random.Random(0).randbytes(4000) if b != 0)  # no NUL shortcut
    err = ingest_error(write(tmp_path, "r.txt", blob))
    assert "binary data" in err.found and "control characters" in err.found


def test_utf16_without_bom_is_refused(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "u.csv", "text,label\nfever,flu\n".encode("utf-16-le")))
    assert "UTF-16-LE without a byte-order mark" in err.found
    assert "UTF-8" in err.fix


def test_text_with_many_control_characters_is_mis_encoded(tmp_path: Path) -> None:
    data = ("normal words here " * 20 + "\x1b\x1c\x1d\x1e" * 3 + "\n").encode()
    err = ingest_error(write(tmp_path, "c.txt", data))
    assert "12 control characters" in err.found and "mis-encoded" in err.found


def test_mixed_utf8_and_latin1_is_refused(tmp_path: Path) -> None:
    data = "text\nnausée\n".encode() + "fièvre\n".encode("latin-1")
    err = ingest_error(write(tmp_path, "mix.csv", data))
    assert "mixed encodings" in err.found and "line 3" in err.found


def test_other_code_page_is_not_garbled_as_latin1(tmp_path: Path) -> None:
    data = "Пациент жалуется на головную боль".encode("cp1251")
    err = ingest_error(write(tmp_path, "ru.txt", data))
    assert "code page" in err.found


def test_missing_text_column_lists_found_columns(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "x.csv", "id,body,dx\n1,fever,flu\n"))
    assert "'id', 'body', 'dx'" in err.found
    assert "note" in err.expected and "medical_abstract" in err.expected
    assert "text_column" in err.fix and "--text-column" in err.fix


def test_semicolon_separated_csv_gets_a_hint(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "eu.csv", "note;diagnosis\nfever;flu\n"))
    assert "';' as separator" in err.found


def test_explicit_missing_column_lists_available(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "text,label\nfever,flu\n")
    err = ingest_error(path, label_column="diagnosis")
    assert "'diagnosis'" in err.expected
    assert "'text', 'label'" in err.found
    assert "label_column" in err.fix


def test_too_large_file(tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", "text\n" + "x" * 200 + "\n")
    err = ingest_error(path, max_bytes=100)
    assert "100 bytes" in err.expected and "206 bytes" in err.found
    assert "HEALTHMON_MAX_UPLOAD_MB" in err.fix
    with pytest.raises(IngestError, match="206 bytes"):
        read_notes_bytes(path.read_bytes(), "big.csv", max_bytes=100)


def test_default_limit_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHMON_MAX_UPLOAD_MB", "0.001")  # 1,048 bytes
    err = ingest_error(write(tmp_path, "big.txt", "y" * 2000))
    assert "1,048 bytes" in err.expected and "2,000 bytes" in err.found


def test_unknown_extension(tmp_path: Path) -> None:
    err = ingest_error(write(tmp_path, "notes.docx", "hello"))
    assert ".txt" in err.expected and ".csv" in err.expected and ".tsv" in err.expected
    assert "'.docx'" in err.found


def test_missing_file(tmp_path: Path) -> None:
    err = ingest_error(tmp_path / "nope.csv")
    assert "nope.csv" in err.found and "no file" in err.found
    assert "path" in err.fix
