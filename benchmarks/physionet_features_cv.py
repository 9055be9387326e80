"""What the PhysioNet ICU summaries carry, in minutes rather than the hour a fine-tune takes:
  * logistic regression on the numbers (``window_features``, as ``physionet_bench.py`` fits it),
    and on only the numbers the sentence always prints (``printed_numbers``),
  * gradient-boosted trees on the same numbers (what a reader that is not linear could add:
    the margin a text classifier needs to beat logistic regression has to come from there),
  * the same boosting with stumps (trees of depth 1): an additive model, one step function per
    number and no interactions, which says how much of the trees' margin a reader scoring each
    phrase on its own could reach,
  * a bag-of-words logistic regression on the sentence's words with the numbers dropped (what
    the band words alone say),
  * the same with one more word per number the sentence prints naming its fifth among the fitted
    stays (edges fitted without labels, inside each fold): whether finer steps than the band words, read linearly,
    reach what the stumps reach. A probe of how fine the sentence's bands would need to be, not
    a sentence healthmon writes. And, with ``--encoder``,
  * logistic regression on the frozen base encoder's mean-pooled hidden states, one layer at a
    time (what the encoder carries before any fine-tuning; the classifier's head reads only
    the last layer's [CLS] position through BERT's pooler), and, with ``--phrases``,
  * the same frozen encoder reading each "; "-separated phrase of the sentence on its own
    (its own [CLS] ... [SEP]), the phrase vectors averaged per stay: a linear model on that
    mean, and a small network scoring each phrase and averaging the scores (an additive
    model over phrases, so each phrase's contribution can be a non-linear function of its
    number). Only on ``--splits``: it needs a validation set to stop on.

By default this is 5-fold cross-validation (two repeats) over all 3,000 stays, so it trains
nothing on a single split and does not tune to one: use it to check a change to
``healthmon/vitals/text.py`` before spending a training run. ``--splits 2 3`` instead scores
the same methods on the test stays of ``physionet_bench.py --seeds 2 3`` (the trainer's
stratified splits), fitted on their training and validation stays, to set a fine-tune's result
beside them. There, the regularisation of the text and encoder models is chosen by 5-fold
cross-validation inside the fitted stays, never on the test stays.

    python benchmarks/physionet_features_cv.py                        # ~3 min on 2 CPU cores
    python benchmarks/physionet_features_cv.py --splits 2 3 --encoder  # ~6 min
    python benchmarks/physionet_features_cv.py --splits 0 1 2 3 --phrases  # ~23 min
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REGULARISATION = (0.003, 0.01, 0.03, 0.1)


def frozen_layer_features(texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    """Mean-pooled hidden states of the bundled base encoder: (texts, layers + 1, hidden);
    index 0 is the embedding layer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from healthmon.config import bundled_base_model_dir
    from healthmon.model.pooling import masked_mean

    folder = str(bundled_base_model_dir())
    tokenizer, encoder = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    pooled = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden_states = encoder(**batch, output_hidden_states=True).hidden_states
            # The same mean the mean-pooled head reads (healthmon.model.pooling), for every layer.
            pooled.append(torch.stack([masked_mean(h, batch["attention_mask"]) for h in hidden_states], 1).numpy())
    return np.concatenate(pooled)


def frozen_phrase_vectors(texts: list[str], layers: tuple[int, ...] = (6, 4)) -> tuple[np.ndarray, list[list[int]]]:
    """Each distinct phrase encoded alone, mean-pooled at ``layers``: (phrases, len(layers),
    hidden), and the rows of each text's phrases."""
    from healthmon.vitals.text import summary_phrases

    distinct = sorted({p for text in texts for p in summary_phrases(text)})
    row = {p: k for k, p in enumerate(distinct)}
    vectors = frozen_layer_features(distinct, max_length=64, batch_size=256)[:, list(layers)]
    return vectors, [[row[p] for p in summary_phrases(text)] for text in texts]


