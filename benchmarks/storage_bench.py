"""Storage speed: the review queue and the agreement summary over a large database.

Fills a fresh database with 100,000 notes and predictions and 20,000 reviews (three
annotators, overlapping cases, some disagreements), then times the next 50 queue items
and the agreement summary (median of 7 runs each). The anchor, measured in the same run
on the same database, is a bare `SELECT count(*)` over the predictions table.

    python benchmarks/storage_bench.py                         # SQLite file in a temp folder
    python benchmarks/storage_bench.py --postgres postgresql+psycopg://postgres@127.0.0.1:54329/bench
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from healthmon.storage.db import make_engine, session_factory, transaction, upgrade  # noqa: E402
from healthmon.storage.models import Case, PredictionRow  # noqa: E402
from healthmon.storage.repository import (  # noqa: E402
    agreement,
    create_user,
    get_user,
    register_version,
    review_queue,
    save_predictions,
    submit_review,
)
from healthmon.types import Note, Prediction  # noqa: E402

LABELS = ("diabetes", "hypertension", "cancer", "none")


def fill(factory, n_predictions: int, n_reviews: int, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    timings = {}
    t0 = time.perf_counter()
    with transaction(factory) as s:
        version = register_version(s, "bench", "/bench", {"labels": list(LABELS)}, status="active")
        for name in ("ann", "bob", "cat"):
            create_user(s, name, "annotator")
    for start in range(0, n_predictions, 5000):
        notes, preds = [], []
        for i in range(start, min(start + 5000, n_predictions)):
            raw = [rng.random() ** 3 for _ in LABELS]
            probs = {label: v / sum(raw) for label, v in zip(LABELS, raw)}
            notes.append(Note(text=f"synthetic note {i}: glucose {rng.randint(70, 300)} mg/dL", note_id=f"n{i}",
                              patient_id=f"p{i % 20000}"))
            preds.append(Prediction(probs, (max(probs, key=probs.get),), "bench", "single_label_classification"))
        with transaction(factory) as s:
            save_predictions(s, notes, preds, s.get(type(version), version.id))
    timings["fill_predictions_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # Reviews: 2 annotators on most reviewed cases, a third on some; ~15% disagree.
    cases = rng.sample(range(1, n_predictions + 1), k=n_reviews // 2)
    done = 0
    with transaction(factory) as s:
        users = [get_user(s, name) for name in ("ann", "bob", "cat")]
        for k, note_id in enumerate(cases):
            truth = rng.choice(LABELS)
            reviewers = users[:2] if k % 5 else users
            for user in reviewers:
                if done >= n_reviews:
                    break
                label = truth if rng.random() > 0.15 else rng.choice(LABELS)
                version = s.get(Case, note_id).review_version
                submit_review(s, note_id, user, [label], seen_version=version)
                done += 1
            if k % 2000 == 0:
                s.flush()
    timings["fill_reviews_s"] = time.perf_counter() - t0
    timings["reviews"] = done
    return timings


def median_ms(fn, runs: int = 7) -> float:
    fn()  # warm caches
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def run(url: str, n_predictions: int, n_reviews: int) -> dict:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    factory = session_factory(engine)
    filled = fill(factory, n_predictions, n_reviews)
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    with factory() as s:
        ann = get_user(s, "ann")
        queue_ms = median_ms(lambda: review_queue(s, limit=50))
        queue_reviewer_ms = median_ms(lambda: review_queue(s, limit=50, reviewer=ann))
        agreement_ms = median_ms(lambda: agreement(s, LABELS))
        count_ms = median_ms(lambda: s.scalar(select(func.count()).select_from(PredictionRow)))
        report = agreement(s, LABELS)
    engine.dispose()
    return {"backend": engine.dialect.name, **filled, "queue_ms": queue_ms, "queue_for_reviewer_ms": queue_reviewer_ms,
            "agreement_ms": agreement_ms, "count_anchor_ms": count_ms, "metric": report.metric,
            "disagreements": len(report.disagreements), "per_label": report.per_label}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--reviews", type=int, default=20_000)
    parser.add_argument("--postgres", help="also run on this PostgreSQL URL (its public schema is wiped)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="healthmon-storage-") as tmp:
        results.append(run(f"sqlite:///{tmp}/bench.db", args.predictions, args.reviews))
        if args.postgres:
            results.append(run(args.postgres, args.predictions, args.reviews))
    print(f"{args.predictions:,} predictions, {args.reviews:,} reviews; median of 7 runs")
    print("| backend | next 50 queue items ms | queue for one reviewer ms | agreement summary ms | anchor count(*) ms "
          "| target < 200 ms | fill predictions s | fill reviews s |")
    print("|---" * 8 + "|")
    for r in results:
        ok = "met" if max(r["queue_ms"], r["queue_for_reviewer_ms"], r["agreement_ms"]) < 200 else "MISSED"
        print(f"| {r['backend']} | {r['queue_ms']:.1f} | {r['queue_for_reviewer_ms']:.1f} | {r['agreement_ms']:.1f} "
              f"| {r['count_anchor_ms']:.1f} | {ok} | {r['fill_predictions_s']:.0f} | {r['fill_reviews_s']:.0f} |")
    for r in results:
        print(f"{r['backend']}: {r['reviews']} reviews, {r['metric']} per label "
              f"{ {k: (round(v, 3) if v is not None else None) for k, v in r['per_label'].items()} }, "
              f"{r['disagreements']} disagreements")


if __name__ == "__main__":
    main()
