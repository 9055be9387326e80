"""What several command groups share: note-file arguments and reading, argument types, the database."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from healthmon.config import Settings
from healthmon.services.database import Database, connect
from healthmon.types import IngestResult

# pandas and the readers behind it load when a command runs, not when the CLI does: `--help`
# and the light commands stay quick.


def add_columns(parser: argparse.ArgumentParser, *, labels: bool) -> None:
    parser.add_argument("--data", required=True, help="notes file: .csv, .tsv or .txt")
    parser.add_argument("--text-column", help="column holding the note text (default: found by alias)")
    parser.add_argument("--id-column", help="column holding note ids")
    if labels:
        parser.add_argument("--label-column", help="column holding the label(s) (default: found by alias)")
        parser.add_argument("--label-separator", default="|", help="separator between labels in one cell")


def add_spo2_scale(parser: argparse.ArgumentParser) -> None:
    # One scale for the score, the chart and the advice: the same reading scores 0 or 3 between them.
    parser.add_argument("--spo2-scale", type=int, choices=[1, 2], default=None,
                        help="NEWS2 SpO2 scale for this run: 2 only for a prescribed 88-92%% target (e.g. "
                             "hypercapnic failure); default: the scale recorded for the patient "
                             "(advice --record-spo2-scale), or 1 where none was")


def read_notes(args: argparse.Namespace, settings: Settings, *, labels: bool) -> IngestResult:
    """The notes file named by --data, with what was read and rejected said on stderr."""
    from healthmon.ingest.notes import read_notes_file

    result = read_notes_file(
        args.data,
        text_column=args.text_column,
        id_column=args.id_column,
        label_column=getattr(args, "label_column", None) if labels else None,
        label_separator=getattr(args, "label_separator", "|"),
        max_bytes=int(settings.max_upload_mb * 2**20),
    )
    report = result.report
    print(
        f"read {report.rows_read} rows from {report.source} ({report.encoding}): "
        f"{report.rows_accepted} accepted, {report.rows_rejected} rejected; columns {report.columns}",
        file=sys.stderr,
    )
    for warning in report.warnings:
        print(f"  note: {warning}", file=sys.stderr)
    for row in report.rejected[:20]:
        print(f"  rejected line {row.line}: {row.reason}", file=sys.stderr)
    if report.rows_rejected > 20:
        print(f"  ... and {report.rows_rejected - 20} more rejected rows", file=sys.stderr)
    return result


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Headline figures for the one JSON line (full metrics live in card.json)."""
    def slim(block: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in block.items() if k not in {"reliability", "confusion_matrix"}}

    out = dict(metrics)
    for key in ("test", "validation", "before_finetune"):
        if isinstance(out.get(key), dict):
            out[key] = slim(out[key])
    if isinstance(out.get("head_init", {}).get("test"), dict):
        out["head_init"] = {**out["head_init"], "test": slim(out["head_init"]["test"])}
    return out


def iso_date(text: str) -> date:
    """argparse type: a date as YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, found {text!r}") from None


def duration(text: str) -> str:
    """argparse type: a positive pandas duration with a unit; a bare number would be read as nanoseconds."""
    import pandas as pd

    try:
        ok = not text.strip().replace(".", "", 1).isdigit() and pd.Timedelta(text) > pd.Timedelta(0)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected a positive duration with a unit such as 4h or 90min, found "
                                         f"{text!r}; add the unit")
    return text


def open_database(settings: Settings) -> Database:
    """The settings' database, migrated to the newest schema."""
    return connect(settings)


def advice_rules(settings: Settings) -> tuple:
    """The advice rules of HEALTHMON_ADVICE_RULES (the bundled table by default), validated."""
    from healthmon.advice.rules import load_rules

    return load_rules(settings.advice_rules)
