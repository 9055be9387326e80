"""Command line: the same library calls the dashboard makes, headless.

Exit codes: 0 success, 2 bad input or settings (one line on stderr saying what to fix),
1 an unexpected error (traceback kept, it is a bug).
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import asdict, replace
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from healthmon.config import Settings
from healthmon.errors import HealthmonError, IngestError
from healthmon.storage.models import ROLES

EXIT_BAD_INPUT = 2


def _add_columns(parser: argparse.ArgumentParser, *, labels: bool) -> None:
    parser.add_argument("--data", required=True, help="notes file: .csv, .tsv or .txt")
    parser.add_argument("--text-column", help="column holding the note text (default: found by alias)")
    parser.add_argument("--id-column", help="column holding note ids")
    if labels:
        parser.add_argument("--label-column", help="column holding the label(s) (default: found by alias)")
        parser.add_argument("--label-separator", default="|", help="separator between labels in one cell")


def _add_spo2_scale(parser: argparse.ArgumentParser) -> None:
    # One scale for the score, the chart and the advice: the same reading scores 0 or 3 between them.
    parser.add_argument("--spo2-scale", type=int, choices=[1, 2], default=None,
                        help="NEWS2 SpO2 scale for this run: 2 only for a prescribed 88-92%% target (e.g. "
                             "hypercapnic failure); default: the scale recorded for the patient "
                             "(advice --record-spo2-scale), or 1 where none was")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m healthmon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune a model version on labelled notes")
    _add_columns(train, labels=True)
    train.add_argument("--out", help="version folder to create (default: a new folder under the models folder)")
    train.add_argument("--multi-label", action="store_true", help="notes may carry several labels (sigmoid + BCE)")
    train.add_argument("--mode", choices=["full", "lora", "head"], default="lora")
    train.add_argument("--epochs", type=float, default=None,
                       help="epoch budget (default: 10,000 training examples' worth, 3-15 epochs)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default by mode: full 1e-4, lora 1e-3, head 2e-3)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--dropout", type=float, default=None)
    train.add_argument("--warmup-ratio", type=float, default=0.06)
    train.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs (0 = off)")
    train.add_argument("--select-by", choices=["macro_f1", "loss"], default="macro_f1",
                       help="validation figure that picks the best epoch; loss for a rare outcome")
    train.add_argument("--head-init", choices=["random", "probe"], default="random",
                       help="probe: fit the head as a logistic regression on the frozen encoder first (LP-FT)")
    train.add_argument("--pooling", choices=["cls", "mean"], default=None,
                       help="what the head reads: BERT's pooled [CLS] vector or the mean of the tokens; default for "
                            "a new model: the base's own (mean for the bundled all-MiniLM, a sentence encoder "
                            "trained with mean pooling; cls otherwise); continuing a version keeps its pooling")
    train.add_argument("--max-length", type=int, default=None)
    train.add_argument("--max-steps", type=int, default=-1)
    train.add_argument("--lora-r", type=int, default=16)
    train.add_argument("--lora-alpha", type=int, default=32)
    train.add_argument("--lora-dropout", type=float, default=0.1)
    train.add_argument("--lora-targets", default="query,key,value,dense", help="comma-separated module names")
    train.add_argument("--val-fraction", type=float, default=0.1)
    train.add_argument("--test-fraction", type=float, default=0.2)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--no-progress", action="store_true")

    evaluate = sub.add_parser("evaluate", help="score a version on a labelled file")
    evaluate.add_argument("--model", required=True, help="version folder")
    _add_columns(evaluate, labels=True)

    predict = sub.add_parser("predict", help="write calibrated risk per note to a CSV")
    predict.add_argument("--model", required=True, help="version folder")
    _add_columns(predict, labels=False)
    predict.add_argument("--out", help="CSV to write")
    predict.add_argument("--store", action="store_true",
                         help="also store the notes and scores in the database as cases (the dashboard's Case and "
                              "Patient pages show them); the version is registered if new")
    predict.add_argument("--actor", default="cli", help="name recorded in the audit log with --store")
    predict.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default=None)

    explain = sub.add_parser("explain", help="word-level integrated-gradients explanations as HTML or JSON Lines")
    explain.add_argument("--model", required=True, help="version folder")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one note, given inline")
    source.add_argument("--data", help="notes file: .csv, .tsv or .txt")
    explain.add_argument("--text-column", help="column holding the note text (default: found by alias)")
    explain.add_argument("--id-column", help="column holding note ids")
    explain.add_argument("--out", required=True, help="file to write: .html (one page) or .jsonl (one line per explanation)")
    explain.add_argument("--target", help="label to explain (default: the predicted label; every predicted label "
                         "for multi-label models)")
    explain.add_argument("--tolerance", type=float, default=0.05, help="accepted |delta|, probability units")
    explain.add_argument("--max-steps", type=int, default=64, help="Gauss-Legendre step cap")
    explain.add_argument("--baseline", choices=["pad", "mask"], default="pad")
    explain.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                         help="numeric path of the integration (auto: bf16 where the hardware has it)")
    explain.add_argument("--no-faithfulness", action="store_true", help="skip the comprehensiveness/sufficiency check")
    explain.add_argument("--baseline-sensitivity", action="store_true", help="also explain with the other baseline")

    retrain = sub.add_parser("retrain", help="continual fine-tune from reviewed cases, promoted only if nothing is forgotten")
    retrain.add_argument("--from", dest="parent", help="version folder to continue from (default: the active one)")
    retrain.add_argument("--replay", type=int, default=None,
                         help="earlier training notes mixed in (default: as many as reviewed cases, at least 200; 0 = none)")
    retrain.add_argument("--margin", type=float, default=0.01, help="largest regression-set accuracy drop allowed")
    retrain.add_argument("--holdout", type=float, default=0.2, help="share of reviewed cases held out to judge the candidate")
    retrain.add_argument("--mode", choices=["full", "lora", "head"], default="lora")
    retrain.add_argument("--epochs", type=float, default=None)
    retrain.add_argument("--lr", type=float, default=None)
    retrain.add_argument("--out", help="candidate version folder (default: a new folder under the models folder)")
    retrain.add_argument("--actor", default="cli", help="name recorded in the audit log")
    rollback = sub.add_parser("rollback", help="make an earlier registered version active again")
    rollback.add_argument("version", help="version name (folder name)")
    rollback.add_argument("--actor", default="cli")

    db = sub.add_parser("db", help="database: apply migrations, show the schema revision")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply every Alembic migration (safe to repeat)")
    db_sub.add_parser("current", help="print the schema revision")

    demo = sub.add_parser("demo", help="build the demo model from synthetic notes if it does not exist, "
                                       "and a demo admin account if nobody can sign in yet")
    demo.add_argument("--force", action="store_true", help="rebuild even if the demo model exists")
    demo.add_argument("--notes", type=int, default=1000, help="synthetic notes to generate")
    demo.add_argument("--summaries", type=int, default=400, help="synthetic home-vitals summaries to add")

    users = sub.add_parser("users", help="dashboard accounts: add, list, change role or password, deactivate")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="create an account; prints a generated password once unless "
                                           "--password-stdin is given")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    users_sub.add_parser("list", help="accounts as JSON lines (no password hashes)")
    role = users_sub.add_parser("set-role", help="change an account's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    passwd = users_sub.add_parser("passwd", help="set a new password (generated unless --password-stdin); "
                                                 "signs the account out everywhere")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    for verb in ("deactivate", "activate"):
        users_sub.add_parser(verb, help=f"{verb} an account").add_argument("name")

    vitals = sub.add_parser("vitals", help="device files (generic CSV, PhysioNet, Fitbit, FHIR; a folder = its files): "
                            "NEWS2, blood-pressure category, alerts and the classifier's summary, one JSON line per patient")
    vitals.add_argument("paths", nargs="+")
    vitals.add_argument("--patient", action="append", default=[], help="only these patients (repeatable)")
    vitals.add_argument("--setting", choices=["hospital", "home"],
                        help="default, per patient: hospital where the readings chart consciousness or air/oxygen, "
                             "else home")
    _add_spo2_scale(vitals)
    vitals.add_argument("--lookback", default="4h", type=_duration,
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
    _add_spo2_scale(advice)
    advice.add_argument("--birth-date", type=_date, help="record the birth date (YYYY-MM-DD) for the age-based rules")
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
    _add_spo2_scale(report)
    report.add_argument("--by", default=None, help="name printed as the report's author (default: your login name)")
    report.add_argument("--no-explain", action="store_true",
                        help="only show explanations already stored (default: compute missing ones with the model "
                             "version that scored each note, and store them)")

    worker = sub.add_parser("worker", help="run background jobs (use with HEALTHMON_WORKER=external on the dashboard)")
    worker.add_argument("--once", action="store_true", help="run the queued jobs, then exit")
    return parser


def _read(args: argparse.Namespace, settings: Settings, *, labels: bool):
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


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
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


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.training.args import TrainArgs
    from healthmon.training.trainer import train

    train_args = TrainArgs(
        mode=args.mode,
        multi_label=args.multi_label,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        warmup_ratio=args.warmup_ratio,
        early_stopping_patience=args.patience,
        select_by=args.select_by,
        head_init=args.head_init,
        pooling=args.pooling,
        max_length=args.max_length,
        max_steps=args.max_steps,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_target_modules=tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()),
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )
    notes = _read(args, settings, labels=True).notes
    # Trainer prints its logs to stdout; stdout is reserved for the one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        result = train(notes, train_args, out_dir=args.out, settings=settings, progress=not args.no_progress)
    if result.version_dir is None:  # a non-zero torchrun rank: rank 0 reports
        return 0
    print(json.dumps({"version": str(result.version_dir), **_summary(result.metrics)}, default=str))
    return 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.model.classifier import Classifier
    from healthmon.training.evaluation import evaluate

    classifier = Classifier.from_pretrained(args.model, settings=settings, precision="fp32")
    notes = _read(args, settings, labels=True).notes
    with contextlib.redirect_stdout(sys.stderr):
        metrics = evaluate(classifier, notes, progress=True)
    print(json.dumps(_summary(metrics), default=str))
    return 0


def _date(text: str):  # noqa: ANN202 - argparse type
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, found {text!r}") from None


def _cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from healthmon.model.classifier import Classifier

    if not args.out and not args.store:
        raise IngestError("--out FILE.csv, --store, or both", "neither", "say where the scores should go")
    classifier = Classifier.from_pretrained(args.model, settings=settings, precision=args.precision)
    result = _read(args, settings, labels=False)
    predictions = classifier.predict([note.text for note in result.notes], progress=True)
    if args.store:
        from healthmon.storage.db import transaction
        from healthmon.storage.repository import audit, save_predictions
        from healthmon.training.continual import ensure_registered

        with transaction(_factory(settings)) as s:
            version = ensure_registered(s, Path(args.model))
            note_ids = save_predictions(s, result.notes, predictions, version)
            audit(s, args.actor, "notes.predict", "cli", "predict", after={"notes": len(note_ids), "version": version.name})
        print(f"stored {len(note_ids)} scored notes as cases (version {version.name})", file=sys.stderr)
        if not args.out:
            return 0
    rows = []
    for note, pred in zip(result.notes, predictions):
        row = {"note_id": note.note_id, "patient_id": note.patient_id, "predicted": "|".join(pred.labels)}
        row.update({f"p_{label}": round(p, 6) for label, p in pred.probabilities.items()})
        row.update({"windows": pred.windows, "model_version": pred.model_version})
        rows.append(row)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out, index=False)
    except OSError as exc:
        raise IngestError("a writable CSV path for --out", f"{out}: {exc.strerror}", "choose a file in a writable folder") from exc
    print(
        f"wrote {len(rows)} predictions to {out} (precision {classifier.precision}, device {classifier.device})",
        file=sys.stderr,
    )
    return 0


def _cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.explain import ExplainOptions, explain_many, to_html_page, to_json
    from healthmon.model.classifier import Classifier

    out = Path(args.out)
    if out.suffix.lower() not in {".html", ".jsonl"}:
        raise IngestError("--out ending in .html or .jsonl", repr(str(out)), "e.g. --out explanations.html")
    classifier = Classifier.from_pretrained(args.model, settings=settings)
    if args.text is not None:
        texts, ids = [args.text], ["text"]
    else:
        notes = _read(args, settings, labels=False).notes
        texts, ids = [n.text for n in notes], [n.note_id for n in notes]
    if args.target is not None:
        pairs = [(i, t, args.target) for i, t in zip(ids, texts)]
    elif classifier.multi_label:
        # One explanation per predicted label (the top label when none passes its threshold).
        pairs = [
            (i, t, label)
            for i, t, p in zip(ids, texts, classifier.predict(texts))
            for label in (p.labels or (p.top_label,))
        ]
    else:
        pairs = [(i, t, None) for i, t in zip(ids, texts)]
    options = ExplainOptions(
        tolerance=args.tolerance,
        max_steps=args.max_steps,
        baseline=args.baseline,
        precision=args.precision,
        faithfulness=not args.no_faithfulness,
        baseline_sensitivity=args.baseline_sensitivity,
    )
    explanations = explain_many(classifier, [t for _, t, _ in pairs], [g for _, _, g in pairs], options=options)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".html":
            # backslashreplace: a stray surrogate from a mis-decoded argument must not crash the export.
            out.write_text(to_html_page(explanations, title=f"healthmon explanations ({classifier.name})"),
                           encoding="utf-8", errors="backslashreplace")
        else:
            with out.open("w", encoding="utf-8", errors="backslashreplace") as fh:
                for (note_id, _, _), e in zip(pairs, explanations):
                    fh.write('{"note_id": ' + json.dumps(note_id) + ', "explanation": ' + to_json(e) + "}\n")
    except OSError as exc:
        raise IngestError("a writable path for --out", f"{out}: {exc.strerror}", "choose a file in a writable folder") from exc
    unconverged = sum(not e.converged for e in explanations)
    print(json.dumps({
        "out": str(out),
        "explanations": len(explanations),
        "unconverged": unconverged,
        "max_abs_delta": max((abs(e.delta) for e in explanations), default=0.0),
        "seconds_per_note": sum(e.seconds for e in explanations) / max(1, len(explanations)),
    }))
    return 0


def _cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.storage.db import make_engine, session_factory, upgrade
    from healthmon.training.args import TrainArgs
    from healthmon.training.continual import retrain

    engine = make_engine(settings=settings)
    upgrade(engine)
    with contextlib.redirect_stdout(sys.stderr):
        result = retrain(
            session_factory(engine),
            settings=settings,
            parent_dir=Path(args.parent) if args.parent else None,
            args=TrainArgs(mode=args.mode, epochs=args.epochs, learning_rate=args.lr),
            replay=args.replay,
            holdout_fraction=args.holdout,
            margin=args.margin,
            out_dir=Path(args.out) if args.out else None,
            actor=args.actor,
        )
    print(json.dumps({"run": result.run_id, "version": str(result.version_dir), "promoted": result.promoted,
                      "reason": result.reason, **result.metrics}, default=str))
    return 0


def _cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.storage.db import make_engine, session_factory, upgrade
    from healthmon.training.continual import rollback

    engine = make_engine(settings=settings)
    upgrade(engine)
    version = rollback(session_factory(engine), args.version, actor=args.actor)
    print(json.dumps({"active": version.name, "folder": version.folder}))
    return 0


def _cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.storage.db import current_revision, make_engine, upgrade

    engine = make_engine(settings=settings)
    try:
        if args.db_command == "upgrade":
            upgrade(engine)
        url = engine.url.render_as_string(hide_password=True)
        print(json.dumps({"database": url, "revision": current_revision(engine)}))
    finally:
        engine.dispose()
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.demo import build_demo_model, ensure_demo_account

    with contextlib.redirect_stdout(sys.stderr):
        folder, built = build_demo_model(settings, force=args.force, n_notes=args.notes, n_summaries=args.summaries)
    print(json.dumps({"demo_model": str(folder), "built": built}))
    account = ensure_demo_account(_factory(settings))
    if account is not None:
        name, password = account
        print(f"\nDemo sign-in (shown only this once): user {name!r}, password {password!r}.\n"
              "It is an admin account: add people and change this password on the Admin page.", file=sys.stderr)
    return 0


def _factory(settings: Settings):  # noqa: ANN202
    from healthmon.storage.db import make_engine, session_factory, upgrade

    engine = make_engine(settings=settings)
    upgrade(engine)
    return session_factory(engine)


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): the first stdin line with --password-stdin, else a random one."""
    import secrets

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return secrets.token_urlsafe(12), True


