"""The synthetic demo corpus as a table and as the CSV the dashboard offers as a sample upload."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from healthmon.demo.notes import SyntheticNote, generate_demo_notes


def demo_notes_frame(notes: Sequence[SyntheticNote]) -> pd.DataFrame:
    """One row per note: note_id, patient_id, text, labels (pipe-joined), synthetic (True)."""
    return pd.DataFrame(
        {
            "note_id": [n.note_id for n in notes],
            "patient_id": [n.patient_id for n in notes],
            "text": [n.text for n in notes],
            "labels": ["|".join(n.labels) for n in notes],
            "synthetic": [True] * len(notes),
        },
        columns=["note_id", "patient_id", "text", "labels", "synthetic"],
    )


def write_demo_csv(path: str | Path, n: int = 1200, seed: int = 13) -> Path:
    """Write the synthetic corpus as a UTF-8 CSV (creating parent folders) and return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    demo_notes_frame(generate_demo_notes(n, seed=seed)).to_csv(out, index=False, encoding="utf-8")
    return out
