"""How far to trust an explanation: ERASER-style faithfulness and baseline sensitivity.

Comprehensiveness and sufficiency follow ERASER (DeYoung et al., 2020) and ferret: the
top-k% words by attribution are deleted from the note (comprehensiveness: the score should
drop a lot) or kept alone (sufficiency: the score should barely drop), for k in
``FRACTIONS``, and the drops are averaged (AOPC). Words are deleted from the text and the
rest re-scored by the classifier exactly as a new note would be, windows included.
A random choice of the same number of words is the reference an explanation must beat.
Drops are measured from the note with all its words rejoined the same way (single
spaces), so only deletion, never respacing, moves the score.

For a regression version the score is the predicted value, so the drops are in the target's
units; :attr:`Faithfulness.scale` holds the training target's standard deviation, and the
trust reading compares the margins in those units (what 0.2 of a probability is to a
classifier, 0.2 standard deviations is to a value).

Baseline sensitivity explains the notes again with the other baseline; the explaining
function is passed in, so this module does not depend on how explanations are computed.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Protocol, Sequence

import numpy as np
from scipy.stats import rankdata

from healthmon.explain.options import ExplainOptions
from healthmon.model.classifier import Classifier
from healthmon.types import Explanation, Faithfulness

# ERASER's bins.
FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)


def _count(n_words: int, fraction: float) -> int:
    return min(n_words, max(1, round(fraction * n_words)))


def _join(explanation: Explanation, keep: np.ndarray) -> str:
    # Whitespace between kept words does not matter to the tokenizer, so single spaces.
    return " ".join(w.word for w, k in zip(explanation.words, keep) if k)


def reference_text(explanation: Explanation) -> str:
    """Every word, rejoined like the perturbed notes: the score drops are measured from
    this, so respacing alone (which moves SentencePiece tokens) never counts as a drop."""
    return _join(explanation, np.ones(len(explanation.words), dtype=bool))


def ranked_words(explanation: Explanation) -> np.ndarray:
    """Word indices, most positive attribution first (ties keep text order)."""
    scores = np.array([w.score for w in explanation.words])
    return np.argsort(-scores, kind="stable")


def random_words(explanation: Explanation, seed: int) -> np.ndarray:
    """A random order of the word indices, fixed by the note and the seed."""
    note_seed = int(hashlib.sha256(explanation.text.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16)
    return np.random.default_rng([seed, note_seed]).permutation(len(explanation.words))


def perturbed_text(explanation: Explanation, order: np.ndarray, fraction: float, *, keep_only: bool) -> str:
    """The note with the first ``fraction`` of ``order``'s words deleted (or kept alone)."""
    chosen = np.zeros(len(explanation.words), dtype=bool)
    chosen[order[: _count(len(explanation.words), fraction)]] = True
    return _join(explanation, chosen if keep_only else ~chosen)


def _drops(classifier: Classifier, explanations: Sequence[Explanation],
           plan: Sequence[tuple[int, str]]) -> np.ndarray:
    """One batched re-scoring: for each ``(note index, perturbed text)`` in ``plan``, the
    explained label's probability (or predicted value) on the note's reference text minus on the perturbed one."""
    probs = classifier.scores([reference_text(e) for e in explanations] + [text for _, text in plan])
    targets = [classifier.labels.index(e.target) for e in explanations]
    n = len(explanations)
    return np.array([probs[i, targets[i]] - probs[n + row, targets[i]] for row, (i, _) in enumerate(plan)])


def score_drops(
    classifier: Classifier,
    explanations: Sequence[Explanation],
    fraction: float,
    *,
    order: str = "attribution",
    keep_only: bool = False,
    seed: int = 13,
) -> np.ndarray:
    """f(note) − f(perturbed note) for the explained label of each note.

    Args:
        fraction: share of each note's words to delete (or, with ``keep_only``, to keep).
        order: ``attribution`` (most positive first) or ``random``.
    """
    plan = [
        (i, perturbed_text(e, ranked_words(e) if order == "attribution" else random_words(e, seed), fraction,
                           keep_only=keep_only))
        for i, e in enumerate(explanations)
    ]
    return _drops(classifier, explanations, plan)


def with_faithfulness(
    classifier: Classifier, explanations: list[Explanation], *, seed: int = 13
) -> list[Explanation]:
    """The same explanations with :class:`Faithfulness` filled in (one batched re-scoring)."""
    if not explanations:
        return explanations
    plan: list[tuple[int, str]] = []
    kinds: list[str] = []
    for i, e in enumerate(explanations):
        if not e.words:
            continue
        ranked, shuffled = ranked_words(e), random_words(e, seed)
        for fraction in FRACTIONS:
            for kind, order, keep_only in (("comp", ranked, False), ("suff", ranked, True), ("rand", shuffled, False)):
                plan.append((i, perturbed_text(e, order, fraction, keep_only=keep_only)))
                kinds.append(kind)
    drops: dict[tuple[int, str], list[float]] = {}
    for (i, _), kind, drop in zip(plan, kinds, _drops(classifier, explanations, plan)):
        drops.setdefault((i, kind), []).append(float(drop))
    return [
        e if (i, "comp") not in drops else replace(
            e,
            faithfulness=Faithfulness(
                comprehensiveness=float(np.mean(drops[(i, "comp")])),
                sufficiency=float(np.mean(drops[(i, "suff")])),
                random_comprehensiveness=float(np.mean(drops[(i, "rand")])),
                fractions=FRACTIONS,
                scale=float(classifier.card.target_std) if classifier.regression else 1.0,
            ),
        )
        for i, e in enumerate(explanations)
    ]


def rank_agreement(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman correlation of two score lists (1.0 when both are constant and equal)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 1.0 if np.allclose(x, y) else 0.0
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


class ExplainMany(Protocol):
    """How explanations are computed (:func:`healthmon.explain.explain_many`'s signature)."""

    def __call__(self, classifier: Classifier, texts: Sequence[str], targets: Sequence[str | None] | None = None,
                 *, options: ExplainOptions | None = None) -> list[Explanation]: ...


def with_baseline_agreement(
    classifier: Classifier, explanations: list[Explanation], options: ExplainOptions, explain_many: ExplainMany
) -> list[Explanation]:
    """Explain again with the other baseline ([PAD] <-> [MASK]) and record the rank agreement.

    Args:
        options: the options the explanations were made with.
        explain_many: the explaining function, called once for all notes with the other baseline.
    """
    other = replace(
        options, baseline="mask" if options.baseline == "pad" else "pad", faithfulness=False, baseline_sensitivity=False
    )
    again = explain_many(classifier, [e.text for e in explanations], [e.target for e in explanations], options=other)
    return [
        replace(e, baseline_agreement=rank_agreement([w.score for w in e.words], [w.score for w in o.words]))
        for e, o in zip(explanations, again)
    ]