def _cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon import auth
    from healthmon.storage.db import transaction

    factory = _factory(settings)
    command = args.users_command
    with transaction(factory) as session:
        if command == "list":
            for row in auth.accounts(session):
                print(json.dumps(row, default=str))
            return 0
        if command == "add":
            password, generated = _new_password(args)
            auth.add_user(session, None, args.name, args.role, password)
        elif command == "passwd":
            password, generated = _new_password(args)
            auth.set_password(session, None, args.name, password)
        elif command == "set-role":
            auth.set_role(session, None, args.name, args.role)
        else:
            auth.set_active(session, None, args.name, command == "activate")
    print(json.dumps({"user": args.name, "done": command}))
    if command in ("add", "passwd") and generated:
        print(f"Password for {args.name} (shown only this once): {password}", file=sys.stderr)
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from healthmon.jobs import Worker
    from healthmon.model.classifier import Classifier

    loaded: dict[str, Classifier] = {}

    def load(folder: str) -> Classifier:
        if folder not in loaded:  # keep models warm between jobs
            loaded[folder] = Classifier.from_pretrained(folder, settings=settings)
        return loaded[folder]

    worker = Worker(_factory(settings), settings, load)
    if args.once:
        worker.fail_stale()
        ran = 0
        while worker.run_once() is not None:
            ran += 1
        print(json.dumps({"jobs_run": ran}))
        return 0
    print(f"healthmon worker {worker.name}: waiting for jobs (Ctrl-C stops)", file=sys.stderr)
    try:
        worker.run_forever(threading.Event())
    except KeyboardInterrupt:
        pass
    return 0


