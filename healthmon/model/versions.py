"""Version folders: written whole or not at all, and found again by name."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from healthmon.errors import ModelError
from healthmon.model.card import CARD_FILE, ModelCard

TMP_PREFIX = ".tmp-"


def new_version_name(mode: str, fingerprint: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{mode}-{fingerprint[:8]}"


def check_target_free(target: Path) -> None:
    """Fail before training, not after, when the version folder already exists."""
    if target.exists():
        raise ModelError(
            "a new folder for the model version",
            f"{target} already exists",
            "choose another --out, or delete the old version first",
        )


@contextmanager
def atomic_version_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to ``target`` only if the block succeeds.

    The rename is atomic on one filesystem, so a killed run leaves at most a ``.tmp-*``
    folder (ignored by :func:`list_versions`) and never a half-written version.
    """
    target = Path(target)
    check_target_free(target)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise ModelError(
            "a writable folder for the model version", f"{target.parent}: {exc.strerror}", "choose another --out"
        ) from exc
    try:
        yield tmp
        if not (tmp / CARD_FILE).is_file():
            raise ModelError("a card.json in the finished version", "none written", "this is a bug; report it")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def list_versions(models_dir: Path) -> list[tuple[Path, ModelCard]]:
    """Complete versions in ``models_dir``, newest first (temporary folders skipped)."""
    if not models_dir.is_dir():
        return []
    found = []
    for folder in models_dir.iterdir():
        if folder.name.startswith(TMP_PREFIX) or not (folder / CARD_FILE).is_file():
            continue
        found.append((folder, ModelCard.load(folder)))
    return sorted(found, key=lambda item: item[1].created_at, reverse=True)