def additive_phrase_model(vectors: np.ndarray, members: list[list[int]], y: np.ndarray, train: np.ndarray,
                          validation: np.ndarray, hidden: int = 32) -> Callable[[np.ndarray], np.ndarray]:
    """A network scoring each phrase vector (384 -> 32 -> 1), a stay's logit the mean of its
    phrases' scores plus a bias; stopped on ``validation`` log-loss (10 epochs' patience).
    Settings fixed once, before any split was scored. Returns the stays' logits by row."""
    import torch

    torch.manual_seed(0)
    phrase_rows = np.concatenate([members[r] for r in train])
    x = torch.tensor((vectors - vectors[phrase_rows].mean(0)) / (vectors[phrase_rows].std(0) + 1e-6),
                     dtype=torch.float32)
    score = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(),
                                torch.nn.Linear(hidden, 1))
    bias = torch.nn.Parameter(torch.zeros(1))
    optimiser = torch.optim.AdamW([*score.parameters(), bias], lr=1e-3, weight_decay=1e-3)
    target = torch.tensor(y, dtype=torch.float32)
    loss_of = torch.nn.functional.binary_cross_entropy_with_logits

    def logits(rows: np.ndarray) -> torch.Tensor:
        per_phrase = score(x).squeeze(-1)
        return torch.stack([per_phrase[members[r]].mean() for r in rows]) + bias

    best, best_state, waited = float("inf"), None, 0
    for epoch in range(200):
        score.train()
        order = np.random.RandomState(epoch).permutation(train)
        for start in range(0, len(order), 64):
            rows = order[start:start + 64]
            loss = loss_of(logits(rows), target[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        score.eval()
        with torch.no_grad():
            validation_loss = loss_of(logits(validation), target[validation]).item()
        if validation_loss < best - 1e-4:
            best, waited = validation_loss, 0
            best_state = ([p.detach().clone() for p in score.parameters()], bias.detach().clone())
        else:
            waited += 1
            if waited >= 10:
                break
    with torch.no_grad():
        for parameter, kept in zip(score.parameters(), best_state[0]):
            parameter.copy_(kept)
        bias.copy_(best_state[1])
    score.eval()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return logits(rows).numpy()
    return predict


def _rows(data, rows: np.ndarray):  # noqa: ANN001, ANN202 - an array or a frame
    return data.iloc[rows] if hasattr(data, "iloc") else data[rows]


def printed_numbers(names: list[str]) -> list[str]:
    """The numbers of ``window_features`` that the sentence prints whenever they are there: not
    the reading counts, nor a latest value or a second direction of a lab, which it prints only
    where their band differs or is abnormal (the logistic regression is given those too)."""
    from healthmon.vitals.text import MEASURES

    always_latest = {f"{m.parameter}.latest" for m in MEASURES if m.always_latest}
    sometimes = {f"{m.parameter}.{m.statistic}" for m in MEASURES if m.only_if_abnormal}
    return [n for n in names if not n.endswith(".count") and n not in sometimes
            and (not n.endswith(".latest") or n in always_latest)]


class FifthWords(BaseEstimator, TransformerMixin):
    """Each number of a stay as a word naming its fifth (``age_q0`` ... ``age_q4``) among the
    stays it was fitted on; missing numbers give no word. Edges are fitted without labels, and
    refitted inside each fold."""

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self.names = names

    def fit(self, x: np.ndarray, y: object = None) -> "FifthWords":  # noqa: ARG002
        x = np.asarray(x, dtype=float)
        # Columns with fewer than three values (flags, ICU type) are already words or band words.
        self.edges_ = [np.nanpercentile(column, [20, 40, 60, 80]) if len(np.unique(column[~np.isnan(column)])) >= 3
                       else None for column in x.T]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        tags = ["".join(ch for ch in name if ch.isalnum()) for name in self.names]
        return np.array([" ".join(f"{tag}_q{int(np.searchsorted(edges, value))}"
                                  for tag, edges, value in zip(tags, self.edges_, row)
                                  if edges is not None and not np.isnan(value))
                         for row in np.asarray(x, dtype=float)], dtype=object)


def main() -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoTokenizer

    from healthmon.config import bundled_base_model_dir
    from physionet_bench import feature_matrix, load_stays, logistic_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("HEALTHMON_SHARED_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, default=None, help="read only the first N stays (smoke runs)")
    parser.add_argument("--splits", nargs="+", type=int, default=None,
                        help="score on the test stays of physionet_bench.py --seeds ... instead of cross-validating")
    parser.add_argument("--encoder", action="store_true", help="add the frozen encoder's layers (~3 min to encode)")
    parser.add_argument("--max-length", type=int, default=288, help="tokens per summary for --encoder")
    parser.add_argument("--phrases", action="store_true",
                        help="add the frozen encoder reading each phrase alone (with --splits; ~1 min to encode)")
    args = parser.parse_args()
    if args.phrases and args.splits is None:
        parser.error("--phrases needs --splits: its network stops on each split's validation stays")
    folder = Path(args.shared) / "physionet2012"
    if not (folder / "set-a.tar.gz").is_file():
        raise SystemExit(f"{folder}/set-a.tar.gz not found: set --shared or HEALTHMON_SHARED_DATA_DIR")
    stays, read_s = load_stays(folder, args.limit)
    y = np.array([s["died"] for s in stays])
    texts = [s["text"] for s in stays]
    names = sorted({n for s in stays for n in s["features"]})
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # all-missing columns in a fold
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # LogisticRegressionCV's 1.10 renames
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_base_model_dir()))
    lengths = np.array([len(tokenizer(text)["input_ids"]) for text in texts])
    print(f"{len(stays)} stays ({y.sum()} deaths), read in {read_s:.0f} s; summary tokens median "
          f"{np.median(lengths):.0f}, 90th percentile {np.percentile(lengths, 90):.0f}, max {lengths.max()}")

    def regression(c: float | None):  # noqa: ANN202; None: C chosen by inner cross-validation
        if c is not None:
            return LogisticRegression(max_iter=5000, C=c)
        return LogisticRegressionCV(Cs=REGULARISATION, cv=5, scoring="roc_auc", max_iter=5000)

    def words(c: float | None):  # noqa: ANN202
        return make_pipeline(CountVectorizer(token_pattern=r"[A-Za-z]+", ngram_range=(1, 3), binary=True, min_df=3),
                             regression(c))

    def words_and_fifths(c: float | None):  # noqa: ANN202
        # The data is a frame: the sentence in "text", the numbers in the other columns.
        return make_pipeline(ColumnTransformer([
            ("words", CountVectorizer(token_pattern=r"[A-Za-z]+", ngram_range=(1, 3), binary=True, min_df=3), "text"),
            ("fifths", make_pipeline(FifthWords(tuple(printed)), CountVectorizer(token_pattern=r"\S+", binary=True)),
             printed)]), regression(c))

    def frozen(c: float | None):  # noqa: ANN202
        return make_pipeline(StandardScaler(), regression(c))

    def trees():  # noqa: ANN202
        # Settings fixed once, before any split was scored, and never tuned: a shallow, slow,
        # regularised ensemble, since 2,400 stays with 14 % deaths overfit a default one.
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15,
                                              min_samples_leaf=40, l2_regularization=1.0,
                                              early_stopping=False, random_state=0)

    def stumps():  # noqa: ANN202
        # The trees' settings with depth 1 (twice the rounds, since a stump learns less per
        # round): fixed once, not tuned.
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=600, max_depth=1, min_samples_leaf=40,
                                              l2_regularization=1.0, early_stopping=False, random_state=0)

    numbers = feature_matrix(stays, names)
    printed = printed_numbers(names)
    methods = [("logistic regression on the numbers", logistic_pipeline, numbers),
               # The summary features in the strict sense: only what the sentence always prints
               # (baseline (c) above is also given the counts and latest values it leaves out).
               ("logistic regression on the numbers the sentence prints", logistic_pipeline,
                feature_matrix(stays, printed)),
               ("gradient-boosted trees on the numbers", trees, numbers),
               ("boosted stumps on the numbers (additive, no interactions)", stumps, numbers),
               ("bag of words on the sentence (numbers dropped)", words, np.array(texts, dtype=object)),
               ("bag of words plus each number's fifth as a word", words_and_fifths,
                pd.DataFrame(numbers, columns=names).assign(text=texts))]
    regularised = (words, words_and_fifths, frozen)  # built with a C; the others take none
    if args.encoder:
        started = time.perf_counter()
        layers = frozen_layer_features(texts, args.max_length)
        print(f"frozen encoder: {layers.shape[1] - 1} layers encoded in {time.perf_counter() - started:.0f} s")
        methods += [(f"frozen encoder, layer {k} mean-pooled" if k else "frozen encoder, embeddings mean-pooled",
                     frozen, layers[:, k]) for k in range(layers.shape[1])]
    phrase_layers = (6, 4)
    if args.phrases:
        started = time.perf_counter()
        phrase_vectors, members = frozen_phrase_vectors(texts, phrase_layers)
        print(f"frozen encoder, phrase by phrase: {len(phrase_vectors)} distinct phrases "
              f"({np.mean([len(m) for m in members]):.1f} per stay) encoded in {time.perf_counter() - started:.0f} s")
        for k, layer in enumerate(phrase_layers):
            stay_means = np.stack([phrase_vectors[m, k].mean(0) for m in members])
            methods.append((f"frozen encoder phrase by phrase, layer {layer}, linear on the mean", frozen, stay_means))

    if args.splits is None:
        folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=0)
        fixed_c = {words: 0.03, words_and_fifths: 0.03, frozen: 0.01}  # chosen once, before any split was scored
        for label, build, data in methods:
            model = build(fixed_c[build]) if build in regularised else build()
            scores = cross_val_score(model, data, y, cv=folds, scoring="roc_auc")
            print(f"{label}: AUROC {scores.mean():.3f} (folds {scores.min():.3f}-{scores.max():.3f})")
        return

    from healthmon.config import Settings
    from healthmon.training.args import TrainArgs
    from healthmon.training.trainer import train_splits_only
    from physionet_bench import DIED, SURVIVED, stay_notes

    row_of_text, notes = stay_notes(stays)
    for seed in args.splits:
        train_args = TrainArgs(mode="full", seed=seed, label_order=(SURVIVED, DIED))
        with tempfile.TemporaryDirectory(prefix="healthmon-physionet-") as tmp:
            splits, _ = train_splits_only(notes, train_args, Settings(data_dir=Path(tmp)))
        fit = np.array([row_of_text[e.text] for e in list(splits.train) + list(splits.validation)])
        test = np.array([row_of_text[e.text] for e in splits.test])
        print(f"split {seed}: {len(fit)} stays fitted, {len(test)} test stays ({y[test].sum()} deaths)")
        for label, build, data in methods:
            model = build(None) if build in regularised else build()
            model.fit(_rows(data, fit), y[fit])
            auroc = roc_auc_score(y[test], model.predict_proba(_rows(data, test))[:, 1])
            print(f"  {label}: AUROC {auroc:.3f}", flush=True)
        if args.phrases:
            train = np.array([row_of_text[e.text] for e in splits.train])
            validation = np.array([row_of_text[e.text] for e in splits.validation])
            for k, layer in enumerate(phrase_layers):
                predict = additive_phrase_model(phrase_vectors[:, k], members, y, train, validation)
                auroc = roc_auc_score(y[test], predict(test))
                print(f"  frozen encoder phrase by phrase, layer {layer}, additive network over phrases: "
                      f"AUROC {auroc:.3f}", flush=True)


if __name__ == "__main__":
    main()
