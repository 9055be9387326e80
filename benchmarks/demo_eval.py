"""What the demo model scores on each kind of text it was trained on: the synthetic clinical
notes and the synthetic home-vitals summaries, separately, on the version's own stored test
split (``data/test.jsonl``), beside a bag-of-words logistic regression fitted on the same
version's stored training split.

The overall test macro-F1 in the model card mixes the two kinds, and notes outnumber summaries
five to two, so a model that reads notes well and summaries badly still scores well overall.
The bag of words shows how far the summaries can be read at all: the synthetic windows leave
each parameter out one time in five (``healthmon.demo.vitals``), so some windows carry no
sign of their label.

    python -m healthmon demo                      # build the demo model first (if missing)
    python benchmarks/demo_eval.py                # the demo model of the default data folder
    python benchmarks/demo_eval.py --model data/models/demo
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bag_of_words():  # noqa: ANN201 (sklearn is imported lazily)
    """One logistic regression per label on binary word 1-3-grams (numbers dropped); C fixed at
    0.1, chosen once in 5-fold CV over 400 summaries, never on a test split."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    return make_pipeline(CountVectorizer(token_pattern=r"[A-Za-z]+", ngram_range=(1, 3), binary=True),
                         OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=3000)))


def scores(metrics: dict) -> str:
    """One line from ``classification_metrics`` (the figures the model card and ``healthmon evaluate`` report)."""
    per_label = ", ".join(f"{label} {row['f1']:.2f}" for label, row in metrics["per_class"].items())
    return f"macro-F1 {metrics['macro_f1']:.3f}, exact label set {metrics['accuracy']:.3f} ({per_label})"


def main() -> None:
    from healthmon.config import Settings
    from healthmon.model.classifier import Classifier
    from healthmon.model.lineage import load_examples
    from healthmon.training.data import Example
    from healthmon.training.evaluation import evaluate
    from healthmon.training.metrics import classification_metrics
    from healthmon.training.data import targets_for
    from healthmon.types import Note
    from healthmon.vitals.text import looks_like_vitals_summary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="version folder (default: the demo model of HEALTHMON_DATA_DIR)")
    args = parser.parse_args()
    settings = Settings()
    folder = Path(args.model) if args.model else settings.demo_model_dir
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found: build it with `python -m healthmon demo` or pass --model")
    classifier = Classifier.from_pretrained(folder, settings=settings, precision="fp32")
    labels = tuple(classifier.labels)
    split = {name: [Example(text, y) for text, y in load_examples(folder, name)] for name in ("train", "test")}
    print(f"{folder}: {len(split['train'])} training and {len(split['test'])} test texts")
    kinds: dict[bool, dict[str, list[Example]]] = {False: {"train": [], "test": []}, True: {"train": [], "test": []}}
    for name, examples in split.items():
        for example in examples:
            kinds[looks_like_vitals_summary(example.text)][name].append(example)
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")  # a label absent from a small kind
    for kind, summaries in (("clinical notes", False), ("vitals summaries", True)):
        train, test = kinds[summaries]["train"], kinds[summaries]["test"]
        if not test:
            print(f"{kind}: none in the test split")
            continue
        notes = [Note(text=e.text, note_id=str(i), labels=e.labels) for i, e in enumerate(test)]
        model = evaluate(classifier, notes)["test"]
        print(f"{kind} ({len(train)} trained on, {len(test)} tested)")
        print(f"  the model:    {scores(model)}")
        if len(train) >= 20:
            words = bag_of_words().fit([e.text for e in train], targets_for(train, labels, True))
            read = classification_metrics(words.predict_proba([e.text for e in test]), targets_for(test, labels, True),
                                          labels, multi_label=True)
            print(f"  bag of words: {scores(read)}")


if __name__ == "__main__":
    main()
