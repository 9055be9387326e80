"""Two model versions scored on the same notes, and the notes on which they disagree.

The common notes are the test split of the first version (``data/test.jsonl`` in its folder,
written by :mod:`healthmon.training.saving`): notes neither version trained on when the second
continues the first or shares its data, and in any case the notes the first version's card
was evaluated on. Each version predicts as it is served (calibrated, with its thresholds); a
note counts as right when the predicted label set equals the gold one, so a label a version
does not know counts as an error (as :func:`healthmon.training.replay.label_accuracy` does).

Scoring loads both models (torch): the Models page runs it on demand and caches the result
per pair of folders (version folders never change once written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from healthmon.config import Settings
from healthmon.errors import ModelError
from healthmon.model.card import ModelCard
from healthmon.model.classifier import Classifier
from healthmon.model.lineage import load_examples
from healthmon.services.accounts import AuthError, SignedIn, require
from healthmon.services.database import Database, connect_existing

# Enough notes for the counts to mean something and for the page to answer in seconds on a CPU.
MAX_NOTES = 500
# Rows of the disagreement table: more than a reviewer reads in one sitting.
MAX_SHOWN = 100
REGRESSION = "regression"


@dataclass(frozen=True)
class Disagreement:
    """One common note the two versions label differently."""

    text: str
    gold: tuple[str, ...]
    first: tuple[str, ...]
    first_probability: float  # the first version's probability of its most likely label
    second: tuple[str, ...]
    second_probability: float

    @property
    def right(self) -> str:
        """Which version's label set equals the gold one: ``first``, ``second`` or ``neither``."""
        gold = set(self.gold)
        return "first" if set(self.first) == gold else "second" if set(self.second) == gold else "neither"


@dataclass(frozen=True)
class Comparison:
    """Both versions on the first one's test notes (plain values: cacheable, no models inside)."""

    first: str
    second: str
    available: int  # test notes stored with the first version
    scored: int  # of those, scored by both (at most MAX_NOTES)
    first_correct: int
    second_correct: int
    disagreeing: int  # notes whose predicted label sets differ
    disagreements: tuple[Disagreement, ...]  # at most ``shown`` of them, those one version gets right first

    @property
    def truncated(self) -> bool:
        return self.scored < self.available

    @property
    def hidden(self) -> int:
        """Disagreements found but left out of ``disagreements``."""
        return self.disagreeing - len(self.disagreements)


def _check_comparable(first: Path, second: Path) -> None:
    if first.resolve() == second.resolve():
        raise ModelError("two different versions", f"{first.name} twice", "pick a second version")
    for folder in (first, second):
        if ModelCard.load(folder).problem_type == REGRESSION:
            raise ModelError("two classification versions to compare note by note",
                             f"{folder.name} predicts a number (regression)",
                             "compare regression versions by their test metrics (MAE, RMSE, Spearman) side by side")


def stored_test_notes(folder: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(text, gold labels)`` of a version's stored test split."""
    try:
        return load_examples(folder, "test")
    except ModelError as exc:
        raise ModelError(f"the test notes stored with {folder.name} (data/test.jsonl)", f"none in {folder}",
                         "pick as first version one trained by this healthmon (it keeps its test notes), "
                         "or retrain that version") from exc


def _check_viewer(actor: SignedIn, factory: Database | None, settings: Settings) -> None:
    if factory is not None:
        require(factory, actor, "models.view")
        return
    # A caller that passes no factory: the account is checked in the settings' database, the
    # one the dashboard signed it in to (none there: nobody can have signed in to it).
    found = connect_existing(settings)
    if found is None:
        raise AuthError("an account in this installation's database", f"no database at "
                        f"{settings.resolved_database_url}", "sign in to the dashboard that uses these settings")
    try:
        require(found, actor, "models.view")
    finally:
        found.kw["bind"].dispose()


def compare_versions(actor: SignedIn | str, first_dir: str | Path, second_dir: str | Path, *,
                     settings: Settings | None = None, load_classifier: Callable[[str], Classifier] | None = None,
                     max_notes: int = MAX_NOTES, shown: int = MAX_SHOWN, factory: Database | None = None) -> Comparison:
    """Score both versions on the first one's test notes (the first ``max_notes`` of them) and
    list the notes on which their predicted labels differ.

    Args:
        actor: a signed-in user needs ``models.view`` (checked in ``factory``, or without one in the
            database ``settings`` name); the command line passes its name.
        load_classifier: folder -> classifier (default: load it in fp32, as retraining compares).
        shown: how many disagreements to keep; those exactly one version gets right come first.
    """
    settings = settings or Settings()
    if isinstance(actor, SignedIn):
        _check_viewer(actor, factory, settings)
    first, second = Path(first_dir), Path(second_dir)
    _check_comparable(first, second)
    notes = stored_test_notes(first)
    if not notes:
        raise ModelError(f"test notes stored with {first.name}", "an empty data/test.jsonl", "retrain that version")
    used = notes[:max_notes]
    texts = [text for text, _ in used]
    load = load_classifier or (lambda folder: Classifier.from_pretrained(folder, settings=settings, precision="fp32"))
    scored = []
    for folder in (first, second):  # one model in memory at a time (unless the loader caches them)
        classifier = load(str(folder))
        scored.append([(p.labels, max(p.probabilities.values(), default=float("nan")))
                       for p in classifier.predict(texts)])
        del classifier
    found, correct = [], [0, 0]
    for (text, gold), (a, p_a), (b, p_b) in zip(used, *scored):
        correct[0] += set(a) == set(gold)
        correct[1] += set(b) == set(gold)
        if set(a) != set(b):
            found.append(Disagreement(text, tuple(gold), tuple(a), p_a, tuple(b), p_b))
    found.sort(key=lambda d: d.right == "neither")  # stable: one version right first, file order within
    return Comparison(first.name, second.name, len(notes), len(used), correct[0], correct[1], len(found),
                      tuple(found[:shown]))
