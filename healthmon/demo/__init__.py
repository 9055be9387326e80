"""The demo: SYNTHETIC labelled notes and home-vitals summaries, and the demo model built on them.

    from healthmon import get_settings
    from healthmon.demo import build_demo_model, generate_demo_notes
    notes = generate_demo_notes(200, seed=13)        # invented notes, labels none/diabetes/...
    folder, built = build_demo_model(get_settings())  # trains once, then reuses the folder

Nothing here is patient data. The names below load on first use, so generating notes does
not import torch, and the demo build does not load until it is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "DEMO_LABELS": "healthmon.demo.vocabulary",
    "SyntheticNote": "healthmon.demo.notes",
    "generate_demo_notes": "healthmon.demo.notes",
    "demo_notes_frame": "healthmon.demo.export",
    "write_demo_csv": "healthmon.demo.export",
    "synthetic_vitals_notes": "healthmon.demo.vitals",
    "DEMO_NOTES_FILE": "healthmon.demo.build",
    "build_demo_model": "healthmon.demo.build",
    "demo_notes": "healthmon.demo.build",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'healthmon.demo' has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
