"""Shared fixtures: a tiny randomly initialised BERT (no downloads) and isolated settings."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from healthmon.config import Settings, bundled_base_model_dir  # noqa: E402
from healthmon.types import Note  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HEALTHMON_SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with the bundled tokenizer, saved like a Hub model folder.

    Random weights: tests check plumbing (shapes, saving, calibration maths), not accuracy.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_base_model_dir()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture()
def settings(tmp_path: Path, tiny_base_model: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", base_model=str(tiny_base_model), max_length=64, seed=7)


WORDS = {
    "diabetes": ["polyuria", "HbA1c 8.9%", "metformin", "glucose 240 mg/dL", "T2DM"],
    "hypertension": ["BP 162/98 mmHg", "amlodipine", "HTN", "lisinopril", "headache"],
    "cancer": ["biopsy", "adenocarcinoma", "chemotherapy", "mass on CT", "oncology"],
}


def make_notes(n_per_label: int = 12, *, multi: bool = False, seed: int = 0) -> list[Note]:
    """Small keyword notes, distinct texts, a few with two conditions when ``multi``."""
    rng = random.Random(seed)
    notes: list[Note] = []
    for label, words in WORDS.items():
        for i in range(n_per_label):
            picked = rng.sample(words, 3)
            labels: tuple[str, ...] = (label,)
            if multi and i % 4 == 0:
                other = rng.choice([name for name in WORDS if name != label])
                picked.append(rng.choice(WORDS[other]))
                labels = tuple(sorted((label, other)))
            text = f"Visit {label[:3]}-{i}: patient reports " + ", ".join(picked) + f". Follow-up in {i + 2} weeks."
            notes.append(Note(text=text, note_id=f"{label}-{i}", labels=labels))
    return notes


@pytest.fixture()
def notes() -> list[Note]:
    return make_notes()


POSTGRES_URL = os.environ.get("HEALTHMON_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """A fresh, empty database: a SQLite file, and PostgreSQL when .ci/run started one."""
    from sqlalchemy import text

    from healthmon.storage.db import make_engine

    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'healthmon.db'}")
    else:
        if not POSTGRES_URL:
            pytest.skip("no PostgreSQL server: set HEALTHMON_TEST_POSTGRES_URL (.ci/run starts one)")
        eng = make_engine(POSTGRES_URL)
        with eng.begin() as conn:  # from empty, every time
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    yield eng
    eng.dispose()


