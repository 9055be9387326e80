"""The demo model: trained on the project's own synthetic notes, never on patient data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from healthmon.config import Settings
from healthmon.demo.export import write_demo_csv
from healthmon.demo.notes import generate_demo_notes
from healthmon.demo.vitals import synthetic_vitals_notes
from healthmon.demo.vocabulary import DEMO_LABELS
from healthmon.model.card import CARD_FILE
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train
from healthmon.types import Note

DEMO_NOTES_FILE = "synthetic_demo_notes.csv"


def demo_notes(n_notes: int, seed: int, n_summaries: int = 0) -> list[Note]:
    """``n_notes`` synthetic clinical notes, then ``n_summaries`` synthetic home-vitals summaries
    (``healthmon.demo.vitals``), so the demo model has learned to read the sentence the
    Vitals page scores and explains.

    History, kept because it explains the recipe. With 15 % summaries and the pooled [CLS]
    vector the head used to read, every rebuild (2026-11-28 and 29) learned no summary, or
    collapsed to the label prior: sentences from one template differ very little in that
    vector (benchmarks/RESULTS.md, "What the words and the frozen encoder carry"). With the head
    reading the mean of the tokens (``pooling="mean"``), 150 summaries were learned weakly
    (macro-F1 0.443 on 27 test summaries); 400 are learned as far as their words allow: on the
    83 test summaries of the default build, macro-F1 0.724 (exact label set 0.675) against
    0.716 (0.675) for a bag-of-words logistic regression fitted on the same training split
    (``benchmarks/demo_eval.py``). The synthetic windows leave every parameter out one time
    in five, so a diabetes window without glucose cannot be told from a healthy one, by design.
    """
    notes = [
        Note(text=s.text, note_id=s.note_id, patient_id=s.patient_id, labels=s.labels, source="synthetic")
        for s in generate_demo_notes(n_notes, seed=seed)
    ]
    return notes + (synthetic_vitals_notes(n_summaries, seed=seed) if n_summaries else [])


def build_demo_model(settings: Settings, *, force: bool = False, n_notes: int = 1000,
                     n_summaries: int = 400) -> tuple[Path, bool]:
    """Train the multi-label demo model unless one already exists.

    The demo is multi-label (none / diabetes / hypertension / cancer, some notes with two
    conditions), LoRA, the head reading the mean of the tokens, up to 6 epochs over 1,000 notes
    and 400 home-vitals summaries at 256 tokens: 18.5 min on a 2-core CPU, test macro-F1 0.942
    on the notes and 0.724 on the summaries (benchmarks/RESULTS.md, "Demo model build"; notes
    alone took 13.5 min). A quicker notes-only recipe (600 notes, 128 tokens, 4 epochs) took
    2.8 min but reached only 0.708 (diabetes F1 0.63, "none" 0.51): a demo that misleads
    clinicians is worse than a slow first start.

    Returns:
        The demo version folder and whether it was (re)built now.
    """
    target = settings.demo_model_dir
    if (target / CARD_FILE).is_file() and not force:
        return target, False
    demo_dir = settings.data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    # The CSV is what the dashboard offers as a sample upload, labelled synthetic.
    write_demo_csv(demo_dir / DEMO_NOTES_FILE, n=n_notes, seed=settings.seed)
    args = TrainArgs(
        mode="lora", multi_label=True, epochs=6, early_stopping_patience=2, label_order=DEMO_LABELS, pooling="mean",
        # A first start waits for this model: the fixed recipe, settled on these notes, without a search.
        search="off",
    )
    # ".tmp-" names are skipped by list_versions, so a killed build is never served.
    staging = target.with_name(f".tmp-{target.name}-new")
    if staging.exists():
        shutil.rmtree(staging)
    train(demo_notes(n_notes, settings.seed, n_summaries), args, out_dir=staging, settings=settings,
          synthetic_data=True)
    if target.exists():
        retired = target.with_name(f".tmp-{target.name}-old")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)
    return target, True
