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
