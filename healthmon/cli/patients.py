"""Patient commands: score device files, the advice rules and decisions, the case report."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from healthmon.cli.common import add_spo2_scale, advice_rules, duration, iso_date, open_database
from healthmon.config import Settings
from healthmon.errors import HealthmonError, IngestError
from healthmon.services.database import Database, connect_existing

# Commands import torch-backed modules (the services over models and explanations) when they
# run, not when the CLI loads: `--help` and the light commands stay fast.


def add_parsers(sub: argparse._SubParsersAction) -> None:
    vitals = sub.add_parser("vitals", help="device files (generic CSV, PhysioNet, Fitbit, FHIR; a folder = its files): "
                            "NEWS2, blood-pressure category, alerts and the classifier's summary, one JSON line per patient")
    vitals.add_argument("paths", nargs="+")
    vitals.add_argument("--patient", action="append", default=[], help="only these patients (repeatable)")
    vitals.add_argument("--setting", choices=["hospital", "home"],
                        help="default, per patient: hospital where the readings chart consciousness or air/oxygen, "
                             "else home")
    add_spo2_scale(vitals)
    vitals.add_argument("--lookback", default="4h", type=duration,
                        help="how old a parameter's latest value may be for NEWS2 (e.g. 1h, 4h, 90min)")
    vitals.add_argument("--patient-id", help="the patient of a CSV without a patient column (needed to --store it)")
    vitals.add_argument("--date-order", choices=["day/month", "month/day"], default=None,
                        help="how to read a CSV's dates such as 03/04/2026 where the file does not show it "
                             "(default day/month, reported as ambiguous)")
    vitals.add_argument("--cuffless-bp", action="store_true",
                        help="BP from a cuffless wearable: trend only, never staged (stored as such with --store)")
    vitals.add_argument("--store", action="store_true", help="also store the readings in the database")

    advice = sub.add_parser("advice", help="one patient's findings and the advice rules they fire (JSON); "
                            "optionally store drafts, set demographics, approve, edit or dismiss advice")
    advice.add_argument("--patient", required=True, help="patient id (as in the notes' patient_id or the vitals)")
    advice.add_argument("--setting", choices=["hospital", "home"],
                        help="NEWS2 setting and blood-pressure thresholds (default: hospital where the stored "
                             "readings chart consciousness or air/oxygen, else home)")
    add_spo2_scale(advice)
    advice.add_argument("--birth-date", type=iso_date, help="record the birth date (YYYY-MM-DD) for the age-based rules")
    advice.add_argument("--sex", choices=["female", "male"], help="record the sex for the sex-based rules")
    advice.add_argument("--record-spo2-scale", type=int, choices=[1, 2],
                        help="record the patient's NEWS2 SpO2 scale for every later score (2: a prescribed 88-92%% "
                             "target, needs --reason; 1: withdraw it)")
    advice.add_argument("--reason", default="", help="why scale 2 applies (with --record-spo2-scale)")
    advice.add_argument("--draft", action="store_true", help="store a draft for each fired rule not already on file")
    advice.add_argument("--approve", type=int, action="append", default=[], metavar="ID", help="approve advice ID as drafted")
    advice.add_argument("--edit", nargs=2, action="append", default=[], metavar=("ID", "TEXT"),
                        help="approve advice ID with your own wording")
    advice.add_argument("--dismiss", nargs=2, action="append", default=[], metavar=("ID", "REASON"),
                        help="dismiss advice ID, saying why")
    advice.add_argument("--as", dest="actor", help="the clinician or admin deciding (an active account's name); "
                        "required for --draft, --approve, --edit and --dismiss")

    report = sub.add_parser("report", help="one patient's case report: .html or .pdf, or a FHIR R4 Bundle (.json)")
    report.add_argument("--patient", required=True)
    report.add_argument("--out", required=True, help="file to write; its suffix picks the format (.html, .pdf, .json)")
    report.add_argument("--setting", choices=["hospital", "home"],
                        help="default: hospital where the stored readings chart consciousness or air/oxygen, "
                             "else home")
    add_spo2_scale(report)
    report.add_argument("--by", default=None, help="name printed as the report's author (default: your login name)")
    report.add_argument("--no-explain", action="store_true",
                        help="only show explanations already stored (default: compute missing ones with the model "
                             "version that scored each note, and store them)")


def _records_for_vitals(settings: Settings, *, store: bool) -> tuple[Database | None, str]:
    """(session factory or None, why the record could not be read or ""), for the recorded
    SpO2 scales. Scoring files must work without a database: a SQLite file that does not
    exist yet holds no record and is not created, and an unreachable database is said in
    each line's basis (and on stderr) rather than stopping the scores. Storing needs it."""
    try:
        return (open_database(settings) if store else connect_existing(settings)), ""
    except HealthmonError as exc:
        if store:
            raise
        print(f"  the recorded SpO2 scales could not be read: {exc}", file=sys.stderr)
        return None, "no record read (database unavailable); scored on the scale given or 1"