def _duration(text: str) -> str:
    """A positive pandas duration with a unit; a bare number would be read as nanoseconds."""
    import pandas as pd

    try:
        ok = not text.strip().replace(".", "", 1).isdigit() and pd.Timedelta(text) > pd.Timedelta(0)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected a positive duration with a unit such as 4h or 90min, found "
                                         f"{text!r}; add the unit")
    return text


def _records_for_vitals(settings: Settings, *, store: bool):  # noqa: ANN202
    """(session factory or None, why the record could not be read or ""), for the recorded
    SpO2 scales. Scoring files must work without a database: a SQLite file that does not
    exist yet holds no record and is not created, and an unreachable database is said in
    each line's basis (and on stderr) rather than stopping the scores. Storing needs it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.resolved_database_url)
    except ArgumentError:  # _factory says what is wrong with it
        url = None
    local = url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if not store and local and not Path(url.database).exists():
        return None, ""
    try:
        return _factory(settings), ""
    except HealthmonError as exc:
        if store:
            raise
        print(f"  the recorded SpO2 scales could not be read: {exc}", file=sys.stderr)
        return None, "no record read (database unavailable); scored on the scale given or 1"


def _cmd_vitals(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.advice.patient import recorded_spo2_scale, scale_on_record, spo2_scale_basis
    from healthmon.vitals.assess import assess_patient, mark_cuffless, readings_setting
    from healthmon.vitals.formats import read_device_paths
    from healthmon.vitals.store import store_vitals

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
    patients = args.patient or list(data.frame["patient_id"].astype(str).value_counts().index)
    missing = sorted(set(patients) - set(data.frame["patient_id"].astype(str)))
    if missing:
        raise IngestError("patients present in the files", f"no readings for {', '.join(missing)}",
                          "check --patient against the files' patient ids")
    # A stored patient with a prescribed 88-92 % target is scored on it here too: the same file
    # must not give NEWS2 7 in a script and 5 on the dashboard.
    for patient in patients:
        recorded = recorded_spo2_scale(factory, patient) if factory is not None else None
        scale = args.spo2_scale or scale_on_record(recorded)
        setting = args.setting or readings_setting(data.frame, patient)
        result = assess_patient(data.frame, patient, setting=setting, spo2_scale=scale,
                                lookback=args.lookback,
                                descriptors=data.descriptors.get(patient))
        latest = result.latest_news2
        print(json.dumps({
            "patient_id": patient, "readings": int(len(result.vitals)),
            "setting": {"setting": setting, "basis": "given" if args.setting else "preset from the readings"},
            "news2": None if latest is None else {k: latest[k] for k in ("time", "total", "band", "complete",
                                                                         "missing", "caveat")},
            "bp": None if result.bp is None else {**asdict(result.bp), "esc_esh": result.bp_esc,
                                                  "crisis_readings": list(result.bp_crisis), "note": result.bp_note},
            "alerts": [{k: a[k] for k in ("time", "severity", "rule_id", "message")}
                       for a in result.alerts.to_dict("records")],
            "spo2_scale": {"scale": scale, "basis": unreadable or spo2_scale_basis(scale, recorded)},
            "checks_not_possible": list(result.skipped), "summary": result.summary,
        }, default=str))
    return 0




def _rules(settings: Settings):  # noqa: ANN202
    from healthmon.advice.rules import load_rules

    return load_rules(settings.advice_rules)


def _cmd_advice(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.advice.engine import evaluate
    from healthmon.advice.patient import patient_snapshot
    from healthmon.advice.store import decide_advice, draft_advice, patient_advice, set_demographics, set_spo2_scale
    from healthmon.storage.db import unit_of_work

    factory = _factory(settings)
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
    set_aside: list[int] = []
    # One transaction for everything the command stores: a draft refused (NEWS2 scored off the
    # record), a scale without its reason or a decision on an id that is not pending rolls back
    # the demographics, scale and drafts stored before it, so no half-applied command is left.
    with unit_of_work(factory):
        if args.birth_date or args.sex:
            set_demographics(factory, args.actor, args.patient, birth_date=args.birth_date, sex=args.sex)
        if args.record_spo2_scale:
            set_aside = set_spo2_scale(factory, args.actor, args.patient, args.record_spo2_scale, reason=args.reason)
        snapshot = patient_snapshot(factory, args.patient, setting=args.setting, spo2_scale=args.spo2_scale)
        result = evaluate(_rules(settings), snapshot.findings)
        if args.draft:
            draft_advice(factory, args.actor, snapshot, result)
        current = {item.id: item.version for item in patient_advice(factory, args.patient)}
        for advice_id, decision, text, note in decisions:
            if advice_id in set_aside:  # its status alone ("superseded") would not say that this command did it
                raise IngestError("a pending draft to approve, edit or dismiss",
                                  f"advice {advice_id}, set aside by --record-spo2-scale {args.record_spo2_scale} in "
                                  "this same command (it was fired by a NEWS2 on the other SpO2 scale)",
                                  "record the scale with --draft first, then decide on the new draft")
            if advice_id not in current:
                raise IngestError(f"an advice id of patient {args.patient} "
                                  f"({', '.join(map(str, current)) or 'none stored'})",
                                  str(advice_id), "run `healthmon advice --patient ID` to list them")
            decide_advice(factory, args.actor, advice_id, decision, seen_version=current[advice_id], text=text, note=note)
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
    import getpass

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf", ".json"):
        raise IngestError("--out ending in .html, .pdf or .json (FHIR)", out.name, "rename the output file")
    factory = _factory(settings)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            from healthmon.advice.patient import patient_snapshot
            from healthmon.report.fhir import fhir_json

            out.write_text(fhir_json(patient_snapshot(factory, args.patient, setting=args.setting,
                                                        spo2_scale=args.spo2_scale)), encoding="utf-8")
        else:
            from healthmon.model.classifier import Classifier
            from healthmon.report import build_report, write_report

            def load(folder: str) -> Classifier:
                return Classifier.from_pretrained(folder, settings=settings)

            report = build_report(factory, args.patient, generated_by=args.by or f"{getpass.getuser()} (cli)",
                                  rules=_rules(settings), rules_path=settings.advice_rules,
                                  load_classifier=None if args.no_explain else load, setting=args.setting,
                                  spo2_scale=args.spo2_scale)
            write_report(report, out)
    except OSError as exc:
        raise IngestError("a writable path for --out", f"{out}: {exc.strerror}", "choose a file in a writable folder") from exc
    print(json.dumps({"patient": args.patient, "wrote": str(out), "bytes": out.stat().st_size}))
    return 0


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "explain": _cmd_explain,
    "retrain": _cmd_retrain,
    "rollback": _cmd_rollback,
    "db": _cmd_db,
    "demo": _cmd_demo,
    "users": _cmd_users,
    "worker": _cmd_worker,
    "vitals": _cmd_vitals,
    "advice": _cmd_advice,
    "report": _cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        return COMMANDS[args.command](args, settings)
    except HealthmonError as exc:
        print(f"healthmon {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as exc:  # a HEALTHMON_* environment variable with a bad value
        problems = "; ".join(
            f"HEALTHMON_{'_'.join(map(str, err['loc'])).upper()}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        print(f"healthmon {args.command}: invalid setting: {problems}. Fix the environment variable.", file=sys.stderr)
        return EXIT_BAD_INPUT
