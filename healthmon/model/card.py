"""The model card: everything needed to load, trust and reproduce a model version."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from healthmon.errors import ModelError

CARD_FILE = "card.json"
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
# One value per note (a severity score, a lab value): one output, trained on the standardised target.
REGRESSION = "regression"
WeightsFormat = Literal["full", "lora", "head"]


@dataclass(frozen=True)
class ModelCard:
    """Contents of ``card.json`` in a version folder.

    Attributes:
        labels: label names in head order.
        problem_type: ``single_label_classification``, ``multi_label_classification`` or
            ``regression`` (``labels`` then holds the one target's name).
        base_model: the base it was fine-tuned from (``bundled:...`` marker for the wheel).
        weights_format: ``full`` (model/), ``lora`` (adapter/) or ``head`` (head.safetensors).
        temperature: calibration temperature applied to logits before softmax/sigmoid.
        thresholds: per-label decision thresholds (multi-label) on calibrated probabilities.
        data_fingerprint: sha256 over the de-duplicated training data and split seed.
        parent_version: for a continual fine-tune, the version folder it started from
            (its weights are the starting point this version's adapter or head applies to).
        pooling: what the head reads, ``cls`` or ``mean`` (:mod:`healthmon.model.pooling`);
            cards written before the choice existed are ``cls``.
        target_mean / target_std: regression only: the training split's target mean and standard
            deviation. The head is trained on the standardised target, so a predicted value is
            ``output * target_std + target_mean``.
    """

    labels: tuple[str, ...]
    problem_type: str
    base_model: str
    weights_format: WeightsFormat
    max_length: int
    window_stride: int
    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    data_fingerprint: str = ""
    train_args: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    training_log: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""
    synthetic_data: bool = False
    healthmon_version: str = ""
    parent_version: str = ""
    pooling: str = "cls"
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    @property
    def regression(self) -> bool:
        return self.problem_type == REGRESSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    def save(self, folder: Path) -> None:
        (folder / CARD_FILE).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> "ModelCard":
        """Read ``card.json`` from a version folder, with an actionable error if it is wrong."""
        path = Path(folder) / CARD_FILE
        if not path.is_file():
            raise ModelError(
                f"a model version folder containing {CARD_FILE}",
                f"no {CARD_FILE} in {Path(folder).resolve()}",
                "pass a folder written by `python -m healthmon train` (or run `python -m healthmon demo`)",
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["labels"] = tuple(raw["labels"])
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"a valid {CARD_FILE}", f"{path}: {exc}", "retrain the version or restore the file"
            ) from exc
