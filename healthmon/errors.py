"""Errors that say what was expected, what was found and how to fix it.

Pages and the CLI catch :class:`HealthmonError` and show its message; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class HealthmonError(Exception):
    """Base class for every error a user can act on.

    Args:
        expected: what healthmon needed.
        found: what it got instead.
        fix: what the user can do about it.
    """

    def __init__(self, expected: str, found: str, fix: str) -> None:
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(f"Expected {expected}; found {found}. Fix: {fix}")


class IngestError(HealthmonError):
    """An uploaded or pasted input cannot be read at all."""


class PatientUnknownError(IngestError):
    """A device file whose readings cannot be told apart by patient until someone says whose they are."""


class ConfigError(HealthmonError):
    """A setting or training argument has a value healthmon cannot use."""


class ModelError(HealthmonError):
    """A model version folder is missing, incomplete or incompatible."""


class TrainingError(HealthmonError):
    """Training data cannot produce a model (too few rows, one class, ...)."""


class StorageError(HealthmonError):
    """A request the stored data cannot satisfy (unknown user, case, label...)."""


class NotFoundError(StorageError):
    """A stored record the request names (a case, a patient) that the database does not hold."""


class ReviewConflict(StorageError):
    """Someone else reviewed the case after this reviewer loaded it.

    Attributes:
        note_id: the case.
        seen_version / current_version: the review version the reviewer saw and the one now stored.
        current_labels: the labels of the newer review, to show the reviewer before retrying.
    """

    def __init__(self, note_id: int, seen_version: int, current_version: int, current_labels: list[str]) -> None:
        super().__init__(
            f"case {note_id} unchanged since review version {seen_version}",
            f"version {current_version}, labelled {', '.join(current_labels) or '(none)'} by another reviewer",
            "reload the case, compare with the newer label and submit again",
        )
        self.note_id = note_id
        self.seen_version = seen_version
        self.current_version = current_version
        self.current_labels = current_labels
