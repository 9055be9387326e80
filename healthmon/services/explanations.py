"""Explanations of stored cases: computed once by the version that scored the note, then stored.

Split from :mod:`healthmon.services.cases` because explaining needs torch and Captum, while
reading cases, reviewing and the advice built on them do not (the CLI's advice and report
commands start in a second instead of several).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.errors import StorageError
from healthmon.explain import ExplainOptions, explain, from_dict, to_dict
from healthmon.explain.faithfulness import with_faithfulness
from healthmon.model.classifier import Classifier
from healthmon.storage.db import transaction
from healthmon.storage.models import ModelVersion
from healthmon.storage.repository import load_explanation, save_explanation
from healthmon.types import CaseView, Explanation

# Dashboard explanations include the faithfulness check: its trust reading is shown.
DASHBOARD_OPTIONS = ExplainOptions(faithfulness=True)


def options_key(options: ExplainOptions) -> str:
    return json.dumps(asdict(options), sort_keys=True, default=str)


def explain_case(factory: sessionmaker[Session], case: CaseView, target: str | None,
                 load_classifier: Callable[[str], Classifier], *,
                 options: ExplainOptions = DASHBOARD_OPTIONS,
                 on_attributions: Callable[[Explanation], None] | None = None) -> Explanation:
    """The stored explanation of a case's score for ``target`` (default: its top label).

    ``case`` is the :func:`case_detail` the caller has already loaded.

    Computed by the version that scored the note (so highlights match the scores shown)
    and stored on first use; later views read it back.

    Args:
        on_attributions: called with the word attributions as soon as they exist, before
            the faithfulness check (15 more forwards) runs, so a page can show the
            highlighted note first. Not called when the explanation was stored already.
    """
    if case.version_id is None or case.version_folder is None:
        raise StorageError("a scored case", f"case {case.note_id} has no prediction", "score the note on the Notes page first")
    if target is None:
        target = case.predicted[0] if case.predicted else max(case.probabilities, key=case.probabilities.__getitem__)
    if target not in case.labels:
        raise StorageError(f"a label of version {case.version} ({', '.join(case.labels)})", repr(target),
                           "pick one of those labels")
    key = options_key(options)
    with transaction(factory) as s:
        stored = load_explanation(s, s.get(ModelVersion, case.version_id), case.text, target, options_key=key)
        if stored is not None:
            return from_dict(stored.payload)
    if not (Path(case.version_folder) / "card.json").is_file():
        raise StorageError(f"the folder of model version {case.version}", f"nothing at {case.version_folder}",
                           "restore the version folder, or score the note again with the active model")
    classifier = load_classifier(case.version_folder)
    if options.faithfulness and on_attributions is not None:
        # Same result as explain(options) in one go: the integrator also adds faithfulness last.
        explanation = explain(classifier, case.text, target, options=replace(options, faithfulness=False))
        on_attributions(explanation)
        explanation = with_faithfulness(classifier, [explanation], seed=options.seed)[0]
    else:
        explanation = explain(classifier, case.text, target, options=options)
    payload = json.loads(json.dumps(to_dict(explanation), default=str))
    try:
        with transaction(factory) as s:
            save_explanation(s, s.get(ModelVersion, case.version_id), payload, options_key=key, note_id=case.note_id)
    except IntegrityError:
        pass  # another session stored the same explanation meanwhile: theirs is identical
    return explanation
