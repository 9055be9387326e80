"""Version lineage: which version a version continues from, and the notes each version keeps.

A continual fine-tune starts from its parent's weights (``card.parent_version``);
:func:`healthmon.model.loading.load_version_model` rebuilds the parent first, and
:func:`lineage` walks the chain back to its first version.

Every version also keeps the notes it was trained and tested on (``data/*.jsonl``, written
by :mod:`healthmon.training.saving`) so a later retrain can replay them, and a frozen
regression set: the first version's test split, inherited unchanged by every descendant.
These files hold note text: a version folder is patient data and must be stored like the
database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from healthmon.errors import ModelError
from healthmon.model.card import ModelCard

DATA_DIR = "data"
REGRESSION_FILE = "regression.jsonl"


def resolve_parent(folder: Path, card: ModelCard) -> Path:
    """The parent version's folder: as recorded, or a sibling of the same name (moved models folder)."""
    recorded = Path(card.parent_version)
    for candidate in (recorded, folder.parent / recorded.name):
        if (candidate / "card.json").is_file():
            return candidate
    raise ModelError(
        f"the parent version this one continues from ({recorded.name})",
        f"neither {recorded} nor {folder.parent / recorded.name} exists",
        "restore the parent version folder beside this one",
    )


def lineage(folder: Path) -> Iterator[tuple[Path, ModelCard]]:
    """A version and its ancestors, newest first, each with its card."""
    card = ModelCard.load(folder)
    seen = {folder.resolve()}
    yield folder, card
    while card.parent_version:
        folder = resolve_parent(folder, card)
        if folder.resolve() in seen:
            raise ModelError("a version lineage without cycles", f"{folder} is its own ancestor", "fix card.json")
        seen.add(folder.resolve())
        card = ModelCard.load(folder)
        yield folder, card


def lineage_root(folder: Path) -> Path:
    """The first version of a lineage (the one without a parent)."""
    return [path for path, _ in lineage(folder)][-1]


def load_examples(folder: Path, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """``(text, labels)`` rows of ``data/<name>.jsonl`` in a version folder."""
    path = Path(folder) / DATA_DIR / f"{name}.jsonl"
    if not path.is_file():
        raise ModelError(
            f"the version's stored {name} data ({DATA_DIR}/{name}.jsonl)",
            f"no such file in {folder}",
            "versions trained before healthmon stored their data cannot be continued: "
            "pass the original training file with --replay-data, or retrain the version",
        )
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            rows.append((item["text"], tuple(item["labels"])))
    return rows