def _cmd_vitals(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.ingest.devices import read_device_paths
    from healthmon.services.vitals import store_vitals
    from healthmon.services.vitals_scores import score_readings
    from healthmon.vitals.assess import mark_cuffless

    data = read_device_paths(args.paths, patient_id=args.patient_id, date_order=args.date_order)
    if args.cuffless_bp:  # marked on each reading, so stored estimates stay trend-only when read again
        data = replace(data, frame=mark_cuffless(data.frame))
    if args.store and data.needs_patient_id:
        raise IngestError("a patient for every reading before storing", "a CSV without a patient column",
                          "pass --patient-id ID (or add a patient column)")
    if args.store and data.ambiguous_dates and args.date_order is None:
        # A stored date is part of the reading: guessing it would file readings a month apart.
        raise IngestError("a date order before storing dates such as 03/04/2026", "dates that fit either order",
                          "pass --date-order day/month or --date-order month/day")
    for line in data.summary:
        print(f"  {line}", file=sys.stderr)
    for where, why in data.rejected[:20]:
        print(f"  rejected {where}: {why}", file=sys.stderr)
    for where, parameter, why in data.flagged[:20]:
        print(f"  artefact {where} {parameter}: {why}", file=sys.stderr)
    for kind, count in (("rejected", len(data.rejected)), ("flagged", len(data.flagged))):
        if count > 20:
            print(f"  ... and {count - 20} more {kind}", file=sys.stderr)
    factory, unreadable = _records_for_vitals(settings, store=args.store)
    if args.store:
        stored = store_vitals(factory, "cli", data.frame, source=", ".join(map(str, args.paths)),
                              fmt=data.fmt, report=data.report)
        print(f"  stored {stored.stored} new reading(s); {stored.duplicates} already stored; {stored.unreadable} "
              "unreadable value(s) kept in the upload's report only", file=sys.stderr)
    # The same shaping as the API's /vitals:score (without its per-time-point detail).
    for line in score_readings(factory, "cli", data, patients=args.patient, setting=args.setting,
                               spo2_scale=args.spo2_scale, lookback=args.lookback, detail=False,
                               no_record=unreadable):
        print(json.dumps(line, default=str))
    return 0


def _cmd_advice(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.services.advice import AdviceCommand, apply_advice_command, patient_advice

    factory = open_database(settings)
    deciding = (args.draft or args.approve or args.edit or args.dismiss or args.birth_date or args.sex
                or args.record_spo2_scale)
    if deciding and not args.actor:
        raise IngestError("--as NAME (an active clinician or admin) to record demographics or an SpO2 scale, or to "
                          "draft or decide advice", "no --as", "add --as with your account name")
    if args.reason and not args.record_spo2_scale:
        raise IngestError("--reason together with --record-spo2-scale", "--reason alone",
                          "add --record-spo2-scale 2 (or 1)")
    if args.draft and args.record_spo2_scale and args.spo2_scale not in (None, args.record_spo2_scale):
        raise IngestError("--spo2-scale equal to --record-spo2-scale when drafting (drafts are scored on the scale "
                          "on record)", f"--record-spo2-scale {args.record_spo2_scale} --spo2-scale {args.spo2_scale}",
                          "leave out --spo2-scale")

    def parse_id(text: str) -> int:
        if not str(text).isdigit():
            raise IngestError("an advice id (a whole number) after --edit or --dismiss", repr(text),
                              "give the id first, then the text: --edit 12 \"new wording\"")
        return int(text)

    decisions = ([(i, "approved", None, "") for i in args.approve] + [(parse_id(i), "edited", t, "") for i, t in args.edit]
                 + [(parse_id(i), "dismissed", None, why) for i, why in args.dismiss])
    repeated = sorted(i for i, times in Counter(d[0] for d in decisions).items() if times > 1)
    if repeated:
        raise IngestError("each advice id in one decision (--approve, --edit or --dismiss)",
                          f"id {', '.join(map(str, repeated))} more than once", "decide each advice once")
    command = AdviceCommand(args.patient, args.actor, args.birth_date, args.sex, args.record_spo2_scale, args.reason,
                            args.draft, tuple(decisions), args.setting, args.spo2_scale)
    snapshot, result, set_aside = apply_advice_command(factory, command, advice_rules(settings))
    if set_aside:  # said once the command has committed
        print(f"set aside {len(set_aside)} pending draft(s) fired by a NEWS2 on the other SpO2 scale "
              f"(ids {', '.join(map(str, set_aside))})"
              + ("" if args.draft else f"; add --draft to draft on scale {args.record_spo2_scale}"), file=sys.stderr)
    facts = {k: v for k, v in vars(snapshot.findings).items() if v not in (None, {}, "") and k != "patient_id"}
    facts["risk"] = {label: round(p, 4) for label, p in facts.get("risk", {}).items()}
    print(json.dumps({
        "patient": args.patient, "setting": snapshot.setting if snapshot.vitals is not None else None,
        "spo2_scale": snapshot.spo2_scale_sentence or None,
        "spo2_scale_on_record": snapshot.spo2_prescription.words if snapshot.spo2_prescription else None,
        "facts": facts,
        "fired": [{"rule": a.rule.id, "title": a.rule.title, "urgency": a.rule.urgency, "follow_up": a.rule.follow_up,
                   "fired_by": [t["text"] for t in a.trigger_dicts()], "source": a.rule.source} for a in result.advice],
        "not_checked": {rule: list(facts_) for rule, facts_ in result.unknown.items()},
        "stored": [{"id": i.id, "rule": i.rule_id, "status": i.status, "decided_by": i.decided_by,
                    "decided_at": i.decided_at, "text": i.text, "note": i.decision_note or None} for i in patient_advice(factory, args.patient)],
    }, indent=2, default=str))
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf", ".json"):
        raise IngestError("--out ending in .html, .pdf or .json (FHIR)", out.name, "rename the output file")
    from healthmon.model.classifier import Classifier
    from healthmon.services.reports import report_document

    factory = open_database(settings)

    def load(folder: str) -> Classifier:
        return Classifier.from_pretrained(folder, settings=settings)

    # The same document as the API's /patients/{id}/report.
    fmt = {".json": "fhir", ".pdf": "pdf"}.get(suffix, "html")
    document = report_document(factory, getpass.getuser(), args.patient, fmt,
                               generated_by=args.by or f"{getpass.getuser()} (cli)", rules_path=settings.advice_rules,
                               load_classifier=None if args.no_explain else load,
                               setting=args.setting, spo2_scale=args.spo2_scale)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(document.content)
    except OSError as exc:
        raise IngestError("a writable path for --out", f"{out}: {exc.strerror}", "choose a file in a writable folder") from exc
    print(json.dumps({"patient": args.patient, "wrote": str(out), "bytes": out.stat().st_size}))
    return 0


COMMANDS = {"vitals": _cmd_vitals, "advice": _cmd_advice, "report": _cmd_report}
