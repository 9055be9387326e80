"""What a training run leaves in its version folder besides the card: weights and the notes it saw.

The weights are saved by mode (LoRA adapter, head tensors or the full model), as
:func:`healthmon.model.loading.load_version_model` reads them back. The splits go to
``data/*.jsonl`` with the frozen regression set (inherited from the parent, else this test
split), the layout :mod:`healthmon.model.lineage` reads for replay.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file

from healthmon.model.lineage import DATA_DIR, REGRESSION_FILE
from healthmon.model.loading import ADAPTER_DIR, FULL_DIR, HEAD_FILE, head_state_dict
from healthmon.training.data import Example, Splits


def save_weights(model: torch.nn.Module, mode: str, folder: Path) -> None:
    """The trained weights as ``mode`` stores them: ``adapter/``, ``head.safetensors`` or ``model/``."""
    if mode == "lora":
        model.save_pretrained(str(folder / ADAPTER_DIR))
    elif mode == "head":
        save_file(head_state_dict(model), str(folder / HEAD_FILE))
    else:
        model.save_pretrained(str(folder / FULL_DIR))


def _write(path: Path, examples: Sequence[Example]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps({"text": example.text, "labels": list(example.labels)}, ensure_ascii=False) + "\n")


def save_training_data(folder: Path, splits: Splits, parent: str) -> None:
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
