"""Model commands: train, evaluate, predict, explain, retrain and roll back versions."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from healthmon.cli.common import add_columns, duration, open_database, read_notes, summary
from healthmon.config import Settings
from healthmon.errors import IngestError

# Commands import torch-backed modules (models, training, the services above them) when they
# run, not when the CLI loads: `--help` and the light commands stay fast.


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fine-tune a model version on labelled notes")
    add_columns(train, labels=True)
    train.add_argument("--out", help="version folder to create (default: a new folder under the models folder)")
    train.add_argument("--multi-label", action="store_true", help="notes may carry several labels (sigmoid + BCE)")
    train.add_argument("--task", choices=["classification", "regression"], default="classification",
                       help="regression: the label column holds one number per note (a severity, a lab value) and "
                            "the version predicts it; rows without a number are counted and listed as rejected")
    train.add_argument("--loss", choices=["huber", "mse"], default="huber",
                       help="regression loss on the standardised target (huber: delta one standard deviation)")
    train.add_argument("--mode", choices=["full", "lora", "head"], default="lora")
    train.add_argument("--epochs", type=float, default=None,
                       help="exact epochs for the learning-rate schedule (default: planned from --max-epochs and "
                            "the time budget)")
    train.add_argument("--max-epochs", type=float, default=None,
                       help="most epochs (default: 20,000 training examples' worth, 3-30 epochs)")
    train.add_argument("--time-budget", type=duration, default=None,
                       help="search plus fine-tune, e.g. 45m or 1h30m (default 40m); the best epoch so far is kept")
    train.add_argument("--search", default="auto",
                       help="off, auto (on from 1,000 training notes or 10 labels) or a number of trials: a short "
                            "search on validation over learning rate, head start and class weighting; knobs given "
                            "here (--lr, --head-init probe, --class-weight balanced) are kept")
    train.add_argument("--class-weight", choices=["none", "balanced"], default="none",
                       help="balanced: weigh each class's loss by n / (k * count) (single-label)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default by mode: full 1e-4, lora 1e-3, head 2e-3)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--dropout", type=float, default=None)
    train.add_argument("--warmup-ratio", type=float, default=0.06)
    train.add_argument("--patience", type=int, default=3,
                       help="epochs without improvement of the smoothed validation metric before stopping (0 = off)")
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
    add_columns(evaluate, labels=True)

    predict = sub.add_parser("predict", help="write calibrated risk (or a regression version's predicted value) per note to a CSV")
    predict.add_argument("--model", required=True, help="version folder")
    add_columns(predict, labels=False)
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
    explain.add_argument("--tolerance", type=float, default=0.05,
                         help="accepted |delta|: probability units (a regression version: standard deviations of "
                              "its training target)")
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


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from healthmon.training.args import TrainArgs
    from healthmon.training.trainer import train

    train_args = TrainArgs(
        mode=args.mode,
        multi_label=args.multi_label,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_epochs=args.max_epochs,
        time_budget_s=pd.Timedelta(args.time_budget).total_seconds() if args.time_budget else None,
        search=args.search,
        class_weight=args.class_weight,
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
        task=args.task,
        loss=args.loss,
    )
    read = read_notes(args, settings, labels=True)
    notes = read.notes
    if train_args.task == "regression":  # the version predicts the label column, named after it
        train_args = replace(train_args, target_name=read.report.columns.get("label", ""))
        _say_rejected_targets(notes)
    # Trainer prints its logs to stdout; stdout is reserved for the one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        result = train(notes, train_args, out_dir=args.out, settings=settings, progress=not args.no_progress)
    if result.version_dir is None:  # a non-zero torchrun rank: rank 0 reports
        return 0
    search, run = result.metrics.get("search", {}), result.metrics.get("train", {})
    print(f"search: {search.get('reason', '')}; chosen {search.get('chosen', {})}", file=sys.stderr)
    print(f"stopped: {run.get('stopped_by', '')}", file=sys.stderr)
    print(json.dumps({"version": str(result.version_dir), **summary(result.metrics)}, default=str))
    return 0


def _say_rejected_targets(notes: list) -> None:
    """Rows whose target is not one number, said like the rows ingest rejects (the card counts them too)."""
    from healthmon.training.regression import target_rejections

    rejected = target_rejections(notes)
    if rejected:
        print(f"{len(rejected)} of {len(notes)} rows have no usable target value and are not trained on:",
              file=sys.stderr)
    for row in rejected[:20]:
        print(f"  rejected line {row.line}: {row.reason}", file=sys.stderr)
    if len(rejected) > 20:
        print(f"  ... and {len(rejected) - 20} more rows without a usable target", file=sys.stderr)


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from healthmon.model.classifier import Classifier
    from healthmon.training.evaluation import evaluate

    classifier = Classifier.from_pretrained(args.model, settings=settings, precision="fp32")
    notes = read_notes(args, settings, labels=True).notes
    with contextlib.redirect_stdout(sys.stderr):
        metrics = evaluate(classifier, notes, progress=True)
    print(json.dumps(summary(metrics), default=str))
    return 0


def _cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from healthmon.model.classifier import Classifier

    if not args.out and not args.store:
        raise IngestError("--out FILE.csv, --store, or both", "neither", "say where the scores should go")
    classifier = Classifier.from_pretrained(args.model, settings=settings, precision=args.precision)
    result = read_notes(args, settings, labels=False)
    predictions = classifier.predict([note.text for note in result.notes], progress=True)
    if args.store:
        from healthmon.services.notes import store_scored

        note_ids, version = store_scored(open_database(settings), args.actor, result.notes, predictions, args.model)
        print(f"stored {len(note_ids)} scored notes as cases (version {version})", file=sys.stderr)
        if not args.out:
            return 0
    rows = []
    for note, pred in zip(result.notes, predictions):
        if pred.value is not None:  # a regression version: the predicted value under the target's name
            row = {"note_id": note.note_id, "patient_id": note.patient_id, "predicted": round(pred.value, 6),
                   "target": pred.labels[0], "windows": pred.windows, "model_version": pred.model_version}
            rows.append(row)
            continue
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
        notes = read_notes(args, settings, labels=False).notes
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
    from healthmon.services.retrain import retrain
    from healthmon.training.args import TrainArgs

    with contextlib.redirect_stdout(sys.stderr):
        result = retrain(
            open_database(settings),
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
    from healthmon.services.versions import rollback

    version = rollback(open_database(settings), args.version, actor=args.actor)
    print(json.dumps({"active": version.name, "folder": version.folder}))
    return 0


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "predict": _cmd_predict, "explain": _cmd_explain,
            "retrain": _cmd_retrain, "rollback": _cmd_rollback}
