"""What the PhysioNet ICU summaries carry, in minutes rather than the hour a fine-tune takes:
5-fold cross-validation (two repeats) over all 3,000 stays of
  * logistic regression on the numbers (``window_features``, as ``physionet_bench.py`` fits it), and
  * a bag-of-words logistic regression on the sentence's words with the numbers dropped (what
    the band words alone say).
Use it to check a change to ``healthmon/vitals/text.py`` before spending a training run; it
trains nothing on a single split, so it does not tune to one.

    python benchmarks/physionet_features_cv.py            # about 3 minutes on 2 CPU cores
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
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from transformers import AutoTokenizer

    from healthmon.config import bundled_base_model_dir
    from physionet_bench import feature_matrix, load_stays, logistic_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("HEALTHMON_SHARED_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, default=None, help="read only the first N stays (smoke runs)")
    args = parser.parse_args()
    folder = Path(args.shared) / "physionet2012"
    if not (folder / "set-a.tar.gz").is_file():
        raise SystemExit(f"{folder}/set-a.tar.gz not found: set --shared or HEALTHMON_SHARED_DATA_DIR")
    stays, read_s = load_stays(folder, args.limit)
    y = np.array([s["died"] for s in stays])
    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=0)
    names = sorted({n for s in stays for n in s["features"]})
    numbers = logistic_pipeline()
    words = make_pipeline(CountVectorizer(token_pattern=r"[A-Za-z]+", ngram_range=(1, 3), binary=True, min_df=3),
                          LogisticRegression(max_iter=5000, C=0.03))
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # all-missing columns in a fold
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_base_model_dir()))
    lengths = np.array([len(tokenizer(s["text"])["input_ids"]) for s in stays])
    print(f"{len(stays)} stays ({y.sum()} deaths), read in {read_s:.0f} s; summary tokens median "
          f"{np.median(lengths):.0f}, 90th percentile {np.percentile(lengths, 90):.0f}, max {lengths.max()}")
    for label, model, data in (("logistic regression on the numbers", numbers, feature_matrix(stays, names)),
                               ("bag of words on the sentence (numbers dropped)", words, [s["text"] for s in stays])):
        scores = cross_val_score(model, data, y, cv=folds, scoring="roc_auc")
        print(f"{label}: AUROC {scores.mean():.3f} (folds {scores.min():.3f}-{scores.max():.3f})")


if __name__ == "__main__":
    main()
