"""What the demo model scores on each kind of text it was trained on: the synthetic clinical
notes and the synthetic home-vitals summaries, separately, on the version's own stored test
split (``data/test.jsonl``), beside a bag-of-words logistic regression fitted on the same
version's stored training split.

The overall test macro-F1 in the model card mixes the two kinds, and notes outnumber summaries
five to two, so a model that reads notes well and summaries badly still scores well overall.
The bag of words shows how far the summaries can be read at all: the synthetic windows leave
each parameter out one time in five (``healthmon.vitals.synthetic``), so some windows carry no
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

import numpy as np

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


def scores(truth: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...]) -> str:
    from sklearn.metrics import f1_score

    per_label = f1_score(truth, predicted, average=None, zero_division=0)
    return (f"macro-F1 {f1_score(truth, predicted, average='macro', zero_division=0):.3f}, "
            f"exact label set {np.mean((truth == predicted).all(axis=1)):.3f} "
            f"({', '.join(f'{label} {value:.2f}' for label, value in zip(labels, per_label))})")


def main() -> None:
    from sklearn.preprocessing import MultiLabelBinarizer

    from healthmon.config import Settings
    from healthmon.model.classifier import Classifier
    from healthmon.model.lineage import load_examples
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
    binarise = MultiLabelBinarizer(classes=list(labels))
    binarise.fit([labels])
    train, test = load_examples(folder, "train"), load_examples(folder, "test")
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")  # a label absent from a small kind
    print(f"{folder}: {len(train)} training and {len(test)} test texts")
    for kind, wanted in (("clinical notes", False), ("vitals summaries", True)):
        kind_train = [(t, y) for t, y in train if looks_like_vitals_summary(t) == wanted]
        kind_test = [(t, y) for t, y in test if looks_like_vitals_summary(t) == wanted]
        if not kind_test:
            print(f"{kind}: none in the test split")
            continue
        truth = binarise.transform([y for _, y in kind_test])
        predicted = binarise.transform([p.labels for p in classifier.predict([t for t, _ in kind_test])])
        print(f"{kind} ({len(kind_train)} trained on, {len(kind_test)} tested)")
        print(f"  the model:    {scores(truth, predicted, labels)}")
        if len(kind_train) >= 20:
            words = bag_of_words().fit([t for t, _ in kind_train], binarise.transform([y for _, y in kind_train]))
            print(f"  bag of words: {scores(truth, words.predict([t for t, _ in kind_test]), labels)}")


if __name__ == "__main__":
    main()
