"""Forgetting experiment, class-incremental, on Symptom2Disease.

v1 is trained (default LoRA flags) on 16 of the 24 diseases. Simulated reviewers then label
cases of the 8 held-out diseases (their true labels, submitted as reviews in batches
through the repository, on a real SQLite database), and two continual fine-tunes start
from v1:

* v2 with replay (the default: as many earlier training notes as reviewed cases, ≥ 200);
* v2 naive: the reviewed cases only (``replay=0``).

Accuracy is reported on the test cases of the old 16 diseases and of the 8 new ones. The
test split is the one a full 24-disease training run would use, so no test note is ever
trained on or reviewed.

    python benchmarks/forgetting_bench.py          # about 15 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

S2D = "symptom2disease/Symptom2Disease.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("HEALTHMON_SHARED_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--new-classes", type=int, default=8)
    parser.add_argument("--batches", type=int, default=3, help="review batches")
    parser.add_argument("--replay", type=int, default=None,
                        help="replay size for the replay run (default: retrain's default, as many as reviewed cases, >= 200)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of both retrains (default: retrain's)")
    parser.add_argument("--v1", default=str(ROOT / "data" / "bench" / "forgetting-v1"),
                        help="reuse this v1 folder if it exists (it is written there otherwise)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "forgetting.json"))
    args = parser.parse_args()
    if not (Path(args.shared) / S2D).is_file():
        raise SystemExit(f"{Path(args.shared) / S2D} not found: set --shared or HEALTHMON_SHARED_DATA_DIR")

    from healthmon.config import Settings
    from healthmon.ingest.notes import read_notes_file
    from healthmon.model.classifier import Classifier
    from healthmon.storage.db import make_engine, session_factory, transaction, upgrade
    from healthmon.storage.repository import create_user, register_version, save_predictions, submit_review
    from healthmon.training.args import TrainArgs
    from healthmon.services.retrain import retrain
    from healthmon.services.versions import rollback
    from healthmon.training.replay import label_accuracy
    from healthmon.training.trainer import train, train_splits_only
    from healthmon.types import Note

    notes = read_notes_file(Path(args.shared) / S2D, text_column="text", label_column="label").notes
    splits, _ = train_splits_only(notes, TrainArgs(), Settings())
    test_texts = {e.text for e in splits.test}
    diseases = sorted(splits.labels)
    new = set(diseases[-args.new_classes:])
    old = set(diseases) - new
    # Deduplicated notes outside the global test split (train_splits_only already dropped duplicates).
    pool = [Note(text=e.text, note_id=f"s2d-{i}", labels=e.labels)
            for i, e in enumerate(list(splits.train) + list(splits.validation))]
    old_pool = [n for n in pool if n.labels[0] in old]
    new_pool = [n for n in pool if n.labels[0] in new]
    old_test = [(e.text, e.labels) for e in splits.test if e.labels[0] in old]
    new_test = [(e.text, e.labels) for e in splits.test if e.labels[0] in new]
    print(f"old classes {len(old)}, new {sorted(new)}; v1 notes {len(old_pool)}, reviewed pool {len(new_pool)}, "
          f"test old {len(old_test)} / new {len(new_test)}", file=sys.stderr, flush=True)
    assert not test_texts & {n.text for n in pool}

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="healthmon-forgetting-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        t0 = time.perf_counter()
        # v1 trains on every old-class note outside the test split (its own val/test come from them).
        v1 = Path(tmp) / "models" / "v1"
        if (Path(args.v1) / "card.json").is_file():
            shutil.copytree(args.v1, v1)
            rows["v1"] = {"train_s": float("nan"), "reused": args.v1}
        else:
            train(old_pool, TrainArgs(), out_dir=v1, settings=settings, progress=False)
            rows["v1"] = {"train_s": time.perf_counter() - t0}
            shutil.copytree(v1, args.v1)
        clf = Classifier.from_pretrained(v1, settings=settings, precision="fp32")
        engine = make_engine(f"sqlite:///{tmp}/healthmon.db")
        upgrade(engine)
        db = session_factory(engine)
        with transaction(db) as s:
            version = register_version(s, "v1", str(v1), {}, status="active")
            reviewer = create_user(s, "reviewer", "annotator")
        for b in range(args.batches):
            batch = new_pool[b :: args.batches]
            with transaction(db) as s:
                ids = save_predictions(s, batch, clf.predict([n.text for n in batch]), s.merge(version))
                for note_id, note in zip(ids, batch):
                    submit_review(s, note_id, s.merge(reviewer), list(note.labels), seen_version=0)
        for name, replay in (("v2_replay", args.replay), ("v2_naive", 0)):
            # Both candidates are judged against v1: undo the first one's promotion, if any.
            rollback(db, "v1", actor="bench")
            t0 = time.perf_counter()
            retrain_args = TrainArgs(mode="lora", learning_rate=args.lr) if args.lr else None
            result = retrain(db, settings=settings, parent_dir=v1, replay=replay, args=retrain_args,
                             out_dir=Path(tmp) / "models" / name, actor="bench")
            rows[name] = {"train_s": time.perf_counter() - t0, "promoted": result.promoted, "reason": result.reason,
                          **{k: v for k, v in result.metrics.items() if k != "new_labels"}}
        for name in ("v1", "v2_replay", "v2_naive"):
            model = Classifier.from_pretrained(Path(tmp) / "models" / name, settings=settings, precision="fp32")
            rows[name]["old_acc"] = label_accuracy(model, old_test)
            rows[name]["new_acc"] = label_accuracy(model, new_test)
        engine.dispose()

    print("| version | old-class test accuracy (Δ vs v1) | new-class test accuracy | train s | promoted (reason) |")
    print("|---|---|---|---|---|")
    base = rows["v1"]["old_acc"]
    for name in ("v1", "v2_replay", "v2_naive"):
        r = rows[name]
        verdict = "—" if name == "v1" else ("yes" if r["promoted"] else f"no ({r['reason']})")
        print(f"| {name} | {r['old_acc']:.3f} ({(r['old_acc'] - base) * 100:+.1f} pt) | {r['new_acc']:.3f} "
              f"| {r['train_s']:.0f} | {verdict} |")
    drop = (base - rows["v2_replay"]["old_acc"]) * 100
    print(f"\nTarget with replay: old-class drop ≤ 1 point: {'met' if drop <= 1 else 'MISSED'} ({drop:+.1f}); "
          f"new-class accuracy ≥ 0.95: {'met' if rows['v2_replay']['new_acc'] >= 0.95 else 'MISSED'} "
          f"({rows['v2_replay']['new_acc']:.3f}). Naive forgets more: "
          f"{'yes' if rows['v2_naive']['old_acc'] < rows['v2_replay']['old_acc'] else 'NO'} "
          f"({rows['v2_naive']['old_acc']:.3f} vs {rows['v2_replay']['old_acc']:.3f}).")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
