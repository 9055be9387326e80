"""Version lineage: continuing from a parent version, and the data a version was trained on.

A continual fine-tune starts from its parent's weights (the parent's LoRA already merged),
with the head extended when reviewers added labels: old labels keep their rows, new ones
start fresh. Its own adapter or head is saved relative to that starting point, so loading
it rebuilds the parent first (``card.parent_version``).

Every version also keeps the notes it was trained and tested on (``data/*.jsonl``) so a
later retrain can replay them, and a frozen regression set: the first version's test
split, inherited unchanged by every descendant. These files hold note text: a version
folder is patient data and must be stored like the database.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

from healthmon.errors import ModelError
from healthmon.model.card import ModelCard

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from healthmon.training.data import Example, Splits

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


def initialise_from_version(model: "PreTrainedModel", parent_dir: Path) -> None:
    """Copy a parent version's weights into ``model`` (built with the child's labels).

    The backbone and any extra head layers are copied as they are; classifier rows are
    copied label by label, so old labels keep what they learned and new labels keep the
    fresh rows they were built with.
    """
    from healthmon.model.loading import head_module_names, load_version_model

    parent_card = ModelCard.load(parent_dir)
    parent = load_version_model(parent_dir, parent_card)
    labels = list(model.config.id2label[i] for i in range(model.config.num_labels))
    rows = [(labels.index(label), i) for i, label in enumerate(parent_card.labels) if label in labels]
    own = model.state_dict()
    head = tuple(f"{name}." for name in head_module_names(model) if name == "classifier")
    with torch.no_grad():
        for key, value in parent.state_dict().items():
            if key not in own:
                continue
            if key.startswith(head) and own[key].shape != value.shape:
                for new, old in rows:
                    own[key][new] = value[old]
            elif own[key].shape == value.shape:
                own[key].copy_(value)
            else:
                raise ModelError(
                    "a parent version with the same base architecture",
                    f"{key}: {tuple(value.shape)} in the parent vs {tuple(own[key].shape)} here",
                    "continue from a version trained on the same base model",
                )


def _write(path: Path, examples: "list[Example] | tuple[Example, ...]") -> None:
    with path.open("w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps({"text": example.text, "labels": list(example.labels)}, ensure_ascii=False) + "\n")


def save_training_data(folder: Path, splits: "Splits", parent: str) -> None:
    """Write the splits, and the regression set (inherited from the parent, else this test split)."""
    data = folder / DATA_DIR
    data.mkdir(exist_ok=True)
    _write(data / "train.jsonl", splits.train)
    _write(data / "validation.jsonl", splits.validation)
    _write(data / "test.jsonl", splits.test)
    inherited = Path(parent) / DATA_DIR / REGRESSION_FILE if parent else None
    if inherited is not None and inherited.is_file():
        shutil.copyfile(inherited, data / REGRESSION_FILE)
    else:
        _write(data / REGRESSION_FILE, splits.test)


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
